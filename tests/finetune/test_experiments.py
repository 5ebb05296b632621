"""Strategies inside real fine-tuning runs: adapter checkpoints, early stopping, K seeds, two-stage
transfer, the command line."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ptmzoo.catalog import build_backbone
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.finetune.experiments import (
    TransferRecipe,
    mean_std,
    run_seeds,
    run_transfer,
)
from ptmzoo.finetune.multitask import (
    MultiTaskConfig,
    TaskMixture,
    run_multitask,
    task_probabilities,
)
from ptmzoo.finetune.run import FinetuneConfig, evaluate_file
from ptmzoo.loading import load
from ptmzoo.models.model import PtmModel
from tests.conftest import read_lines, run_cli, shared_path


@pytest.fixture(scope="session")
def base_and_data(tmp_path_factory, char_tokenizer):
    """A tiny BERT with a Chinese character tokenizer, and small ChnSentiCorp files."""
    root = tmp_path_factory.mktemp("strategies")
    torch.manual_seed(0)
    config = {"vocab_size": char_tokenizer.vocab_size, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 64, "pad_token_id": char_tokenizer.pad_id}
    base = str(root / "base")
    save_pretrained(base, PtmModel("bert", build_backbone("bert", config)), char_tokenizer)
    rows = Path(shared_path("zh", "chnsenticorp", "train.tsv")).read_text(encoding="utf-8").splitlines()
    (root / "train.tsv").write_text("\n".join(rows[:49]) + "\n", encoding="utf-8")
    (root / "dev.tsv").write_text("\n".join(rows[:1] + rows[49:73]) + "\n", encoding="utf-8")
    return base, str(root / "train.tsv"), str(root / "dev.tsv")




def _config(base, train_file, dev, **changes):
    data = {"model": base, "train_file": train_file, "dev_file": dev, "epochs": 2, "evals_per_epoch": 2,
            "options": {"text_column": "text_a", "max_length": 32},
            "train": {"batch_size": 8, "lr": 1e-3, "log_every": 1, "seed": 3}}
    data.update(changes)
    return FinetuneConfig.from_dict(data)


def test_adapter_runs_with_early_stopping_and_seeds(base_and_data, tmp_path):
    base, train, dev = base_and_data
    # a learning rate too small to move the dev metric: patience 1 stops at the second evaluation
    cfg = _config(base, train, dev, runs=2, patience=1, strategy={"method": "adapters", "adapter_size": 8},
                  train={"batch_size": 8, "lr": 1e-12, "log_every": 1, "seed": 3})
    summary = run_seeds(cfg, str(tmp_path), progress=False)
    assert summary["seeds"] == [3, 4] and len(summary["per_run"]) == 2
    eval_every = 7 // 2  # 49 examples / batch 8 = 7 steps per epoch, 2 evaluations per epoch
    for report in summary["per_run"]:
        assert report["stopped_early"] == "early stopping" and report["steps"] == 2 * eval_every
        assert report["method"] == "adapters" and 0 < report["trainable_parameters"] < report["total_parameters"]
    accuracies = [r["dev"]["accuracy"] for r in summary["per_run"]]
    assert summary["dev"]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert json.loads((tmp_path / "metrics.json").read_text())["runs"] == 2
    best = tmp_path / "seed_3" / "best"
    assert {"adapter.safetensors", "ptmzoo.json"} <= set(os.listdir(best))
    assert "model.safetensors" not in os.listdir(best)
    loaded = load(str(best))
    assert evaluate_file(loaded, dev)["accuracy"] == pytest.approx(summary["per_run"][0]["dev"]["accuracy"])


def test_mean_and_sample_std():
    summary = mean_std([{"accuracy": 0.8, "name": "x"}, {"accuracy": 0.9, "name": "y"}])
    assert summary == {"accuracy": {"mean": pytest.approx(0.85), "std": pytest.approx(0.0707107, rel=1e-5)}}


def test_two_stage_transfer_recipe(base_and_data, tmp_path, chinese_docs):
    base, train, dev = base_and_data
    corpus = tmp_path / "unlabelled.txt"
    corpus.write_text("\n".join(chinese_docs[:150]) + "\n", encoding="utf-8")
    recipe = TransferRecipe.from_dict({"model": base, "stages": [
        {"name": "tapt", "pretrain": {"corpus": [str(corpus)], "objectives": {"mlm": {}},
                                      "data": {"seq_len": 32},
                                      "train": {"batch_size": 8, "max_steps": 3, "log_every": 1, "eval_every": 3}}},
        {"name": "target", "finetune": {"train_file": train, "dev_file": dev, "epochs": 1,
                                        "options": {"text_column": "text_a", "max_length": 32},
                                        "strategy": {"method": "lora", "lora_rank": 2},
                                        "train": {"batch_size": 16, "lr": 1e-3}}},
    ]})
    report = run_transfer(recipe, str(tmp_path / "run"), progress=False)
    first, second = report["stages"]
    adapted = os.path.join(str(tmp_path / "run"), "1_tapt", "final")
    assert first["kind"] == "pretrain" and second["start"] == adapted
    assert report["final_model"].endswith(os.path.join("2_target", "best"))
    # the adapted weights differ from the base, and the LoRA run sits on top of the adapted model
    before, after = load(base).model.state_dict(), load(adapted).model.state_dict()
    assert not torch.equal(before["backbone.layers.0.ffn.up.weight"], after["backbone.layers.0.ffn.up.weight"])
    final = load(report["final_model"])
    assert final.meta["delta"]["base"] == os.path.abspath(adapted)
    assert 0 <= second["report"]["dev"]["accuracy"] <= 1


def test_transfer_recipe_errors():
    from ptmzoo.errors import UserError

    with pytest.raises(UserError, match="exactly one"):
        TransferRecipe.from_dict({"model": "m", "stages": [{"name": "x"}]})
    with pytest.raises(UserError, match="must train it fully"):
        TransferRecipe.from_dict({"model": "m", "stages": [
            {"finetune": {"strategy": {"method": "lora"}}}, {"finetune": {}}]})


def test_cli_lora_run_prints_trainable_parameters_and_merges(base_and_data, tmp_path):
    base, train, dev = base_and_data
    out = str(tmp_path / "lora")
    result = run_cli("finetune", "--model", base, "--train", train, "--dev", dev, "--text-column", "text_a",
                     "--out", out, "--epochs", "1", "--max-length", "32", "--no-progress", "--strategy", "lora",
                     "--lora-rank", "2", "--lora-targets", "qkv,up", "--merge-lora", "--discriminative-lr", "2.6",
                     "--slanted-triangular")
    assert result.returncode == 0, result.stderr
    assert "lora: " in result.stdout and "parameters trained" in result.stdout
    metrics = json.loads(Path(out, "metrics.json").read_text())
    assert metrics["method"] == "lora" and metrics["trainable_parameters"] < metrics["total_parameters"]
    merged = load(os.path.join(out, "merged"))
    assert "delta" not in merged.meta
    assert evaluate_file(merged, dev)["accuracy"] == pytest.approx(metrics["dev"]["accuracy"])
    assert read_lines(os.path.join(out, "predictions.dev.tsv"))


@pytest.mark.parametrize("sampling", ["proportional", "temperature", "uniform"])
def test_multitask_sampling_proportions(sampling):
    sizes = [100, 300, 600]
    expected = {"proportional": [0.1, 0.3, 0.6], "uniform": [1 / 3] * 3,
                "temperature": [s ** 0.5 / sum(t ** 0.5 for t in sizes) for s in sizes]}[sampling]
    probabilities = task_probabilities(sizes, sampling, temperature=2.0)
    assert probabilities == pytest.approx(expected)
    mixture = TaskMixture([[{"i": i} for i in range(n)] for n in sizes], probabilities, 4, 6000, seed=1)
    counts = np.bincount([mixture.draw(k, epoch=k % 3)[0] for k in range(6000)], minlength=3) / 6000
    sigma = np.sqrt(np.asarray(expected) * (1 - np.asarray(expected)) / 6000)
    assert np.all(np.abs(counts - expected) < 4 * sigma), (counts, expected)
    task, rows = mixture.draw(5, 1)
    assert len(set(rows.tolist())) == 4 and rows.max() < sizes[task]  # a batch of distinct examples
    assert mixture.draw(5, 1)[0] == task  # the same key always gives the same batch (exact resume)


def test_multitask_shared_encoder_heads_per_task_and_per_task_finetuning(base_and_data, tmp_path):
    base, train, dev = base_and_data
    task = {"train_file": train, "dev_file": dev, "options": {"text_column": "text_a", "max_length": 32}}
    cfg = MultiTaskConfig.from_dict({
        "model": base, "tasks": {"senti": task, "senti_small": {**task, "max_train_examples": 16}},
        "sampling": "temperature", "epochs": 1, "train": {"batch_size": 8, "lr": 1e-3, "log_every": 1},
        "finetune_after": {"epochs": 1}})
    report = run_multitask(cfg, str(tmp_path), progress=False)
    root = 48 ** 0.5  # 48 training examples and 16: n ** (1 / T) with T = 2
    assert report["task_probabilities"] == pytest.approx([root / (root + 4), 4 / (root + 4)], abs=1e-4)
    assert {"senti/accuracy", "senti_small/accuracy", "average"} <= set(report["dev"])
    best = load(str(tmp_path / "best"))
    assert set(best.model.heads) == {"senti", "senti_small"} and set(best.meta["tasks"]) == {"senti", "senti_small"}
    assert set(report["finetuned"]) == {"senti", "senti_small"}
    assert os.path.exists(tmp_path / "senti" / "best" / "ptmzoo.json")
