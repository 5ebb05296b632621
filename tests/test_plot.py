"""`ptmzoo plot`: the series drawn equal metrics.jsonl's values; the PNG is an image; bad input
is one line and exit 2; an existing --out is kept without --overwrite."""

import json

import pytest

from ptmzoo.plot import curves, read_runs
from tests.conftest import assert_user_error, run_main


def _run(directory, losses, evals, tokens_per_step=100):
    directory.mkdir(parents=True)
    lines = [{"loss": v, "lr": 1e-3, "step": s, "tokens": s * tokens_per_step} for s, v in losses]
    lines += [{"step": s, "eval_loss": v, "accuracy": 0.5, "tokens": s * tokens_per_step} for s, v in evals]
    lines.append({"step": 3, "warnings": ["a warning record"]})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return str(directory)


def test_the_series_are_the_metrics_jsonl_values(tmp_path):
    a = _run(tmp_path / "a", [(1, 3.0), (2, 2.5), (3, 2.0)], [(3, 2.2)])
    b = _run(tmp_path / "b", [(1, 4.0), (2, 3.0)], [(2, 3.1)], tokens_per_step=50)
    series = curves(read_runs([a, b]))
    assert series == {"loss": {"a": ([1, 2, 3], [3.0, 2.5, 2.0]), "b": ([1, 2], [4.0, 3.0])},
                      "eval_loss": {"a": ([3], [2.2]), "b": ([2], [3.1])}}
    by_tokens = curves(read_runs([a, b]), ["accuracy"], "tokens")
    assert by_tokens == {"accuracy": {"a": ([300], [0.5]), "b": ([100], [0.5])}}


def test_the_png_is_written_and_not_overwritten(tmp_path, capsys):
    a = _run(tmp_path / "a", [(1, 3.0), (2, 2.5)], [(2, 2.4)])
    out = tmp_path / "curves.png"
    assert run_main(capsys, "plot", a, "--out", str(out), "--x", "tokens").returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(str(out)).ndim == 3
    assert_user_error(run_main(capsys, "plot", a, "--out", str(out)), "exists; replace it with --overwrite")
    assert run_main(capsys, "plot", a, "--out", str(out), "--overwrite").returncode == 0


@pytest.mark.parametrize("case, pattern", [
    ("missing", "no such run directory"), ("empty_dir", "has no metrics.jsonl"),
    ("metric", "no run has the metric 'bleu'"), ("no_tokens", "no token counts"), ("suffix", "image file name")])
def test_bad_input_is_one_line(tmp_path, capsys, case, pattern):
    a = _run(tmp_path / "a", [(1, 3.0)], [])
    (tmp_path / "empty").mkdir()
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.jsonl").write_text(json.dumps({"loss": 1.0, "lr": 0.1, "step": 1}) + "\n")
    args = {"missing": [str(tmp_path / "nope")], "empty_dir": [str(tmp_path / "empty")],
            "metric": [a, "--metric", "bleu"], "no_tokens": [str(old), "--x", "tokens"],
            "suffix": [a]}[case]
    out = str(tmp_path / ("c.txt" if case == "suffix" else "c.png"))
    assert_user_error(run_main(capsys, "plot", *args, "--out", out), pattern)
