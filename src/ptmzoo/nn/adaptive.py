"""Adaptive input embeddings and the adaptive softmax, for large vocabularies (Transformer-XL).

The vocabulary, sorted by frequency, is cut at ``cutoffs`` into clusters: the frequent head and
rarer tails. Cluster i has embeddings of size ``embedding_size // div_val**i`` (Baevski & Auli,
2019), each projected to the hidden size, so rare tokens cost fewer parameters; with ``div_val``
1 every cluster has the full size and needs no projection when it equals the hidden size.

The adaptive softmax (Grave et al., 2017) scores the head tokens plus one entry per tail
cluster: p(w) = p_head(w) for a head token, and p_head(cluster i) * p_i(w) for a token of tail i,
each tail being a softmax over its own tokens. As in Transformer-XL, its weights and projections
are those of the adaptive embedding (tied); every cluster has its own output bias and the head
has a weight and bias per tail cluster. Without cutoffs it is a plain tied softmax with a bias.
The losses go through ``linear_cross_entropy`` (no logits of the whole vocabulary are formed).
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from .losses import linear_cross_entropy


def cluster_bounds(vocab_size: int, cutoffs: list[int] | tuple[int, ...]) -> list[int]:
    """[0, *cutoffs, vocab_size]; raises ValueError unless the cutoffs rise strictly inside the vocabulary."""
    bounds = [0, *cutoffs, vocab_size]
    if any(b <= a for a, b in pairwise(bounds)):
        raise ValueError(f"cutoffs {list(cutoffs)} must rise strictly between 0 and the vocabulary size {vocab_size}")
    return bounds


class AdaptiveEmbedding(nn.Module):
    """Token ids -> [..., hidden] embeddings, cluster by cluster, times sqrt(hidden) with ``scale``."""

    def __init__(self, vocab_size: int, hidden_size: int, embedding_size: int, cutoffs=(), div_val: int = 1,
                 scale: bool = True):
        super().__init__()
        self.bounds = cluster_bounds(vocab_size, cutoffs)
        self.hidden_size = hidden_size
        self.scale = math.sqrt(hidden_size) if scale else 1.0
        sizes = [max(1, embedding_size // div_val**i) for i in range(len(self.bounds) - 1)]
        self.layers = nn.ModuleList(nn.Embedding(hi - lo, size) for lo, hi, size
                                    in zip(self.bounds, self.bounds[1:], sizes))
        # cluster i's projection to the hidden size (an identity when it has the hidden size already)
        self.projected = [size != hidden_size for size in sizes]
        self.projections = nn.ModuleList(nn.Linear(size, hidden_size, bias=False) if projected else nn.Identity()
                                         for size, projected in zip(sizes, self.projected))

    def projection(self, i: int) -> torch.Tensor | None:
        """Cluster i's projection weight [hidden, size], or None."""
        return self.projections[i].weight if self.projected[i] else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if len(self.layers) == 1:
            return self.projections[0](self.layers[0](input_ids)) * self.scale
        flat = input_ids.reshape(-1)
        out = self.layers[0].weight.new_zeros(flat.shape[0], self.hidden_size)
        for i, (lo, hi) in enumerate(pairwise(self.bounds)):
            rows = ((flat >= lo) & (flat < hi)).nonzero(as_tuple=True)[0]
            if len(rows):
                out = out.index_copy(0, rows, self.projections[i](self.layers[i](flat[rows] - lo)).to(out.dtype))
        return out.view(*input_ids.shape, self.hidden_size) * self.scale


class AdaptiveSoftmax(nn.Module):
    """The output distribution of the tokens, tied to an ``AdaptiveEmbedding``."""

    def __init__(self, embedding: AdaptiveEmbedding):
        super().__init__()
        self.bounds = embedding.bounds
        tails = len(self.bounds) - 2
        self.weights = nn.ParameterList(layer.weight for layer in embedding.layers)  # tied: the same tensors
        self.projected = list(embedding.projected)
        self.projections = nn.ParameterList(embedding.projection(i) for i in range(len(self.weights))
                                            if self.projected[i])
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(hi - lo)) for lo, hi in pairwise(self.bounds))
        head_size = self.weights[0].shape[1]
        self.cluster_weight = nn.Parameter(torch.zeros(tails, head_size)) if tails else None
        self.cluster_bias = nn.Parameter(torch.zeros(tails)) if tails else None

    def _project(self, i: int, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden states in cluster i's embedding space (the transpose of its input projection)."""
        if not self.projected[i]:
            return hidden
        return hidden @ self.projections[sum(self.projected[:i])].to(hidden.dtype)

    def _head(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cluster_weight is None:
            return self.weights[0], self.biases[0]
        return (torch.cat([self.weights[0], self.cluster_weight]), torch.cat([self.biases[0], self.cluster_bias]))

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """log p(w) of every token, [..., vocab] (for decoding and evaluation, not training)."""
        weight, bias = self._head()
        head = F.log_softmax(F.linear(self._project(0, hidden), weight.to(hidden.dtype), bias.to(hidden.dtype)).float(),
                             dim=-1)
        parts = [head[..., : self.bounds[1]]]
        for i in range(1, len(self.weights)):
            tail = F.linear(self._project(i, hidden), self.weights[i].to(hidden.dtype), self.biases[i].to(hidden.dtype))
            parts.append(head[..., self.bounds[1] + i - 1, None] + F.log_softmax(tail.float(), dim=-1))
        return torch.cat(parts, dim=-1)

    def nll_sum(self, hidden: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Summed -log p(target) over the rows of ``hidden`` [N, H] whose target is not ``ignore_index``:
        the head's cross-entropy (a tail token's head target is its cluster) plus each tail's."""
        hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        weight, bias = self._head()
        head_targets = targets.clone()
        for i in range(1, len(self.weights)):
            lo, hi = self.bounds[i], self.bounds[i + 1]
            head_targets[(targets >= lo) & (targets < hi)] = self.bounds[1] + i - 1
        total = linear_cross_entropy(self._project(0, hidden), weight, bias, head_targets, ignore_index)
        for i in range(1, len(self.weights)):
            lo, hi = self.bounds[i], self.bounds[i + 1]
            rows = ((targets >= lo) & (targets < hi)).nonzero(as_tuple=True)[0]
            if len(rows):
                total = total + linear_cross_entropy(self._project(i, hidden[rows]), self.weights[i], self.biases[i],
                                                     targets[rows] - lo)
        return total
