"""The compression verbs end to end on a tiny fine-tuned teacher and real SST-2 rows: every
distillation method, quantization and pruning write checkpoints that ptmzoo.load, evaluate and
predict read; bad input ends in one line with exit code 2; an existing --out is never written over."""

import json
import os
from pathlib import Path

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.cli import main
from ptmzoo.compress.prune import sparsity_of
from ptmzoo.compress.quantize import Int8Linear
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.objectives.mlm import MLMHead
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, wordpiece_tokenizer):
    """A 4-layer encoder with an MLM head (the pre-trained model) and a teacher fine-tuned from it."""
    root = tmp_path_factory.mktemp("compress")
    source = shared_path("en", "sst2", "train.tsv")
    with open(source, encoding="utf-8") as fh:
        lines = fh.readlines()
    train, dev = root / "train.tsv", root / "dev.tsv"
    train.write_text("".join(lines[:161]), encoding="utf-8")
    dev.write_text(lines[0] + "".join(lines[161:201]), encoding="utf-8")
    torch.manual_seed(0)
    model = build_model("bert", {"vocab_size": wordpiece_tokenizer.vocab_size, "hidden_size": 32, "num_layers": 4,
                                 "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64})
    model.add_head("mlm", MLMHead)
    save_pretrained(str(root / "pt"), model, wordpiece_tokenizer)
    cfg = FinetuneConfig.from_dict({"model": str(root / "pt"), "train_file": str(train), "dev_file": str(dev),
                                    "epochs": 1, "options": {"text_column": "sentence", "max_length": 32},
                                    "train": {"batch_size": 32, "lr": 1e-3}})
    run_finetune(cfg, str(root / "teacher"), progress=False)
    task = ["--train", str(train), "--dev", str(dev), "--test", str(dev), "--text-column", "sentence",
            "--max-length", "32", "--epochs", "1", "--batch-size", "32", "--lr", "1e-3", "--no-progress"]
    return {"root": root, "teacher": str(root / "teacher" / "best"), "pt": str(root / "pt"), "task": task,
            "dev": str(dev)}


def distill(setup, name, *argv):
    out = str(setup["root"] / name)
    assert main(["distill", "--teacher", setup["teacher"], *argv, "--out", out, *setup["task"]]) == 0
    report = json.loads(Path(out, "metrics.json").read_text())
    loaded = ptmzoo.load(out)  # the best student, a normal checkpoint
    return report, loaded


def test_kd_writes_a_normal_checkpoint_and_metrics(setup):
    report, student = distill(setup, "kd", "--method", "kd")
    assert student.family == "distilbert" and student.model.config.num_layers == 2  # every other teacher layer
    assert report["distillation"]["student_parameters"] < report["distillation"]["teacher_parameters"]
    assert {"dev", "test"} <= set(report) and report["distillation"]["alpha"] == 0.5
    assert student.task["labels"] == ptmzoo.load(setup["teacher"]).task["labels"]
    assert "helpers" not in student.meta or not student.meta["helpers"]
    log = [json.loads(line) for line in (setup["root"] / "kd" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_kd" in r for r in log)  # the soft loss reported beside the gold labels'


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [
    ("distilbert", []), ("pkd", ["--layer-map", "last"]), ("theseus", ["--replace-schedule", "linear"]),
    ("bilstm", ["student.embedding_size=16", "student.lstm_size=8", "student.hidden_size=16"]),
    ("minilm", ["--student", "bert-tiny", "--relation-heads", "2"]),
    ("tinybert", ["--student", "bert-mini", "student.num_layers=2", "student.hidden_size=16", "student.num_heads=4",
                  "student.intermediate_size=32"]),
    ("mobilebert", ["--student", "bert-mini", "student.num_layers=2", "student.hidden_size=16",
                    "student.num_heads=2", "student.intermediate_size=32"]),
])
def test_every_distillation_method_runs(setup, method, extra):
    report, student = distill(setup, method, "--method", method, *extra)
    assert report["distillation"]["method"] == method and "accuracy" in report["test"]
    if method in ("tinybert", "minilm", "theseus"):
        assert "stages" in report  # intermediate layers / replacing first
    if method == "mobilebert":
        assert list(report["stages"]) == ["layer1", "layer2"]  # one stage per student layer
    if method == "tinybert":  # the projection (16 -> 32 wide) trained, then left out of the student
        assert not student.model.helpers and student.model.config.hidden_size == 16
    if method == "bilstm":
        assert student.family == "bilstm"


@pytest.mark.slow
def test_ensemble_augmentation_and_general_distillation(setup, tmp_path):
    report, _ = distill(setup, "ensemble", "--method", "kd", "--teacher", setup["teacher"], "--alpha", "1")
    assert len(report["distillation"]["teachers"]) == 2
    report, _ = distill(setup, "tb_aug", "--method", "tinybert", "--augment", "2", "--augment-model", setup["pt"])
    assert report["train_examples"] > 160  # the augmented copies
    from ptmzoo.data.prepare import prepare_corpus

    text = tmp_path / "corpus.txt"
    text.write_text(Path(setup["dev"]).read_text() * 5)
    ptmzoo.load(setup["pt"]).tokenizer.save(str(tmp_path / "tok"))
    prepare_corpus([str(text)], str(tmp_path / "tok"), str(tmp_path / "shards"), progress=False, workers=1,
                   valid_fraction=0.2)
    out = str(tmp_path / "general")
    assert main(["distill", "--teacher", setup["pt"], "--method", "distilbert", "--data", str(tmp_path / "shards"),
                 "--steps", "2", "--batch-size", "4", "--seq-len", "16", "--out", out, "--no-progress"]) == 0
    general = ptmzoo.load(os.path.join(out, "final"))
    assert "mlm" in general.model.heads and general.model.config.num_layers == 2


def test_quantized_checkpoints_work_with_evaluate_and_predict(setup, tmp_path):
    for method in ("dynamic-int8", "weight-int8"):
        out = str(tmp_path / method)
        assert main(["quantize", setup["teacher"], "--method", method, "--out", out]) == 0
        loaded = ptmzoo.load(out)
        assert isinstance(loaded.model.backbone.layers[0].attention.qkv, Int8Linear)
        assert loaded.meta["quantization"]["method"] == method and loaded.task["name"] == "classification"
        metrics = tmp_path / f"{method}.json"
        assert main(["evaluate", out, "--file", setup["dev"], "--json", str(metrics)]) == 0
        assert 0 <= json.loads(Path(metrics).read_text())["accuracy"] <= 1
        assert main(["evaluate", out, "--file", setup["dev"], "--json", str(metrics)]) == 2  # not overwritten
        assert main(["predict", out, "--file", setup["dev"], "--out", str(tmp_path / f"{method}.tsv")]) == 0
    assert main(["finetune", "--model", str(tmp_path / "dynamic-int8"), "--out", str(tmp_path / "ft"),
                 *setup["task"]]) == 2  # int8 weights are not trained
    assert main(["convert", str(tmp_path / "weight-int8"), str(tmp_path / "copy"), "--to", "ptmzoo"]) == 0
    assert ptmzoo.load(str(tmp_path / "copy")).meta["quantization"]["method"] == "weight-int8"
    assert main(["convert", str(tmp_path / "weight-int8"), str(tmp_path / "hf"), "--to", "hf"]) == 2


@pytest.mark.slow
def test_qat_and_gradual_pruning_fine_tune(setup, tmp_path):
    out = str(tmp_path / "qat")
    assert main(["quantize", setup["teacher"], "--method", "qat", "--out", out, *setup["task"]]) == 0
    qat = ptmzoo.load(out)
    assert qat.meta["quantization"]["mode"] == "static"
    out = str(tmp_path / "gradual")
    assert main(["prune", setup["teacher"], "--method", "magnitude", "--sparsity", "0.6", "--out", out,
                 *setup["task"]]) == 0
    best = ptmzoo.load(out)
    assert sparsity_of(best.model, best.meta["pruning"]["parameters"]) == pytest.approx(0.6, abs=1e-3)


def test_pruned_checkpoints_and_their_zeros_through_fine_tuning(setup, tmp_path):
    pruned = str(tmp_path / "magnitude")
    assert main(["prune", setup["teacher"], "--method", "magnitude", "--sparsity", "0.5", "--out", pruned]) == 0
    names = ptmzoo.load(pruned).meta["pruning"]["parameters"]
    tuned = str(tmp_path / "tuned")
    assert main(["finetune", "--model", pruned, "--out", tuned, *setup["task"]]) == 0
    model = ptmzoo.load(tuned).model
    assert sparsity_of(model, names) == pytest.approx(0.5, abs=1e-3)  # fine-tuning kept the zeros
    heads = str(tmp_path / "heads")
    assert main(["prune", setup["teacher"], "--method", "heads", "--fraction", "0.5", "--file", setup["dev"],
                 "--out", heads]) == 0
    assert sum(ptmzoo.load(heads).model.config.layer_heads) == 8
    layers = str(tmp_path / "layers")
    assert main(["prune", setup["teacher"], "--method", "layers", "--keep-layers", "0,3", "--out", layers]) == 0
    assert ptmzoo.load(layers).model.config.num_layers == 2
    assert main(["evaluate", layers, "--file", setup["dev"]]) == 0


def test_bad_input_is_one_line_and_out_is_never_overwritten(setup, tmp_path, capsys):
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    for argv in (["distill", "--teacher", setup["teacher"], "--out", str(existing), *setup["task"]],
                 ["quantize", setup["teacher"], "--method", "dynamic-int8", "--out", str(existing)],
                 ["prune", setup["teacher"], "--method", "layers", "--out", str(existing)]):
        assert main(argv) == 2
        assert "--overwrite" in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "keep me"
    # --overwrite replaces ptmzoo's own output (the manifest says what it wrote), never the user's files
    assert main(["quantize", setup["teacher"], "--method", "dynamic-int8", "--out", str(existing), "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "keep me"
    ours = tmp_path / "ours"
    assert main(["prune", setup["teacher"], "--method", "layers", "--out", str(ours)]) == 0
    assert main(["prune", setup["teacher"], "--method", "layers", "--out", str(ours)]) == 2
    capsys.readouterr()
    assert main(["prune", setup["teacher"], "--method", "layers", "--keep-layers", "0", "--out", str(ours),
                 "--overwrite"]) == 0
    assert ptmzoo.load(str(ours)).meta["structure"]["kept_layers"] == [0]
    cases = [
        (["distill", "--teacher", setup["pt"], "--out", str(tmp_path / "a"), *setup["task"]], "not fine-tuned"),
        (["distill", "--teacher", setup["teacher"], "--method", "kd", "--augment", "2", "--out", str(tmp_path / "b"),
          *setup["task"]], "data augmentation of tinybert and bilstm"),
        (["distill", "--teacher", setup["teacher"], "--method", "tinybert", "--student", "bert-tiny",
          "--out", str(tmp_path / "c"), *setup["task"]], "compares heads one to one"),
        (["distill", "--teacher", setup["teacher"], "--method", "kd", "--out", str(tmp_path / "d")], "--train"),
        (["quantize", setup["teacher"], "--method", "qat", "--out", str(tmp_path / "e")], "--train and --dev"),
        (["prune", setup["teacher"], "--method", "heads", "--out", str(tmp_path / "f")], "--file"),
        (["prune", setup["teacher"], "--method", "layers", "--keep-layers", "0,9", "--out", str(tmp_path / "g")],
         "distinct numbers"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
