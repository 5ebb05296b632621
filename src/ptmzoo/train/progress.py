"""What a training run prints while it runs, readable by a person and in a log file.

On a terminal: a progress bar (loss, tokens/s, ETA). When stdout or stderr is not a terminal
(``> log.txt``, ``| tee``, a job scheduler): plain lines, at most one every ``LINE_SECONDS``
(and the last step), with no carriage returns or bar fragments. ``--no-progress`` turns both off;
the lines of evaluations, summaries and warnings are printed either way.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

LINE_SECONDS = 30.0  # plain progress lines: at most one per this many seconds


def interactive() -> bool:
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def clock_text(seconds: float) -> str:
    seconds = int(max(0, round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """The step progress of a run: ``bar`` (tqdm), ``lines`` (plain lines) or ``off``."""

    def __init__(self, total: int, initial: int, enabled: bool, mode: str | None = None,
                 line_seconds: float = LINE_SECONDS, clock=time.monotonic):
        self.mode = "off" if not enabled else (mode or ("bar" if interactive() else "lines"))
        self.total, self.line_seconds, self.clock = total, line_seconds, clock
        self._last_line: float | None = None
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True,
                            mininterval=0.5)

    def set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, step: int, record: dict | None, eta_s: float | None, last: bool = False) -> None:
        """After each step; ``record``: the step's logged values (on logging steps)."""
        if self.bar is not None:
            if record is not None:
                self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}",
                                     refresh=False)
            self.bar.update(1)
            return
        if self.mode != "lines" or (record is None and not last):
            return
        now = self.clock()
        if not last and self._last_line is not None and now - self._last_line < self.line_seconds:
            return
        self._last_line = now
        parts = [f"step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%)"]
        if record is not None:
            parts += [f"loss {record['loss']:.4f}", f"lr {record['lr']:.3g}", f"{record['tokens_per_s']:.0f} tok/s",
                      f"elapsed {clock_text(record['elapsed'])}"]
        if eta_s is not None and not last:
            parts.append(f"eta {clock_text(eta_s)}")
        print("  ".join(parts), flush=True)

    def write(self, line: str) -> None:
        """A line that is always shown (an evaluation), also between bar updates."""
        if self.bar is not None:
            tqdm.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
