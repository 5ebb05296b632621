"""CPU threads: how many a process uses (``--threads``, ``train.threads``, default one per
physical core, shared among the processes torchrun starts on the machine) and a one-line
warning when the machine is oversubscribed (other work already keeps the cores busy, or a run's
throughput collapses mid-way; ``PTMZOO_LOAD_WARNING=0`` silences it)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

_flag_threads: int | None = None  # set by --threads: it wins over train.threads


def physical_cores() -> int:
    """Physical cores of this machine (``os.cpu_count()`` counts hyper-threads too): psutil if
    installed, else the distinct (physical id, core id) pairs of /proc/cpuinfo, else the CPU count."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
        if cores:
            return int(cores)
    except ImportError:
        pass
    cores = _cpuinfo_cores("/proc/cpuinfo")
    return cores or os.cpu_count() or 1


def _cpuinfo_cores(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    pairs = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            pairs.add((fields.get("physical id", "0"), fields["core id"]))
    return len(pairs) or None


def local_processes() -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 otherwise)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_threads() -> int | None:
    """One thread per physical core, shared among this machine's processes of the run; None
    (keep torch's choice) when OMP_NUM_THREADS was set outside torchrun."""
    if "OMP_NUM_THREADS" in os.environ and "LOCAL_WORLD_SIZE" not in os.environ:
        return None
    return max(1, physical_cores() // local_processes())


def set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        from ..errors import UserError

        raise UserError(f"--threads / train.threads must be at least 1, not {threads}")
    torch.set_num_threads(threads)
    try:  # only possible before the first inter-op parallel work of the process
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def use_flag_threads(threads: int | None) -> None:
    """``--threads N`` of any verb (None: the default), applied once for the whole process."""
    global _flag_threads
    _flag_threads = threads
    chosen = threads if threads is not None else default_threads()
    if chosen is not None:
        set_threads(chosen)


def use_config_threads(threads: int | None) -> int:
    """A training run's ``train.threads`` (a --threads flag wins; without either the threads stay
    as they are: the CLI's default, or the caller's choice). Returns the threads torch now uses."""
    import torch

    if _flag_threads is None and threads is not None:
        set_threads(threads)
    return torch.get_num_threads()


def load_average() -> float | None:
    """The 1-minute load average: processes running or waiting for a core."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def oversubscription(threads: int, load: float | None, cores: int, own: float = 0.0) -> str | None:
    """The warning for a run of ``threads`` threads (all processes of this machine) started when
    the 1-minute load average is ``load`` on ``cores`` physical cores; None when it fits. Other
    work holding more than the cores left over (and a core of slack, or a quarter on big machines)
    makes every thread of this run wait for its turn."""
    if load is None:
        return None
    spare = cores - threads
    if load - own <= spare + max(1.0, 0.25 * cores):  # ``own``: what this process itself ran recently
        return None
    return (f"warning: the machine is oversubscribed: load average {load:.1f} on {cores} physical cores before "
            f"this run adds {threads} thread(s); training will be slow (use fewer --threads, or wait for the "
            "other work to finish)")


def warnings_on() -> bool:
    """``PTMZOO_LOAD_WARNING=0`` silences the oversubscription warnings (a machine known to be shared)."""
    return os.environ.get("PTMZOO_LOAD_WARNING", "1").strip() != "0"


_last_check: tuple[float, float] | None = None  # (wall clock, this process's CPU seconds) at the last check


def own_load() -> float:
    """The cores this process itself kept busy since the last check (or since it started): the
    load average counts them too, so a run that follows another in the same process (the demo's
    fine-tuning runs) must not take its predecessor for other work."""
    global _last_check
    now, cpu = time.time(), time.process_time()
    then, cpu_then = _last_check or (_process_start(), 0.0)
    _last_check = (now, cpu)
    return max(0.0, (cpu - cpu_then) / max(now - then, 1.0))


def _process_start() -> float:
    """When this process started (wall clock), from /proc; now where that cannot be read."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = float(stat.read().rsplit(")", 1)[1].split()[19])  # start time, clock ticks after boot
            return time.time() - float(uptime.read().split()[0]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def start_warning(threads: int, read_load: Callable[[], float | None] = load_average) -> str | None:
    if not warnings_on():
        return None
    return oversubscription(threads * local_processes(), read_load(), physical_cores(), own_load())


def collapse_warning(step: int, speed: float, best: float, read_load: Callable[[], float | None] = load_average
                     ) -> str | None:
    """The warning when the throughput of the last log window fell below a third of the best."""
    if best <= 0 or speed >= best / 3 or not warnings_on():
        return None
    load = read_load()
    shown = f"; load average {load:.1f} on {physical_cores()} physical cores" if load is not None else ""
    return (f"warning: at step {step} training runs at {speed:.0f} tokens/s, under a third of its best "
            f"({best:.0f}){shown}: other work is probably competing for the CPU")


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
