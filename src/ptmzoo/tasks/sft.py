"""Supervised instruction tuning (InstructGPT's first step): a causal LM learns to answer.

Data: JSON or JSONL records, either Alpaca-style ``{instruction, input, output}`` (``input`` may be
empty; an optional ``system``) or multi-turn ``{messages: [{role, content}, ...]}`` with roles
``system``, ``user`` and ``assistant``. A ``ChatTemplate`` turns a conversation into text; it is
stored in the checkpoint so that ``ptmzoo chat`` builds prompts exactly as in training.

Loss only on the responses: every assistant reply and the end-of-text token that closes it have
labels; the system text, the user turns and the template's markers are context (label -100).
Examples are packed into rows of up to ``max_length`` tokens without padding between them; each
example keeps its own attention (document mask) and positions (restarting at 0), so a packed
example computes exactly what it would alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..objectives.clm import LMHead
from .base import Task, TaskOptions, pad, write_json
from .tables import read_json_records

ROLES = ("system", "user", "assistant")


@dataclass
class ChatTemplate:
    """Text around each turn. ``{content}`` is the message; an assistant reply is followed by the
    tokenizer's end-of-text token, which is where generation stops."""

    system: str = "{content}\n\n"
    user: str = "### User:\n{content}\n\n"
    assistant: str = "### Assistant:\n"  # before the reply

    @property
    def stop_strings(self) -> list[str]:
        """Text that starts a new user turn: ends a reply in case the model misses the end token."""
        marker = self.user.split("{content}")[0].strip()
        return [marker] if marker else []


def conversation(record: dict, where: str = "") -> list[dict[str, str]]:
    """The messages of a data record in either format."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
            raise UserError(f"{where}'messages' must be a list of {{role, content}} with roles {', '.join(ROLES)}")
        return messages
    if isinstance(record.get("instruction"), str) and isinstance(record.get("output"), str):
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
        return ([{"role": "system", "content": record["system"]}] if record.get("system") else []) + messages
    raise UserError(f"{where}expected {{instruction, input, output}} or {{messages: [{{role, content}}]}}, "
                    f"got the keys {', '.join(k for k in record if k != '_line')}")


def encode_conversation(tokenizer, template: ChatTemplate, messages: list[dict], eos_id: int,
                        open_reply: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and labels (the id on reply tokens, -100 elsewhere). Each piece of text is
    tokenized on its own, so training and ``chat`` cut the text into the same tokens.
    ``open_reply``: end with the assistant marker, ready for the model to answer."""
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, trained: bool) -> None:
        piece = tokenizer.encode(text, add_special_tokens=False) if text else []
        ids.extend(piece)
        labels.extend(piece if trained else [-100] * len(piece))

    for message in messages:
        role, content = message["role"], message["content"]
        if role == "assistant":
            add(template.assistant, False)
            add(content, True)
            ids.append(eos_id)
            labels.append(eos_id)
        else:
            add(getattr(template, role).format(content=content), False)
    if open_reply:
        add(template.assistant, False)
    return ids, labels


class SFTTask(Task):
    name = "sft"
    head = LMHead
    metric_names = ("token_accuracy",)  # next-token accuracy on the replies (higher is better)
    prediction_suffix = ".json"

    def __init__(self, options: TaskOptions, tokenizer, labels: list[str], max_positions: int,
                 template: ChatTemplate | None = None):
        super().__init__(options, tokenizer, labels, max_positions)
        self.template = template or ChatTemplate()
        self.eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.document_separator_id

    @property
    def head_name(self) -> str:
        return "clm"  # the language-model head, as in a pre-trained decoder: generate and chat find it

    @classmethod
    def read(cls, path: str, options: TaskOptions, fmt: str = "auto", columns: list[str] | None = None) -> list[dict]:
        records = read_json_records(path)
        for number, record in enumerate(records, start=1):
            conversation(record, f"{path}:{record.get('_line') or number}: ")
        return records

    def has_labels(self, rows: list[dict]) -> bool:
        return True

    def encode(self, rows: list[dict], path: str, with_labels: bool = True) -> list[dict]:
        samples = []
        for row in rows:
            ids, labels = encode_conversation(self.tokenizer, self.template, conversation(row), self.eos_id)
            samples.append({"input_ids": ids[: self.max_length], "lm_labels": labels[: self.max_length]})
        return samples

    def pack(self, samples: list[dict]) -> list[list[dict]]:
        """Consecutive samples grouped into rows of at most ``max_length`` tokens."""
        rows: list[list[dict]] = []
        used = self.max_length
        for sample in samples:
            if used + len(sample["input_ids"]) > self.max_length:
                rows.append([])
                used = 0
            rows[-1].append(sample)
            used += len(sample["input_ids"])
        return rows

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        ids, labels, documents, positions = [], [], [], []
        for row in self.pack(samples):
            ids.append([t for s in row for t in s["input_ids"]])
            labels.append([t for s in row for t in s["lm_labels"]])
            documents.append([d for d, s in enumerate(row) for _ in s["input_ids"]])
            positions.append([p for s in row for p in range(len(s["input_ids"]))])
        return {"input_ids": pad(ids, self.pad_id), "attention_mask": pad([[1] * len(i) for i in ids], 0),
                "token_type_ids": pad([[0] * len(i) for i in ids], 0), "lm_labels": pad(labels, -100),
                "document_ids": pad(documents, -1), "position_ids": pad(positions, 0)}

    # ---- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, samples: list[dict], batch_size: int, device) -> dict[str, float]:
        """Summed loss, correct next-token predictions and token count over the replies."""
        totals = {"loss": 0.0, "correct": 0, "tokens": 0}
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(samples), batch_size):
                batch = {k: v.to(device) for k, v in self.collate(samples[start:start + batch_size]).items()}
                inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "document_ids")}
                logits = model(**inputs).head_logits[self.head_name][:, :-1].float()
                labels = batch["lm_labels"][:, 1:]
                keep = labels != -100
                totals["loss"] += F.cross_entropy(logits[keep], labels[keep], reduction="sum").item()
                totals["correct"] += int((logits[keep].argmax(-1) == labels[keep]).sum())
                totals["tokens"] += int(keep.sum())
        finally:
            model.train(was_training)
        return totals

    def evaluate(self, rows: list[dict], samples: list[dict], outputs: dict[str, float]) -> dict[str, float]:
        tokens = max(outputs["tokens"], 1)
        loss = outputs["loss"] / tokens
        return {"token_accuracy": outputs["correct"] / tokens, "loss": loss, "perplexity": math.exp(loss)}

    def write_predictions(self, path: str, rows: list[dict], samples: list[dict], outputs) -> None:
        write_json(path, self.evaluate(rows, samples, outputs))

    # ---- checkpoint ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "chat_template": asdict(self.template)}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], tokenizer, max_positions: int) -> SFTTask:
        task = super().from_meta(meta, tokenizer, max_positions)
        task.template = ChatTemplate(**meta.get("chat_template", {}))
        return task
