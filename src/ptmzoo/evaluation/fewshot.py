"""Zero- and few-shot classification with a causal LM, as in GPT-2 and GPT-3: no training, only
a prompt and the likelihood of each possible answer.

A prompt holds ``k`` solved examples drawn from a training file (a fresh seeded draw for each test
example, as in GPT-3) and then the test example, each rendered with a template such as
``"Review: {sentence}\\nSentiment:"``; the answer follows after a space. The candidates are the
label words (``verbalizers``, e.g. ``0=negative,1=positive``), or, for multiple-choice data, the
row's own ``choices``. The prediction is the candidate whose tokens have the highest total
log-probability after the prompt (``normalize``: per token, which does not favour short answers).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..generation.decoding import lm_head


@dataclass
class FewShotTask:
    template: str = "{text}\nAnswer:"  # one example; fields are column names
    label_column: str = "label"
    verbalizers: dict[str, str] | None = None  # label -> answer text (default: the label itself)
    choices_column: str | None = None  # multiple choice: a list of answers per row, the label its index
    separator: str = "\n\n"  # between examples

    def render(self, row: dict) -> str:
        try:
            return self.template.format(**row)
        except KeyError as exc:
            columns = ", ".join(k for k in row if not k.startswith("_"))
            raise UserError(f"template field {{{exc.args[0]}}} is not a column (columns: {columns}); "
                            "fix --template") from None

    def candidates(self, row: dict, labels: list[str]) -> list[str]:
        """The answer texts to score for ``row``."""
        if self.choices_column is None:
            return [self.verbalizers.get(label, label) if self.verbalizers else label for label in labels]
        choices = row.get(self.choices_column)
        if not isinstance(choices, list) or not choices:
            raise UserError(f"row without a list of answers in '{self.choices_column}': {row}")
        return [str(c) for c in choices]

    def gold(self, row: dict, labels: list[str]) -> int:
        """Index of the correct candidate."""
        label = str(row.get(self.label_column))
        if self.choices_column is not None:
            if not label.isdigit() or int(label) >= len(row[self.choices_column]):
                raise UserError(f"'{self.label_column}' must be the index of the right choice, got {label!r}")
            return int(label)
        if label not in labels:
            raise UserError(f"label {label!r} is not among the labels ({', '.join(labels)})")
        return labels.index(label)

    def answer(self, row: dict, labels: list[str]) -> str:
        return self.candidates(row, labels)[self.gold(row, labels)]


def build_prompt(task: FewShotTask, demonstrations: list[dict], row: dict, labels: list[str]) -> str:
    """The solved demonstrations, then ``row`` without its answer (the candidates follow after a space)."""
    shots = [f"{task.render(demo)} {task.answer(demo, labels)}" for demo in demonstrations]
    return task.separator.join(shots + [task.render(row)])


@torch.no_grad()
def continuation_logprobs(model, contexts: list[list[int]], continuations: list[list[int]],
                          batch_size: int = 16) -> list[tuple[float, int]]:
    """(sum of log p(continuation token | everything before), number of tokens) for each pair."""
    head = lm_head(model, "classify few-shot by likelihood")
    device = model.backbone.input_embeddings.weight.device
    results = []
    for i in range(0, len(contexts), batch_size):
        pairs = list(zip(contexts[i:i + batch_size], continuations[i:i + batch_size]))
        width = max(len(c) + len(a) for c, a in pairs)
        ids = torch.zeros(len(pairs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (context, answer) in enumerate(pairs):  # right padding: a causal model ignores it
            ids[row, : len(context) + len(answer)] = torch.tensor(context + answer)
            mask[row, : len(context) + len(answer)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = head.logits(model.backbone(ids, mask), {"input_ids": ids, "attention_mask": mask})
        log_probs = F.log_softmax(logits.float(), dim=-1)
        for row, (context, answer) in enumerate(pairs):
            # the token at position p is predicted at position p - 1
            steps = torch.arange(len(context) - 1, len(context) + len(answer) - 1, device=log_probs.device)
            targets = torch.tensor(answer, device=log_probs.device)
            results.append((log_probs[row, steps, targets].sum().item(), len(answer)))
    return results


def fewshot_classify(model, tokenizer, task: FewShotTask, train_rows: list[dict], test_rows: list[dict],
                     shots: int = 0, seed: int = 0, normalize: bool = False, batch_size: int = 16,
                     context: int | None = None) -> dict:
    """Accuracy of picking the most likely candidate after a ``shots``-shot prompt, and the predictions."""
    if shots > len(train_rows):
        raise UserError(f"--shots {shots} is more than the {len(train_rows)} training examples")
    labels = (list(task.verbalizers) if task.verbalizers else
              sorted({str(row.get(task.label_column)) for row in train_rows + test_rows}))
    context = context or model.config.max_position_embeddings
    rng = random.Random(seed)
    contexts, answers, owners, gold = [], [], [], []
    for index, row in enumerate(test_rows):
        demos = rng.sample(train_rows, shots)
        candidates = [tokenizer.encode(" " + c, add_special_tokens=False) for c in task.candidates(row, labels)]
        longest = max(map(len, candidates))
        while True:  # fewer demonstrations, then a left-truncated prompt, when it does not fit
            prompt = tokenizer.encode(build_prompt(task, demos, row, labels), add_special_tokens=False)
            if len(prompt) + longest <= context or not demos:
                break
            demos = demos[:-1]
        prompt = prompt[max(len(prompt) + longest - context, 0):]
        if not prompt:
            raise UserError(f"an answer of {longest} tokens leaves no room for the prompt in {context} tokens")
        for candidate in candidates:
            contexts.append(prompt)
            answers.append(candidate)
            owners.append(index)
        gold.append(task.gold(row, labels))
    scores = [[] for _ in test_rows]
    for owner, (total, count) in zip(owners, continuation_logprobs(model, contexts, answers, batch_size)):
        scores[owner].append(total / count if normalize else total)
    predictions = [max(range(len(s)), key=s.__getitem__) for s in scores]
    correct = sum(p == g for p, g in zip(predictions, gold))
    return {"accuracy": correct / len(test_rows), "examples": len(test_rows), "shots": shots,
            "predictions": predictions, "scores": scores}
