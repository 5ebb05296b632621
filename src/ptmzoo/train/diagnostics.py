"""Signs that a run learned nothing, said in the log and in the run's metrics.

A run can finish without an error and still have learned nothing: its training loss never fell,
a pre-trained language model predicts no better than token frequencies, a classifier answers one
class. The checks here are the ones every run shares (the training loss, in ``metrics.jsonl``;
the unigram entropy of the shards for pre-training); each task adds its own (``Task.warnings``).
Every warning says what was seen, the likely causes and what to try.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from ..data.shards import ShardSplit

LOSS_FALL = 0.02  # the training loss fell by less than 2% from the first to the last quarter of the run
ENTROPY_MARGIN = 0.05  # a held-out LM loss within 5% of (or above) the unigram entropy
ENTROPY_TOKENS = 50_000_000  # the first tokens of the shards counted for it

TRY_LR = "a learning rate that fits the model (--lr auto, or a larger --lr for a small model)"
FINETUNE_ADVICE = ("Likely causes: a learning rate too low (or too high), too few steps, targets the inputs do not "
                   f"predict (wrong columns). Try {TRY_LR}, more epochs, and check the data's columns")
PRETRAIN_ADVICE = ("Likely causes: too few steps (a slow machine: more threads than cores), a learning rate too low "
                   "(or too high: the loss rises), a warmup as long as the run. Try more steps (--steps or "
                   "train.max_minutes), --lr, train.warmup_ratio")


def training_losses(metrics_path: str) -> list[float]:
    """The training losses logged in a run's ``metrics.jsonl`` (not the evaluation records)."""
    if not os.path.exists(metrics_path):
        return []
    losses = []
    with open(metrics_path, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record.get("loss"), (int, float)) and "lr" in record:
                losses.append(float(record["loss"]))
    return losses


def loss_did_not_fall(losses: list[float], what: str = "the run", advice: str = FINETUNE_ADVICE) -> str | None:
    """A warning when the mean loss of the last quarter of the logged steps is not at least
    ``LOSS_FALL`` below that of the first quarter; None when it fell (or with fewer than 4 logged
    losses, too few to tell)."""
    if len(losses) < 4:
        return None
    k = max(2, len(losses) // 4)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    if math.isfinite(first) and last < first * (1 - LOSS_FALL):
        return None
    return (f"the training loss of {what} did not fall: {first:.4f} over the first {k} logged steps, {last:.4f} over the "
            f"last {k}. {advice}")


def training_loss_warnings(metrics_path: str, what: str = "the run", advice: str = FINETUNE_ADVICE) -> list[str]:
    warning = loss_did_not_fall(training_losses(metrics_path), what, advice)
    return [warning] if warning else []


def unigram_entropy(split: ShardSplit, max_tokens: int = ENTROPY_TOKENS) -> float:
    """Entropy (nats) of the token frequencies of a shard split (its first ``max_tokens``
    tokens): the loss of a model that predicts every token by its frequency alone."""
    counts = np.zeros(0, dtype=np.int64)
    seen = 0
    for shard in split.tokens:
        part = np.asarray(shard[: max(0, max_tokens - seen)], dtype=np.int64)
        if part.size == 0:
            break
        found = np.bincount(part)
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts[: len(found)] += found
        seen += part.size
    if seen == 0:
        return float("nan")
    p = counts[counts > 0] / seen
    return float(-(p * np.log(p)).sum())


def language_model_warning(final_metrics: dict[str, float], entropy: float) -> str | None:
    """A warning when the held-out language-model loss (the log of ``eval_ppl``) is within
    ``ENTROPY_MARGIN`` of the unigram entropy of the data, or above it."""
    if "eval_ppl" not in final_metrics or not math.isfinite(entropy) or entropy <= 0:
        return None
    loss = math.log(max(final_metrics["eval_ppl"], 1e-12))
    if loss < entropy * (1 - ENTROPY_MARGIN):
        return None
    return (f"the held-out language-model loss {loss:.3f} is within {ENTROPY_MARGIN:.0%} of the unigram entropy of "
            f"the training tokens ({entropy:.3f} nats, what predicting each token by its frequency alone scores), "
            "or above it: the model has learned little beyond token frequencies. Likely causes: too few steps "
            "(a slow machine: too many threads for its cores), a learning rate too low or too high, a model too "
            "large for the time given. Try more steps or train.max_minutes, OMP_NUM_THREADS set to the number of "
            "cores, train.lr, a smaller preset")


def pretraining_warnings(final_metrics: dict[str, float], corpus, metrics_path: str) -> list[str]:
    """What a finished pre-training run says about itself: a held-out language-model loss near
    the unigram entropy of the training shards, a training loss that did not fall."""
    warnings = []
    if "eval_ppl" in final_metrics and corpus.has_split("train"):
        warning = language_model_warning(final_metrics, unigram_entropy(corpus.split("train")))
        if warning:
            warnings.append(warning)
    return warnings + training_loss_warnings(metrics_path, "the pre-training", PRETRAIN_ADVICE)


def report_warnings(warnings: list[str], metrics_path: str | None = None, step: int | None = None) -> list[str]:
    """Say each warning on stderr (``warning: ...``) and add them to the run's ``metrics.jsonl``
    as one record ``{"step": N, "warnings": [...]}``; returns the list (for ``metrics.json``)."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if warnings and metrics_path is not None:
        with open(metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "warnings": warnings}) + "\n")
    return list(warnings)
