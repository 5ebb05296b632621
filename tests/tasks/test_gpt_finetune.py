"""GPT-1 fine-tuning: the task input transformations on a hand example, the markers added to the
tokenizer and the embedding matrix, total loss = task loss + lambda * LM loss, similarity over
both orders, and a decoder fine-tuned end to end on multiple choice with both."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.checkpoint import save_pretrained
from ptmzoo.cli import main
from ptmzoo.loading import load
from ptmzoo.tasks import ClassificationOptions, ClassificationTask, MultipleChoiceOptions, MultipleChoiceTask
from ptmzoo.tasks.gpt_input import DELIMITER, EXTRACT, START
from tests.generation.generation_helpers import tiny_gpt2

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture
def tokenizer(bpe_tokenizer):
    return copy.deepcopy(bpe_tokenizer)  # the markers are added to it; the session's tokenizer stays as it is


def markers(tokenizer):
    return [tokenizer.backend.token_to_id(t) for t in (START, DELIMITER, EXTRACT)]


def words(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def classification(tokenizer, **options):
    return ClassificationTask(ClassificationOptions(gpt_input=True, **options), tokenizer, ["no", "yes"], 128)


def test_input_transformations_on_a_hand_example(tokenizer):
    size = tokenizer.vocab_size
    task = classification(tokenizer)
    [sample] = task.encode([{"text": "the cat sat", "label": "yes"}], "f.tsv")
    start, delim, extract = markers(tokenizer)
    assert sorted([start, delim, extract]) == [size, size + 1, size + 2]  # added once, as new tokens
    a, b = words(tokenizer, "the cat sat"), words(tokenizer, "a dog ran")
    assert sample["input_ids"] == [start, *a, extract] and sample["labels"] == 1

    pair_rows = [{"text": "the cat sat", "pair": "a dog ran", "label": "no"}]
    [entail] = classification(tokenizer, text_pair_column="pair").encode(pair_rows, "f.tsv")
    assert entail["input_ids"] == [start, *a, delim, *b, extract]
    assert tokenizer.vocab_size == size + 3  # a second task finds the markers there

    [similar] = classification(tokenizer, text_pair_column="pair", both_orders=True).encode(pair_rows, "f.tsv")
    assert similar["input_ids"] == [[start, *a, delim, *b, extract], [start, *b, delim, *a, extract]]

    mc = MultipleChoiceTask(MultipleChoiceOptions(gpt_input=True), tokenizer, [], 128)
    [choice] = mc.encode([{"text": "the cat sat", "choices": ["a dog ran", "home"], "label": 1}], "f.jsonl")
    assert choice["input_ids"] == [[start, *a, delim, *b, extract], [start, *a, delim, *words(tokenizer, "home"), extract]]

    short = ClassificationTask(ClassificationOptions(gpt_input=True, text_pair_column="pair", max_length=8), tokenizer, ["no"], 128)
    [cut] = short.encode([{"text": "one two three four five six", "pair": "seven", "label": "no"}], "f.tsv")
    assert len(cut["input_ids"]) == 8 and cut["input_ids"][-1] == extract  # the longer text is shortened


def decoder_with_head(task, tokenizer):
    model = tiny_gpt2(vocab_size=tokenizer.vocab_size - 3, preset="gpt1-tiny")  # without room for the markers
    del model.heads["clm"]
    task.add_head(model)  # grows the embeddings, then the task head (and the tied auxiliary LM head)
    assert model.backbone.input_embeddings.num_embeddings == tokenizer.vocab_size == model.config.vocab_size
    return model.eval()


def test_total_loss_is_task_loss_plus_lambda_lm_loss(tokenizer):
    task = classification(tokenizer, text_pair_column="pair", aux_lm_weight=0.5)
    rows = [{"text": "the cat sat on the mat", "pair": "a cat", "label": "yes"},
            {"text": "rain", "pair": "sunshine all day long", "label": "no"}]
    task.gpt_inputs()
    model = decoder_with_head(task, tokenizer)
    batch = task.collate(task.encode(rows, "f.tsv"))
    out = model(**{k: batch[k] for k in INPUTS}, targets=batch)

    hidden = model.backbone(batch["input_ids"], batch["attention_mask"]).last_hidden_state
    last = batch["attention_mask"].sum(1) - 1  # the extract token (right padding)
    task_logits = model.heads["classification"].classifier(hidden[torch.arange(2), last])
    task_loss = F.cross_entropy(task_logits, batch["labels"])
    lm_logits = hidden[:, :-1] @ model.backbone.input_embeddings.weight.T
    targets = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    lm_loss = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    assert out.loss.item() == pytest.approx((task_loss + 0.5 * lm_loss).item(), rel=1e-5)


def test_similarity_sums_both_orders(tokenizer):
    task = classification(tokenizer, text_pair_column="pair", both_orders=True)
    task.gpt_inputs()
    model = decoder_with_head(task, tokenizer)
    rows = [{"text": "the cat sat", "pair": "a dog ran far away", "label": "yes"}]
    swapped = [{"text": "a dog ran far away", "pair": "the cat sat", "label": "yes"}]
    batch = task.collate(task.encode(rows, "f.tsv"))
    assert batch["input_ids"].shape[:2] == (1, 2)
    logits = model(**{k: batch[k] for k in INPUTS}).logits
    head = model.heads["classification"]
    pooled = 0
    for ids in task.encode(rows, "f.tsv")[0]["input_ids"]:  # each order alone
        pooled = pooled + model.backbone(torch.tensor([ids])).last_hidden_state[0, -1]
    torch.testing.assert_close(logits[0], head.classifier(pooled), rtol=1e-5, atol=1e-5)
    batch_swapped = task.collate(task.encode(swapped, "f.tsv"))
    torch.testing.assert_close(model(**{k: batch_swapped[k] for k in INPUTS}).logits, logits)  # symmetric


def test_decoder_multiple_choice_end_to_end(tokenizer, tmp_path, capsys):
    model_dir = str(tmp_path / "gpt1")
    save_pretrained(model_dir, tiny_gpt2(vocab_size=tokenizer.vocab_size, preset="gpt1-tiny"), tokenizer)
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps({"text": f"item {i} is", "choices": ["good", f"bad {i}"], "label": 0})
                            + "\n" for i in range(16)))
    out = str(tmp_path / "run")
    assert main(["finetune", "--model", model_dir, "--task", "multiple-choice", "--train", str(data), "--dev",
                 str(data), "--out", out, "--gpt-input", "--aux-lm-weight", "0.5", "--epochs", "1",
                 "--batch-size", "8", "--no-progress"]) == 0
    best = load(os.path.join(out, "best"))
    assert best.tokenizer.backend.token_to_id(EXTRACT) is not None  # the markers travel with the checkpoint
    assert set(best.model.heads) == {"multiple-choice", "aux_lm"} and best.task["options"]["gpt_input"]
    capsys.readouterr()
    assert main(["evaluate", "--model", out, "--file", str(data)]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1
