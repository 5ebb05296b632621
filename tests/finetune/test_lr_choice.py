"""Fine-tuning learning rates: the width rule (used without --lr), --lr auto (a grid chosen on dev
only, the chosen run's best checkpoint kept), the flags, --metric f1, and the warnings of a run
that learned nothing in metrics.json. ``tiny_bert``: conftest's (32 wide)."""

from __future__ import annotations

import json
import os

import pytest

from ptmzoo.cli import build_parser
from ptmzoo.errors import UserError
from ptmzoo.finetune.flags import finetune_settings
from ptmzoo.finetune.lr import default_grid, lr_for_width
from ptmzoo.finetune.run import FinetuneConfig, evaluate_file, run_finetune
from ptmzoo.io import read_json
from ptmzoo.loading import load
from tests.conftest import run_main

GOOD = ["great", "wonderful", "fine", "lovely", "superb", "nice", "excellent", "brilliant"]
BAD = ["awful", "terrible", "boring", "dreadful", "poor", "bad", "horrible", "dull"]


def sentiment(path, n: int, offset: int = 0, flip: bool = False) -> str:
    lines = ["text\tlabel"]
    for i in range(n):
        positive = (i % 2 == 0) != flip
        word = (GOOD if (i % 2 == 0) else BAD)[(i // 2 + offset) % 8]
        lines.append(f"the film was {word} and the story {word}\t{int(positive)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def config(model, train_file, dev_file, **extra):
    data = {"model": model, "train_file": train_file, "dev_file": dev_file, "epochs": 3,
            "train": {"batch_size": 8, "log_every": 1, **extra.pop("train", {})}, **extra}
    return FinetuneConfig.from_dict(data)


def test_the_width_rule():
    assert [lr_for_width(w) for w in (1024, 768, 512, 384, 312, 256, 128, 32)] == \
        [5e-5, 5e-5, 1.1e-4, 2e-4, 3e-4, 4.5e-4, 1e-3, 1e-3]
    assert default_grid(256) == [1.5e-4, 4.5e-4, 1.4e-3]
    assert default_grid(768) == [1.7e-5, 5e-5, 1.5e-4]


def test_how_the_rate_is_chosen_from_the_config_and_the_flags(tiny_bert, tmp_path):
    files = {"model": tiny_bert, "train_file": "t.tsv", "dev_file": "d.tsv"}
    assert FinetuneConfig.from_dict(files).lr_choice == "rule"
    assert FinetuneConfig.from_dict({**files, "train": {"batch_size": 8}}).lr_choice == "rule"
    given = FinetuneConfig.from_dict({**files, "train": {"lr": 3e-4}})
    assert given.lr_choice == "given" and given.replace(runs=2).lr_choice == "given"  # kept through replace
    assert FinetuneConfig.from_dict({**files, "lr_grid": [1e-4, 1e-3]}).lr_choice == "auto"
    with pytest.raises(UserError, match="--lr-grid is the grid of --lr auto"):
        FinetuneConfig.from_dict({**files, "lr_grid": [1e-4], "train": {"lr": 1e-3}})
    parser = build_parser()

    def settings(*flags):
        args = parser.parse_args(["finetune", "--model", tiny_bert, "--train", "t.tsv", "--dev", "d.tsv",
                                  "--out", str(tmp_path / "o"), *flags])
        return FinetuneConfig.from_dict(finetune_settings(args))

    assert settings().lr_choice == "rule"
    cfg = settings("--lr", "2e-4")
    assert (cfg.lr_choice, cfg.train.lr) == ("given", 2e-4)
    cfg = settings("--lr", "auto", "--lr-grid", "1e-4,1e-3")
    assert (cfg.lr_choice, cfg.lr_grid) == ("auto", [1e-4, 1e-3])
    with pytest.raises(SystemExit):
        parser.parse_args(["finetune", "--model", "m", "--train", "t", "--dev", "d", "--out", "o", "--lr", "fast"])


def help_text(capsys, *verb: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*verb, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_defaults(capsys):
    text = help_text(capsys, "finetune")
    assert "default: by the model's width, 5e-05 x (768 / hidden_size)^2" in text
    assert "(default: 3.0)" in text and "train.batch_size; default: 32" in text  # --epochs, --batch-size
    assert "--seed SEED (default: 0)" in help_text(capsys, "init")  # a default of 0 is shown too
    assert "(0: zero-shot) (default: 0)" in help_text(capsys, "evaluate")  # --shots
    pretrain = help_text(capsys, "pretrain")
    assert "train.max_steps; default: the recipe's, else 1000" in pretrain and "else 0.0001" in pretrain
    for verb in ("generate", "chat"):
        text = help_text(capsys, verb, "M")
        assert "default: greedy, or 1 with --top-k or --top-p" in text and "(default: no top-k filter)" in text


def test_rule_rate_used_without_lr(tiny_bert, tmp_path):
    train = sentiment(tmp_path / "train.tsv", 16)
    report = run_finetune(config(tiny_bert, train, train, epochs=1), str(tmp_path / "run"), progress=False)
    assert report["lr"] == 1e-3 and report["lr_choice"].startswith("rule: hidden size 32 -> 0.001")
    with open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8") as fh:
        rates = [json.loads(line).get("lr") for line in fh]
    assert max(r for r in rates if r is not None) <= 1e-3
    assert isinstance(report["warnings"], list)


def test_lr_auto_chooses_on_dev_only_and_keeps_that_best(tiny_bert, tmp_path):
    train = sentiment(tmp_path / "train.tsv", 32)
    dev = sentiment(tmp_path / "dev.tsv", 16, offset=3)
    test = sentiment(tmp_path / "test.tsv", 16, offset=3, flip=True)  # the dev set's labels reversed
    out = str(tmp_path / "auto")
    cfg = config(tiny_bert, train, dev, test_file=test, lr_grid=[1e-6, 5e-3], epochs=10)
    report = run_finetune(cfg, out, progress=False)
    search = report["lr_search"]
    assert search["grid"] == [1e-6, 5e-3] and search["selected_by"] == "accuracy"
    scores = [t["dev"]["accuracy"] for t in search["trials"]]
    assert [t["lr"] for t in search["trials"]] == [1e-6, 5e-3]
    assert scores[1] == 1.0 > scores[0]  # the larger rate learns the words in 10 epochs, 1e-6 does not
    assert search["chosen_lr"] == report["lr"] == search["trials"][scores.index(max(scores))]["lr"]
    assert report["dev"]["accuracy"] == max(scores)
    for trial in search["trials"]:  # the trials never see the test file
        assert "test" not in trial and not os.path.exists(os.path.join(trial["run_dir"], "predictions.test.tsv"))
        assert not os.path.exists(os.path.join(trial["run_dir"], "checkpoints"))
    saved = read_json(os.path.join(out, "metrics.json"))
    assert saved["lr_search"]["trials"][0]["dev"]["accuracy"] == scores[0] and "warnings" in saved
    assert evaluate_file(load(os.path.join(out, "best")), dev)["accuracy"] == pytest.approx(report["dev"]["accuracy"])
    assert report["test"]["accuracy"] == 0.0  # the reversed labels: test would have chosen 1e-6
    assert os.path.exists(os.path.join(out, "predictions.test.tsv"))
    assert os.path.exists(os.path.join(out, "predictions.dev.tsv"))


def test_metric_f1_selects_and_needs_two_classes(tiny_bert, tmp_path):
    train = sentiment(tmp_path / "train.tsv", 16)
    report = run_finetune(config(tiny_bert, train, train, epochs=1, metric="f1"), str(tmp_path / "f1"),
                          progress=False)
    assert report["selected_by"] == "f1" and {"f1", "accuracy_f1"} <= set(report["dev"])
    three = tmp_path / "three.tsv"
    three.write_text("text\tlabel\n" + "".join(f"text {i}\t{'abc'[i % 3]}\n" for i in range(9)))
    with pytest.raises(UserError, match="--metric f1 needs two classes; .* has 3"):
        run_finetune(config(tiny_bert, str(three), str(three), metric="f1"), str(tmp_path / "3"), progress=False)


def test_a_run_that_learned_nothing_says_so(tiny_bert, tmp_path, capsys):
    train = sentiment(tmp_path / "train.tsv", 32)
    out = str(tmp_path / "nothing")
    code = run_main(capsys, "finetune", "--model", tiny_bert, "--train", train, "--dev", train, "--out", out,
                    "--lr", "1e-9", "--epochs", "2", "--batch-size", "8", "--no-progress", "train.log_every=1")
    assert code.returncode == 0
    report = read_json(os.path.join(out, "metrics.json"))
    assert any("training loss of the fine-tuning did not fall" in w for w in report["warnings"])
    assert all(f"warning: {w}" in code.stderr for w in report["warnings"])
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        assert json.loads(fh.readlines()[-1])["warnings"] == report["warnings"]
    healthy = run_finetune(config(tiny_bert, train, train, epochs=10, train={"lr": 5e-3}), str(tmp_path / "ok"),
                           progress=False)
    assert healthy["dev"]["accuracy"] == 1.0 and healthy["warnings"] == []
