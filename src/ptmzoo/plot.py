"""``ptmzoo plot RUN... --out curves.png``: the curves of training runs, from their metrics.jsonl.

One panel per metric (default: the training ``loss`` and the evaluations' ``eval_loss``), one line
per run in the same colour on every panel, against the optimizer steps or the tokens trained on
(``--x tokens``). A metric is any number in the records of ``metrics.jsonl`` (``train.runlog``):
``loss_NAME`` of each objective, ``lr``, ``grad_norm``, ``tokens_per_s``, ``eval_ppl``, a
fine-tuning's ``accuracy``... ``curves`` returns the plotted series (tests compare them with the
file).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from .errors import UserError
from .train.runlog import read_records

DEFAULT_METRICS = ("loss", "eval_loss")
IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
X_KEYS = {"steps": "step", "tokens": "tokens"}
NOT_METRICS = ("step", "tokens", "warnings")


@dataclass
class Run:
    name: str
    path: str  # its metrics.jsonl
    records: list[dict]

    def metrics(self) -> set[str]:
        return {key for record in self.records for key, value in record.items()
                if key not in NOT_METRICS and _number(value)}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metrics_file(run: str) -> str:
    """A run's metrics.jsonl: RUN/metrics.jsonl, or RUN itself when it is that file."""
    if not os.path.exists(run):
        raise UserError(f"{run}: no such run directory")
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise UserError(f"{run} has no metrics.jsonl; give the --out directory of a training run")
    return path


def read_run_records(path: str) -> list[dict]:
    records = read_records(path)
    if not any(_number(record.get("step")) for record in records):
        raise UserError(f"{path} holds no logged steps")
    return records


def run_names(paths: list[str]) -> list[str]:
    """The legend: each run's directory name; the paths as given where two names would be the same."""
    def name(path: str) -> str:
        path = os.path.normpath(path)
        if os.path.isfile(path):
            path = os.path.dirname(os.path.abspath(path))
        return os.path.basename(path) or path

    names = [name(p) for p in paths]
    return [n if names.count(n) == 1 else os.path.normpath(p) for n, p in zip(names, paths)]


def read_runs(paths: list[str]) -> list[Run]:
    files = [metrics_file(p) for p in paths]
    return [Run(name, path, read_run_records(path)) for name, path in zip(run_names(paths), files)]


def curves(runs: list[Run], metrics: list[str] | None = None, x: str = "steps") -> dict[str, dict[str, tuple[list, list]]]:
    """{metric: {run name: (xs, ys)}}: each record of a run holding the metric, in the file's
    order. ``metrics``: default ``DEFAULT_METRICS`` (those any run has); a metric no run has is a
    UserError, one that only some runs have is drawn for those."""
    if x not in X_KEYS:
        raise UserError(f"--x must be steps or tokens, not {x}")
    present = set().union(*(run.metrics() for run in runs))
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in present]
        if not metrics:
            raise UserError(f"no run logged a loss; choose a --metric from {', '.join(sorted(present)) or 'none'}")
    for metric in metrics:
        if metric not in present:
            raise UserError(f"no run has the metric '{metric}' (their metrics: {', '.join(sorted(present))})")
    key = X_KEYS[x]
    result: dict[str, dict[str, tuple[list, list]]] = {}
    for metric in metrics:
        result[metric] = {}
        for run in runs:
            points = [(record.get(key), record[metric]) for record in run.records
                      if _number(record.get(metric)) and metric not in NOT_METRICS]
            if not points:
                continue
            if any(not _number(px) for px, _ in points):
                raise UserError(f"{run.path} has no token counts (written before ptmzoo logged them); "
                                "plot it with --x steps")
            result[metric][run.name] = ([px for px, _ in points], [py for _, py in points])
    return result


def plot_curves(series: dict[str, dict[str, tuple[list, list]]], names: list[str], x: str, path: str) -> None:
    """One panel per metric, one line per run (its colour the same on every panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 3.8), squeeze=False)
    for ax, (metric, lines) in zip(axes[0], series.items()):
        for name, (xs, ys) in lines.items():
            few = len(xs) <= 30  # evaluations: points worth marking
            ax.plot(xs, ys, marker="o" if few else None, markersize=3, color=colours[name], label=name)
        ax.set_xlabel("optimizer steps" if x == "steps" else "tokens trained on")
        ax.set_title(metric, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion_matrix(counts: list[list[int]], labels: list[str], path: str) -> None:
    """Rows: the gold class; columns: the predicted one; each cell its count, shaded by the share of its row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = len(labels)
    totals = [max(sum(row), 1) for row in counts]
    shares = [[c / t for c in row] for row, t in zip(counts, totals)]
    side = min(2.0 + 0.55 * size, 16.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if size <= 30:  # beyond that the numbers do not fit in their cells
        for g, row in enumerate(counts):
            for p, count in enumerate(row):
                ax.text(p, g, str(count), ha="center", va="center", fontsize=8,
                        color="white" if shares[g][p] > 0.5 else "black")
    ticks = range(size)
    ax.set_xticks(ticks, labels, rotation=45 if size > 4 else 0, ha="right" if size > 4 else "center", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"confusion matrix ({sum(map(sum, counts))} examples)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_runs(paths: list[str], out: str, metrics: list[str] | None = None, x: str = "steps") -> dict:
    """Read the runs, draw ``curves`` to ``out`` (PNG); returns the series."""
    runs = read_runs(paths)
    series = curves(runs, metrics, x)
    for metric, lines in series.items():
        missing = [run.name for run in runs if run.name not in lines]
        if missing:
            print(f"note: {metric} is not in the metrics of {', '.join(missing)}", file=sys.stderr)
    plot_curves(series, [run.name for run in runs], x, out)
    return series
