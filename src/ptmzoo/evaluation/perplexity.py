"""Perplexity of a language model on a long text.

* A Transformer decoder: a sliding window (the strided method of the Hugging Face perplexity guide).
  A text longer than the model's context is cut into windows of ``context`` tokens that start
  ``stride`` tokens apart. Every token is scored exactly once, in the first window that contains it
  (after the window's first token, which has nothing to condition on): with a stride below the
  context, each scored token sees at least ``context - stride`` tokens before it, which brings the
  estimate close to that of a model reading the whole text left to right.
* A recurrent LM (AWD-LSTM): the text is read left to right in chunks of ``context`` tokens, the
  state carried from chunk to chunk, so every token is conditioned on everything before it. With
  ``batch_size`` > 1 the text is cut into that many equal streams read side by side (each stream's
  first token is not scored).
* A bidirectional LM (ELMo): consecutive windows of ``context`` tokens; the forward LM scores each
  token from the ones before it in the window, the backward LM from the ones after; the reported
  NLL is the mean of both directions (``objectives.bilm``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.derived import add_derived_inputs
from ..errors import UserError
from ..generation.decoding import lm_head, memory_lm_head
from ..models.base import BackboneOutput


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


LM_HEADS = ("clm", "bilm")  # head kinds that score a text: causal, bidirectional
DEFAULT_CONTEXT = 256  # models without a position table (LSTMs)


def language_model_head(model):
    heads = [head for head in model.heads.values() if head.kind in LM_HEADS]
    if not heads:
        raise UserError(f"this {model.family} model cannot score perplexity: it needs a decoder with a causal LM "
                        f"head (clm) or a bidirectional LM head (bilm), it has heads: "
                        f"{', '.join(model.heads) or 'none'}; pre-train e.g. --preset gpt2-tiny")
    return heads[0]


@torch.no_grad()
def perplexity(model, ids: list[int], context: int | None = None, stride: int | None = None,
               batch_size: int = 8, tokenizer=None) -> dict[str, float]:
    """Mean negative log-likelihood (nats per token) and perplexity of token ids ``ids``.

    ``context``: window (or chunk) length (default: the model's, 256 without a position table);
    ``stride`` (default: context / 2; windows of a decoder only). ``tokenizer``: for models that
    derive inputs from the ids (ELMo's characters)."""
    head = language_model_head(model)
    longest = model.backbone.max_length
    context = context or longest or DEFAULT_CONTEXT
    if longest is not None and context > longest:
        raise UserError(f"--context {context} is longer than the model's ({longest})")
    if len(ids) < 2:
        raise UserError("the text has fewer than 2 tokens; nothing to score")
    if model.backbone.recurrent:
        return _recurrent_perplexity(model, head, ids, context, batch_size)
    if head.kind == "bilm":
        stride = context  # consecutive windows: each token scored once per direction
    windows = strided_windows(len(ids), context, stride or max(context // 2, 1))
    device = next(model.parameters()).device
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
            if head.kind == "bilm":  # both directions score every token of the window
                labels = torch.where(mask == 1, input_ids, -100)
            targets = {"lm_labels": labels.to(device)}
            inputs = add_derived_inputs({"input_ids": input_ids, "attention_mask": mask},
                                        model.backbone.derived_inputs, tokenizer, as_tensors=True)
            out = model.backbone(**{k: v.to(device) for k, v in model.select_inputs(inputs).items()})
            nll += head.loss_sum(out, targets).item()  # the LM head's own loss: sum over the labels
            count += int(head.count_targets(targets))
    finally:
        model.train(was_training)
    mean = nll / count
    return {"tokens": len(ids), "scored_tokens": count, "windows": len(windows), "context": context,
            "nll": mean, "perplexity": math.exp(mean)}


@torch.no_grad()
def perplexity_with_memory(model, ids: list[int], segment: int, mem_len: int | None = None,
                           by_position: bool = False) -> dict:
    """Perplexity of a model with a memory (Transformer-XL) on a long text, as in its paper: the
    text in consecutive segments of ``segment`` tokens, each read with the memory of the ones
    before it (the last ``mem_len`` states per layer; default the model's, 0: none), every token
    but the first scored once. ``by_position``: also the mean NLL of the tokens at each position
    of a segment (``position_nll``; without a memory the first positions lack context)."""
    head = memory_lm_head(model)
    if segment < 1:
        raise UserError(f"--context (the segment length) must be at least 1 token, got {segment}")
    if mem_len is not None and mem_len < 0:
        raise UserError(f"--mem-len must be 0 (no memory) or more, got {mem_len}")
    if len(ids) < 2:
        raise UserError("the text has fewer than 2 tokens; nothing to score")
    keep = model.config.mem_len if mem_len is None else mem_len
    device = model.backbone.input_embeddings.weight.device
    tokens = torch.tensor(ids, device=device)
    was_training = model.training
    model.eval()
    nll, count, mems = 0.0, 0, None
    position_sum = torch.zeros(segment, dtype=torch.float64)
    position_count = torch.zeros(segment, dtype=torch.float64)
    try:
        for start in range(0, len(ids) - 1, segment):
            inputs = tokens[start : start + segment][None]
            targets = tokens[start + 1 : start + 1 + segment][None]
            out = model.backbone(inputs[:, : targets.shape[1]], mems=mems, mem_len=keep)
            mems = out.mems
            if by_position:
                log_probs = head.softmax.log_probs(out.last_hidden_state)
                losses = -log_probs.gather(-1, targets[..., None])[0, :, 0].double().cpu()
                position_sum[: len(losses)] += losses
                position_count[: len(losses)] += 1
                nll += float(losses.sum())
            else:
                nll += float(head.loss_sum(out, {head.target_key: targets}))
            count += targets.shape[1]
    finally:
        model.train(was_training)
    mean = nll / count
    result = {"tokens": len(ids), "scored_tokens": count, "segment": segment, "mem_len": keep, "nll": mean,
              "perplexity": math.exp(mean)}
    if by_position:
        result["position_nll"] = (position_sum / position_count.clamp(min=1)).tolist()
    return result


def _recurrent_perplexity(model, head, ids: list[int], chunk: int, streams: int) -> dict[str, float]:
    """Every token after the first of each stream, scored with the state carried along its stream."""
    device = next(model.parameters()).device
    streams = max(1, min(streams, (len(ids) - 1) // 2))
    part = len(ids) // streams
    tokens = torch.tensor(ids[: part * streams], device=device).view(streams, part)
    state = model.backbone.initial_state(streams)
    was_training = model.training
    model.eval()
    nll = 0.0
    try:
        for start in range(0, part - 1, chunk):
            end = min(start + chunk, part - 1)
            hidden = model.backbone(tokens[:, start:end], cache=state).last_hidden_state
            for t in range(0, end - start, 32):  # the logits of 32 positions at a time
                logits = head.logits(BackboneOutput(hidden[:, t : t + 32]), {}).float()
                targets = tokens[:, start + 1 + t : start + 1 + t + logits.shape[1]]
                nll += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
    finally:
        model.train(was_training)
    count = streams * (part - 1)
    mean = nll / count
    return {"tokens": len(ids), "scored_tokens": count, "streams": streams, "context": chunk,
            "nll": mean, "perplexity": math.exp(mean)}
