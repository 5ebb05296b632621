"""bench/cpu_infer.py cannot rot: a tiny run checks that ptmzoo's length-batched embeddings equal
transformers' on the same real sentences and that every case and column is reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, shared_path


@pytest.mark.slow
def test_cpu_infer_runs_and_both_sides_agree(tmp_path):
    out = tmp_path / "infer.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cpu_infer.py"), "--preset", "bert-tiny",
                           "--vocab-size", "4000", "--batch", "24", "--length", "96", "--rounds", "1",
                           "--threads", "1", "--corpus", shared_path("en", "corpus", "wikitext2.valid.txt"),
                           "--json", str(out)], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["case"] for r in report["results"]] == ["fixed", "variable"]
    fixed, variable = report["results"]
    assert fixed["tokens"] == 24 * 96 and fixed["length_batches"] == [24]  # equal lengths: one batch
    assert sum(variable["length_batches"]) == 24 and len(variable["length_batches"]) > 1
    for case in report["results"]:
        for side in ("ptmzoo", "transformers", "transformers+buckets"):
            assert case[side]["tokens_per_s"] > 0 and case[side]["max_abs_diff"] < 1e-4
            assert "extra_rss_mib" in case[side]
    assert "ptmzoo's length batches" in done.stdout
