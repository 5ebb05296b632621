"""A linear-chain conditional random field: the forward algorithm for the log-partition
function and Viterbi decoding.

Scores of a tag path y over emissions e (one row per labelled position):
``start[y_0] + sum_t e[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_last]``.
Sequences are left-aligned with a mask (true for real positions); a sequence may be empty.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B]: the score of ``tags`` ([B, W]) under ``emissions`` ([B, W, T])."""
        mask = mask.to(emissions.dtype)
        tags = tags.clamp(min=0)  # padded positions hold -100; masked out below
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = (emitted * mask).sum(1)
        score = score + self.transitions[tags[:, :-1], tags[:, 1:]].mul(mask[:, 1:]).sum(1)
        lengths = mask.sum(1).long()
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        ends = self.start[tags[:, 0]] + self.end[last]
        return score + torch.where(lengths > 0, ends, torch.zeros_like(ends))

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B]: log of the sum of exp(score) over all tag paths (forward algorithm)."""
        alpha = self.start + emissions[:, 0]  # [B, T]
        for t in range(1, emissions.shape[1]):
            # alpha'[j] = logsumexp_i(alpha[i] + transitions[i, j]) + e[t, j]
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        total = torch.logsumexp(alpha + self.end, dim=1)
        return torch.where(mask[:, 0], total, torch.zeros_like(total))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B]: negative log-likelihood of ``tags``."""
        return self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag path of each sequence (Viterbi)."""
        score = self.start + emissions[:, 0]
        pointers = []
        for t in range(1, emissions.shape[1]):
            candidates = score.unsqueeze(2) + self.transitions  # [B, from, to]
            best, previous = candidates.max(dim=1)
            pointers.append(previous)
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
        score = score + self.end
        lengths = mask.sum(1).tolist()
        paths = []
        for b, length in enumerate(lengths):
            if length == 0:
                paths.append([])
                continue
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(length - 1, 0, -1):
                tag = int(pointers[t - 1][b, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths


def pack(values: torch.Tensor, mask: torch.Tensor, fill: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the masked positions of each row to the left: ([B, W, ...], [B, W] mask)."""
    counts = mask.sum(1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    rows, cols = mask.nonzero(as_tuple=True)
    slots = (mask.long().cumsum(1) - 1)[rows, cols]
    out = values.new_full((values.shape[0], width, *values.shape[2:]), fill)
    out[rows, slots] = values[rows, cols]
    packed_mask = torch.arange(width, device=mask.device) < counts.unsqueeze(1)
    return out, packed_mask
