"""Instruction tuning: both data formats, loss only on reply tokens, packing that changes nothing,
and `ptmzoo finetune --task sft` + `ptmzoo chat` on a tiny decoder."""

import json

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.errors import UserError
from ptmzoo.tasks import TaskOptions
from ptmzoo.tasks.sft import ChatTemplate, SFTTask, conversation, encode_conversation
from tests.generation.generation_helpers import tiny_gpt2

RECORDS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Translate to French", "input": "the cat", "output": "le chat", "system": "Be brief."},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."}]},
]


def test_both_formats_become_conversations():
    assert conversation(RECORDS[0]) == [{"role": "user", "content": "Name a colour."},
                                        {"role": "assistant", "content": "Blue."}]
    assert conversation(RECORDS[1])[0] == {"role": "system", "content": "Be brief."}
    assert conversation(RECORDS[1])[1]["content"] == "Translate to French\n\nthe cat"
    assert len(conversation(RECORDS[2])) == 4
    with pytest.raises(UserError, match="expected .instruction, input, output"):
        conversation({"prompt": "x"}, "f.json:3: ")
    with pytest.raises(UserError, match="roles system, user, assistant"):
        conversation({"messages": [{"role": "bot", "content": "x"}]})


def test_labels_only_on_replies_and_their_end_token(bpe_tokenizer):
    eos = bpe_tokenizer.document_separator_id
    template = ChatTemplate()
    ids, labels = encode_conversation(bpe_tokenizer, template, conversation(RECORDS[2]), eos)
    assert len(ids) == len(labels)
    trained = [i for i, label in enumerate(labels) if label != -100]
    assert all(ids[i] == labels[i] for i in trained)
    encode = lambda text: bpe_tokenizer.encode(text, add_special_tokens=False)
    assert [ids[i] for i in trained] == encode("Hello!") + [eos] + encode("Four.") + [eos]
    text = bpe_tokenizer.decode([i for i, label in zip(ids, labels) if label == -100])
    assert "### User:" in text and "Two plus two?" in text and "Hello" not in text
    prompt, _ = encode_conversation(bpe_tokenizer, template, conversation(RECORDS[2])[:3], eos, open_reply=True)
    assert prompt == ids[: len(prompt)]  # chat prompts are the training text up to the reply


def test_packed_batch_equals_examples_alone(bpe_tokenizer):
    model = tiny_gpt2(bpe_tokenizer.vocab_size, seed=2, initializer_range=0.1)
    task = SFTTask(TaskOptions(max_length=120), bpe_tokenizer, [], 128)
    samples = task.encode(RECORDS, "records.json")
    batch = task.collate(samples)
    assert batch["input_ids"].shape[0] < len(samples), [len(s["input_ids"]) for s in samples]  # rows shared
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "document_ids")}
        packed = model(**inputs, targets={"lm_labels": batch["lm_labels"]})
        total, count = 0.0, 0
        for sample in samples:  # the loss over reply tokens only, one example at a time
            logits = model(torch.tensor([sample["input_ids"]])).logits[0, :-1]
            labels = torch.tensor(sample["lm_labels"][1:])
            keep = labels != -100
            total += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
            count += int(keep.sum())
    assert packed.loss_sums["clm"].item() == pytest.approx(total, rel=1e-5)
    assert packed.loss.item() == pytest.approx(total / count, rel=1e-5)
    outputs = task.predict(model, samples, 2, "cpu")
    assert outputs["tokens"] == count and outputs["loss"] == pytest.approx(total, rel=1e-5)


def test_finetune_sft_then_chat(tmp_path, capsys, bpe_tokenizer):
    import ptmzoo
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.cli import main
    from ptmzoo.tasks.chat import chat_loop

    base = str(tmp_path / "base")
    save_pretrained(base, tiny_gpt2(bpe_tokenizer.vocab_size, seed=1), bpe_tokenizer)
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS * 4))
    out = str(tmp_path / "sft")
    code = main(["finetune", "--task", "sft", "--model", base, "--train", str(data), "--dev", str(data),
                 "--out", out, "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--max-length", "64",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    tuned = ptmzoo.load(str(tmp_path / "sft" / "best"))
    assert tuned.meta["task"]["chat_template"]["user"] == ChatTemplate().user
    said = []
    lines = iter(["Name a colour.", "/reset", "Hi", "/exit", "never read"])
    messages = chat_loop(tuned, read=lambda _: next(lines), write=said.append, max_new_tokens=5)
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "Hi"
    assert "".join(said).count("bot> ") == 2
