"""The distillation losses, as plain functions of tensors (the distillers in ``distill`` combine them).

Each returns a *sum* over examples (or tokens) of a per-example (per-token) loss, as the model's
heads do, so that the Trainer can divide by the number of targets of the whole optimizer step.

* ``soft_target_kl``: Hinton et al. (2015): KL(p_teacher^T || p_student^T) scaled by T^2, so that
  the gradient keeps its size when the temperature changes; the teacher may be an ensemble (the
  mean of its members' probabilities: MT-DNN-KD, EnsembleBERT).
* ``logit_mse``: Distilled BiLSTM's MSE between logit vectors.
* ``cosine_loss``: DistilBERT's L_cos, 1 - cos between student and teacher hidden states.
* ``hidden_mse``, ``attention_score_mse``: TinyBERT's hidden-state and attention-score MSE.
* ``patient_loss``: BERT-PKD's squared distance between L2-normalised [CLS] states.
* ``relation``, ``relation_kl``: MiniLM's self-attention distributions (query-key relations) and
  value relations, split into any number of relation heads (MiniLM-v2), compared by KL.
* ``layer_map``: which teacher layer each student layer learns from.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError

LAYER_MAPS = ("uniform", "skip", "last")


def soft_targets(teacher_logits: list[torch.Tensor] | torch.Tensor, temperature: float) -> torch.Tensor:
    """p_teacher at temperature T (float32); with several teachers, the mean of their distributions."""
    if isinstance(teacher_logits, torch.Tensor):
        teacher_logits = [teacher_logits]
    probabilities = [torch.softmax(logits.float() / temperature, dim=-1) for logits in teacher_logits]
    return torch.stack(probabilities).mean(0)


def soft_target_kl(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * sum over rows of KL(p_teacher || softmax(student / T)); rows are the leading dimensions."""
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    p = teacher_probabilities.float()
    kl = (p * (torch.log(p.clamp(min=1e-12)) - log_student)).sum(-1)
    return temperature ** 2 * kl.sum()


def logit_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Sum over rows of the mean squared difference of the logit vectors (Tang et al.)."""
    return ((student_logits.float() - teacher_logits.float()) ** 2).mean(-1).sum()


def binary_soft_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    return torch.stack([torch.sigmoid(t.float() / temperature) for t in teacher_logits]).mean(0)


def binary_soft_target_loss(student_logits: torch.Tensor, teacher_probabilities: torch.Tensor,
                            temperature: float) -> torch.Tensor:
    """Multi-label: T^2 * binary cross-entropy against the teacher's probabilities, summed over rows
    (mean over the labels of a row)."""
    loss = F.binary_cross_entropy_with_logits(student_logits.float() / temperature, teacher_probabilities,
                                              reduction="none").mean(-1)
    return temperature ** 2 * loss.sum()


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the (real) tokens of 1 - cos(student, teacher) ([B, L, H] states, ``mask`` [B, L])."""
    loss = 1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)
    if mask is not None:
        loss = loss * mask.to(loss.dtype)
    return loss.sum()


def token_weights(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Per-example weights of the tokens ([B, L]): 1 / (real tokens) on real tokens, 0 on padding."""
    if mask is None:
        return torch.full(like.shape[:2], 1.0 / like.shape[1], device=like.device)
    mask = mask.float()
    return mask / mask.sum(-1, keepdim=True).clamp(min=1)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over examples of the MSE between hidden states [B, L, H], averaged over each example's
    real tokens and the hidden units (TinyBERT; a projection makes the widths equal first)."""
    per_token = ((student.float() - teacher.float()) ** 2).mean(-1)
    return (per_token * token_weights(mask, student)).sum()


def attention_score_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor,
                        visible: torch.Tensor | None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's attention loss: the MSE between the *unnormalised* attention scores [B, H, L, L]
    of student and teacher, averaged over heads and keys, scores of hidden (masked) keys set to 0
    in both (as TinyBERT zeroes the -10000 entries), then over each example's real query tokens."""
    if student_scores.shape[1] != teacher_scores.shape[1]:
        raise UserError(f"TinyBERT's attention loss compares heads one to one, but the student has "
                        f"{student_scores.shape[1]} heads and the teacher {teacher_scores.shape[1]}; give the "
                        "student as many heads, or use --method minilm (relation heads)")
    difference = (student_scores.float() - teacher_scores.float()) ** 2
    if visible is not None:
        difference = difference * visible.to(difference.dtype)
    per_query = difference.mean(-1).mean(1)  # [B, L]
    return (per_query * token_weights(mask, per_query)).sum()


def patient_loss(student_cls: list[torch.Tensor], teacher_cls: list[torch.Tensor]) -> torch.Tensor:
    """BERT-PKD: sum over examples and layer pairs of || h_s / ||h_s|| - h_t / ||h_t|| ||^2 for the
    [CLS] states [B, H] of the mapped intermediate layers."""
    total = student_cls[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student_cls, teacher_cls):
        total = total + ((F.normalize(s.float(), dim=-1) - F.normalize(t.float(), dim=-1)) ** 2).sum()
    return total


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, W] (or per-head [B, H, L, D]) -> [B, heads, L, W / heads] relation heads."""
    if x.dim() == 4:  # [B, H, L, D]: concatenate the heads first
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
    if x.shape[-1] % heads:
        raise UserError(f"MiniLM relation heads: a width of {x.shape[-1]} does not split into {heads} heads; "
                        "choose --relation-heads dividing both models' widths")
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def relation(a: torch.Tensor, b: torch.Tensor, heads: int, visible: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM's relation matrix softmax(a_r b_r^T / sqrt(d_r)) per relation head r, [B, R, L, L]
    (log-probabilities, float32), over the visible keys. With a = queries, b = keys and R the
    model's own number of heads it is exactly the self-attention distribution; a = b = values gives
    the value relation."""
    a, b = split_heads(a, heads).float(), split_heads(b, heads).float()
    scores = a @ b.transpose(-1, -2) / math.sqrt(a.shape[-1])
    if visible is not None:
        scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    return torch.log_softmax(scores, dim=-1)


def relation_kl(student_log: torch.Tensor, teacher_log: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over examples of KL(teacher relation || student relation), averaged over relation heads
    and the example's real query tokens (rows of [B, R, L, L] log-probabilities)."""
    kl = (teacher_log.exp() * (teacher_log - student_log)).sum(-1).mean(1)  # [B, L]
    return (kl * token_weights(mask, kl)).sum()


def layer_map(student_layers: int, teacher_layers: int, kind: str = "uniform") -> list[int]:
    """The teacher layer (1-based, as hidden_states index it: 0 = embeddings) that student layer
    m = 1..M learns from. ``uniform`` (TinyBERT's g(m) = m * N / M, so the last layers meet),
    ``skip`` (BERT-PKD-Skip: every N/M-th layer) and ``last`` (BERT-PKD-Last: the top M layers)."""
    if kind not in LAYER_MAPS:
        raise UserError(f"unknown layer mapping '{kind}' (choose from {', '.join(LAYER_MAPS)})")
    if not 1 <= student_layers <= teacher_layers:
        raise UserError(f"a {student_layers}-layer student cannot learn layer by layer from a {teacher_layers}-layer "
                        "teacher; the student needs 1 to as many layers as the teacher")
    if kind == "last":
        return [teacher_layers - student_layers + m for m in range(1, student_layers + 1)]
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]
