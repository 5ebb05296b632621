"""bench/gpu_suite.py cannot rot: --smoke runs every workload on the CPU (slow); --only selects
workloads, and the full sizes refuse to run without a CUDA device."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT

SCRIPT = os.path.join(ROOT, "bench", "gpu_suite.py")
# rows of each workload: implementations x cases
EXPECTED_ROWS = {"gpt2_train": 4, "bert_mlm_512": 2, "bert_mlm_128": 2, "bert_infer": 4, "gpt2_generate": 8,
                 "t5_train": 2}


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def check_rows(rows: list[dict], workloads: list[str]) -> None:
    counts = {}
    for row in rows:
        counts[row["workload"]] = counts.get(row["workload"], 0) + 1
        where = f"{row['workload']} {row['case']} {row['implementation']}"
        assert row["tokens_per_s"] > 0 and row["ratio"] > 0 and row["mfu"] > 0, where
        assert row["check"]["passed"], (where, row["check"])
    assert counts == {w: EXPECTED_ROWS[w] for w in workloads}
    for row in rows:  # every ptmzoo row is measured against a transformers row of the same case
        if row["implementation"].startswith("ptmzoo"):
            assert row["baseline"].startswith("transformers")
            assert "relative_difference" in row["check"]


def test_only_selects_workloads_in_suite_order(suite):
    assert suite.parse_only(None) == list(EXPECTED_ROWS)
    assert suite.parse_only("t5_train, gpt2_train") == ["gpt2_train", "t5_train"]
    with pytest.raises(ValueError, match="unknown workload gpt3_train"):
        suite.parse_only("gpt2_train,gpt3_train")


def test_unknown_workload_and_no_gpu_are_one_line_errors(suite, capsys):
    assert suite.main(["--only", "bogus", "--smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only: unknown workload bogus") and "\n" not in err
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full-size suite would run")
    assert suite.main(["--only", "bert_infer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: the full-size suite needs a CUDA device (or --smoke: tiny sizes on the CPU)"
    assert suite.main(["--device", "cpu"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_smoke_runs_only_the_named_workload(suite, tmp_path, capsys):
    out = tmp_path / "infer.json"
    assert suite.main(["--smoke", "--only", "bert_infer", "--warmup", "0", "--rounds", "1",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    check_rows(result["rows"], ["bert_infer"])
    assert {row["case"].split()[0] for row in result["rows"]} == {"fixed", "variable"}
    assert "bert_infer" in result["table"] and "gpt2_train" not in result["table"]


def test_a_failing_workload_leaves_the_others_and_exit_code_1(suite, tmp_path, monkeypatch, capsys):
    def broken(workload, sizes, setting):
        raise RuntimeError("no kernel image")

    monkeypatch.setitem(suite.WORKLOADS, "t5_train", broken)
    out = tmp_path / "partial.json"
    assert suite.main(["--smoke", "--only", "t5_train,bert_infer", "--warmup", "0", "--rounds", "1",
                       "--json", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["errors"] == {"t5_train": "RuntimeError: no kernel image"}
    check_rows(result["rows"], ["bert_infer"])
    assert "t5_train: RuntimeError: no kernel image" in capsys.readouterr().out


@pytest.mark.slow
def test_smoke_runs_every_workload_and_checks_agree(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, SCRIPT, "--smoke", "--json", str(out)], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    check_rows(result["rows"], list(EXPECTED_ROWS))
    assert result["errors"] == {}
    assert result["env"]["smoke"] and result["env"]["matmul_peak"]["flops_per_s"] > 0
