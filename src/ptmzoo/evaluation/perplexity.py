"""Perplexity of a causal LM on a long text with a sliding window (the strided method of the
Hugging Face perplexity guide).

A text longer than the model's context is cut into windows of ``context`` tokens that start
``stride`` tokens apart. Every token is scored exactly once, in the first window that contains it
(after the window's first token, which has nothing to condition on): with a stride below the
context, each scored token sees at least ``context - stride`` tokens before it, which brings the
estimate close to that of a model reading the whole text left to right.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..generation.decoding import lm_head


def strided_windows(num_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored token) of each window; windows cover [begin, end)."""
    if context < 2:
        raise UserError(f"--context must be at least 2 tokens, got {context}")
    if not 1 <= stride <= context:
        raise UserError(f"--stride must be between 1 and the context ({context}), got {stride}")
    windows, scored_to = [], 0
    for begin in range(0, max(num_tokens - 1, 1), stride):
        end = min(begin + context, num_tokens)
        windows.append((begin, end, max(scored_to, begin + 1)))
        scored_to = end
        if end == num_tokens:
            break
    return windows


@torch.no_grad()
def perplexity(model, ids: list[int], context: int | None = None, stride: int | None = None,
               batch_size: int = 8) -> dict[str, float]:
    """Mean negative log-likelihood (nats per token) and perplexity of token ids ``ids``.

    ``context``: window length (default: the model's); ``stride`` (default: context / 2)."""
    head = lm_head(model, "score perplexity")
    context = context or model.config.max_position_embeddings
    if context > model.config.max_position_embeddings:
        raise UserError(f"--context {context} is longer than the model's ({model.config.max_position_embeddings})")
    if len(ids) < 2:
        raise UserError("the text has fewer than 2 tokens; nothing to score")
    windows = strided_windows(len(ids), context, stride or max(context // 2, 1))
    device = model.backbone.input_embeddings.weight.device
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    try:
        for i in range(0, len(windows), batch_size):
            group = windows[i:i + batch_size]
            width = max(end - begin for begin, end, _ in group)
            input_ids = torch.zeros(len(group), width, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            labels = torch.full_like(input_ids, -100)  # label at i: the token predicted from position i - 1
            for row, (begin, end, first) in enumerate(group):
                input_ids[row, : end - begin] = torch.tensor(ids[begin:end])
                mask[row, : end - begin] = 1
                labels[row, first - begin: end - begin] = torch.tensor(ids[first:end])
            targets = {"lm_labels": labels.to(device)}
            out = model.backbone(input_ids.to(device), mask.to(device))
            nll += head.loss_sum(out, targets).item()  # the LM head's own loss: sum over the labels
            count += int(head.count_targets(targets))
    finally:
        model.train(was_training)
    mean = nll / count
    return {"tokens": len(ids), "scored_tokens": count, "windows": len(windows), "context": context,
            "nll": mean, "perplexity": math.exp(mean)}
