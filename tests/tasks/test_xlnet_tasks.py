"""XLNet fine-tunes with the existing tasks and XLNet's conventions: inputs are laid out as
``A <sep> B <sep> <cls>`` (the xlnet tokenizer style; <cls> in segment 2), the sequence summary is
the last token (<cls>) by default, and -- relative positions and masked padding -- a left-padded
batch gives the same outputs as a right-padded one, so the tasks' right padding serves XLNet as
well as the left padding of the released code."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.data.tokenizers import train_tokenizer
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.loading import load
from ptmzoo.tasks import task_class


@pytest.fixture(scope="module")
def xlnet_tokenizer(english_docs):
    return train_tokenizer(iter(english_docs), "wordpiece", 2000, style="xlnet")


@pytest.fixture(scope="module")
def tiny_xlnet(tmp_path_factory, xlnet_tokenizer):
    torch.manual_seed(0)
    model = build_model("xlnet", {"vocab_size": xlnet_tokenizer.vocab_size, "hidden_size": 32, "num_layers": 1,
                                  "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
                                  "pad_token_id": xlnet_tokenizer.pad_id})
    path = str(tmp_path_factory.mktemp("tiny") / "xlnet")
    save_pretrained(path, model, xlnet_tokenizer)
    return path


def test_inputs_end_with_cls_in_a_segment_of_its_own(xlnet_tokenizer):
    tok = xlnet_tokenizer
    classification = task_class("classification")
    task = classification(classification.Options(text_pair_column="b"), tok, ["x", "y"], 64)
    sample = task.encode([{"text": "the first text", "b": "a second one", "label": "x"}], "rows")[0]
    assert sample["input_ids"][-1] == tok.cls_id and sample["input_ids"].count(tok.sep_id) == 2
    assert sample["token_type_ids"][-1] == 2 and set(sample["token_type_ids"][:-1]) == {0, 1}
    assert tok.frame() == ([], [tok.sep_id, tok.cls_id])  # pre-training blocks end the same way


def test_left_and_right_padding_give_the_same_outputs(xlnet_tokenizer):
    torch.manual_seed(1)
    model = build_model("xlnet", {"vocab_size": xlnet_tokenizer.vocab_size, "hidden_size": 32, "num_layers": 2,
                                  "num_heads": 2, "intermediate_size": 64}).eval()
    texts = ["a short one", "a much longer text than the first one, with more words"]
    ids = [xlnet_tokenizer.encode(t) for t in texts]
    width = max(map(len, ids))
    right = torch.tensor([i + [xlnet_tokenizer.pad_id] * (width - len(i)) for i in ids])
    left = torch.tensor([[xlnet_tokenizer.pad_id] * (width - len(i)) + i for i in ids])
    right_mask = (torch.arange(width)[None] < torch.tensor([len(i) for i in ids])[:, None]).long()
    left_mask = right_mask.flip(1)
    with torch.no_grad():
        a = model(right, attention_mask=right_mask).last_hidden_state
        b = model(left, attention_mask=left_mask).last_hidden_state
    for row, n in enumerate(len(i) for i in ids):
        torch.testing.assert_close(a[row, :n], b[row, width - n:], atol=1e-5, rtol=1e-5)


def finetune(model, out, task, train, dev, **options):
    cfg = FinetuneConfig.from_dict({"model": model, "task": task, "train_file": train, "dev_file": dev, "epochs": 1,
                                    "options": options, "train": {"batch_size": 8, "lr": 1e-3, "log_every": 1000}})
    return run_finetune(cfg, out, progress=False)


def test_classification_pools_the_last_token_and_reloads(tiny_xlnet, tmp_path):
    data = tmp_path / "data.tsv"
    data.write_text("text\tlabel\n" + "".join(f"some text number {i}\t{'xy'[i % 2]}\n" for i in range(16)))
    out = str(tmp_path / "cls")
    report = finetune(tiny_xlnet, out, "classification", str(data), str(data))
    assert {"accuracy", "macro_f1"} <= set(report["dev"])
    best = load(os.path.join(out, "best"))
    assert best.family == "xlnet" and best.model.heads["classification"].pooling == "last"


def test_tagging_and_qa_run_on_xlnet(tiny_xlnet, tmp_path):
    tagged = tmp_path / "tags.jsonl"
    tagged.write_text("".join(json.dumps({"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]})
                              + "\n" for _ in range(8)))
    report = finetune(tiny_xlnet, str(tmp_path / "ner"), "tagging", str(tagged), str(tagged), max_length=32)
    assert "f1" in report["dev"]
    context = "The Norman conquest of England began in 1066, led by William the Conqueror of Normandy."
    qas = [{"id": str(i), "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for i, (q, a) in enumerate([("When did it begin?", "1066"), ("Who led it?", "William the Conqueror")] * 4)]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}))
    report = finetune(tiny_xlnet, str(tmp_path / "qa"), "qa", str(squad), str(squad), max_length=24, doc_stride=6)
    assert 0 <= report["dev"]["exact_match"] <= report["dev"]["f1"] <= 1
