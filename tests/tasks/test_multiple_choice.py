"""Multiple choice: choices batched as [batch, choices, length] with padding (rows with fewer
choices too), the loss against a per-choice direct computation, and a tiny run that learns a
trivially learnable synthetic task, then `ptmzoo evaluate` / `ptmzoo predict` from the checkpoint."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.checkpoint import save_pretrained
from ptmzoo.cli import main
from ptmzoo.errors import UserError
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.models import BertConfig, BertModel
from ptmzoo.models.model import PtmModel
from ptmzoo.tasks import MultipleChoiceOptions, MultipleChoiceTask

ROWS = [{"context": "The cat sat on", "choices": ["the mat", "a cloud", "the moon"], "label": 0},
        {"context": "Water boils at", "choices": ["one hundred degrees", "noon"], "label": "noon"}]


def tiny_bert(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return PtmModel("bert", BertModel(config))


def make_task(tokenizer, **options):
    return MultipleChoiceTask(MultipleChoiceOptions(text_column="context", **options), tokenizer, [], 64)


def test_choices_batch_as_batch_choices_length(wordpiece_tokenizer):
    task = make_task(wordpiece_tokenizer)
    samples = task.encode(ROWS, "mc.jsonl")
    assert [s["labels"] for s in samples] == [0, 1]  # an index, or the text of the right choice
    batch = task.collate(samples)
    lengths = [[len(ids) for ids in s["input_ids"]] for s in samples]
    assert batch["input_ids"].shape == (2, 3, max(max(x) for x in lengths))
    for i, row_lengths in enumerate(lengths):
        for j, length in enumerate(row_lengths):
            assert batch["attention_mask"][i, j].sum() == length
            assert batch["input_ids"][i, j, :length].tolist() == samples[i]["input_ids"][j]
            assert (batch["input_ids"][i, j, length:] == task.pad_id).all()
    assert batch["attention_mask"][1, 2].sum() == 0  # the second row has two choices only
    # each choice is the pair template: [CLS] context [SEP] choice [SEP]
    assert samples[0]["input_ids"][1] == wordpiece_tokenizer.encode("The cat sat on", "a cloud")


def test_loss_equals_a_direct_per_choice_computation(wordpiece_tokenizer):
    task = make_task(wordpiece_tokenizer)
    model = tiny_bert(wordpiece_tokenizer)
    task.add_head(model)
    model.eval()
    samples = task.encode(ROWS, "mc.jsonl")
    batch = task.collate(samples)
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}, targets=batch)
    head = model.heads[task.head_name]
    expected = 0.0
    for sample in samples:  # each choice alone, unpadded; only the row's own choices compete
        scores = []
        for ids, types in zip(sample["input_ids"], sample["token_type_ids"]):
            hidden = model.backbone(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                    torch.tensor([types]))
            scores.append(head.classifier(hidden.pooler_output)[0, 0])
        expected += F.cross_entropy(torch.stack(scores)[None], torch.tensor([sample["labels"]]))
    assert out.loss_sums[task.head_name].item() == pytest.approx(expected.item(), abs=1e-5)
    assert out.loss.item() == pytest.approx(expected.item() / 2, abs=1e-5)
    logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).head_logits
    assert logits[task.head_name].shape == (2, 3) and logits[task.head_name][1, 2] == float("-inf")


def test_bad_rows_fail_clearly(wordpiece_tokenizer):
    task = make_task(wordpiece_tokenizer)
    with pytest.raises(UserError, match="row 1 has label 'sky'"):
        task.encode([{**ROWS[0], "label": "sky"}], "mc.jsonl")
    with pytest.raises(UserError, match="two or more choices"):
        task.encode([{**ROWS[0], "choices": ["only one"]}], "mc.jsonl")


def synthetic(path, n, seed):
    """The right answer always contains "good"; the others are random words: trivially learnable."""
    rng = random.Random(seed)
    words = ["river", "stone", "music", "paper", "light", "table", "green", "north"]
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            choices = [f"{rng.choice(words)} {rng.choice(words)}" for _ in range(3)]
            label = rng.randrange(3)
            choices[label] = f"good {rng.choice(words)}"
            fh.write(json.dumps({"context": f"the {rng.choice(words)} is", "choices": choices, "label": label}) + "\n")


def test_tiny_run_learns_then_evaluate_and_predict(wordpiece_tokenizer, tmp_path, capsys):
    model_dir = str(tmp_path / "bert")
    save_pretrained(model_dir, tiny_bert(wordpiece_tokenizer), wordpiece_tokenizer)
    train, dev = str(tmp_path / "train.jsonl"), str(tmp_path / "dev.jsonl")
    synthetic(train, 96, 0)
    synthetic(dev, 30, 1)
    out = str(tmp_path / "mc")
    cfg = FinetuneConfig.from_dict({"model": model_dir, "task": "multiple-choice", "train_file": train,
                                    "dev_file": dev, "epochs": 4, "options": {"text_column": "context"},
                                    "train": {"batch_size": 16, "lr": 3e-3, "log_every": 1000}})
    report = run_finetune(cfg, out, progress=False)
    assert report["dev"]["accuracy"] >= 0.9, report["dev"]  # chance is 1/3
    capsys.readouterr()
    assert main(["evaluate", "--model", out, "--file", dev]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(report["dev"]["accuracy"])
    predictions = str(tmp_path / "pred.tsv")
    assert main(["predict", os.path.join(out, "best"), "--file", dev, "--out", predictions]) == 0
    with open(predictions, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0].split("\t") == ["context", "label", "prediction", "choice", "confidence"] and len(lines) == 31


def test_choices_from_several_tsv_columns(wordpiece_tokenizer, tmp_path):
    data = tmp_path / "swag.tsv"
    data.write_text("sent\tending0\tending1\tlabel\nHe opened the door\tand walked in\tand the sky\t0\n")
    task = make_task(wordpiece_tokenizer, choices_column="ending0,ending1")
    rows = task.read(str(data), task.options)
    [sample] = task.encode([{**r, "context": r["sent"]} for r in rows], str(data))
    assert sample["choices"] == ["and walked in", "and the sky"] and sample["labels"] == 0
