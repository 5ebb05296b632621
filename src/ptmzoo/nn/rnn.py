"""Recurrent building blocks of the RNN-era families (AWD-LSTM/ULMFiT, ELMo, CoVe).

* ``LSTMLayer``: one ``nn.LSTM`` layer (one direction, optionally with a projection as in ELMo)
  with DropConnect on its hidden-to-hidden weights (Wan et al., 2013; AWD-LSTM's *weight drop*):
  one mask over ``weight_hh`` per forward call, shared by every time step and sequence, none in
  eval mode. It reads padded batches: with a padding mask the real tokens of each row are packed,
  so that the final state is the one after each row's last real token (left padding of prompts
  included); ``reverse`` runs the row's real tokens right to left (ELMo's backward LM).
* ``LockedDropout``: variational dropout (Gal & Ghahramani, 2016): one mask per sequence and
  feature, the same at every time step.
* ``embedding_dropout``: drops whole words -- rows of the embedding matrix -- for a batch.
* ``RecurrentState``: the (h, c) of every layer, carried from one call to the next: across BPTT
  segments in training, and as the "cache" of generation (``generation.decoding.CachedLM``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = tuple[torch.Tensor, torch.Tensor]  # h [B, out], c [B, hidden]

# nn.LSTM with a projection (ELMo) runs PyTorch's own kernel on CPU instead of oneDNN: expected
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


class LockedDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, D]: one mask [B, 1, D] for all L steps."""
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


def embedding_dropout(embedding: nn.Embedding, ids: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Look up ``ids`` with whole rows of the matrix dropped with probability ``p`` (every occurrence
    of a dropped word is zero in this batch), the others scaled by 1 / (1 - p)."""
    weight = embedding.weight
    if training and p > 0:
        weight = weight * weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)
    return F.embedding(ids, weight, embedding.padding_idx)


def real_first(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, lengths): ``x.gather(1, order)`` moves each row's real tokens (mask 1) to its front,
    in their order; the padding follows."""
    order = torch.sort((mask == 0).to(torch.int8), dim=1, stable=True).indices
    return order, mask.sum(1)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index[..., None].expand(*index.shape, x.shape[-1]))


def scatter_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The inverse of ``gather_time`` for a permutation ``index``."""
    return torch.zeros_like(x).scatter_(1, index[..., None].expand(*index.shape, x.shape[-1]), x)


def reverse_within(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Index [B, width] that reverses the first ``lengths[b]`` steps of row b and keeps the rest."""
    steps = torch.arange(width, device=lengths.device)[None]
    return torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)


class LSTMLayer(nn.Module):
    """One LSTM layer, one direction: ``nn.LSTM`` weights (``lstm.weight_ih_l0``, ...) with weight drop."""

    def __init__(self, input_size: int, hidden_size: int, proj_size: int = 0, weight_dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, proj_size=proj_size)
        self.weight_dropout = weight_dropout
        self.output_size = proj_size or hidden_size

    def _weights(self) -> dict[str, torch.Tensor]:
        if not self.training or self.weight_dropout == 0:
            return {}
        return {"weight_hh_l0": F.dropout(self.lstm.weight_hh_l0, self.weight_dropout, training=True)}

    def _run(self, x, hx):
        weights = self._weights()
        if not weights:
            return self.lstm(x, hx)
        return functional_call(self.lstm, weights, (x, hx))

    def forward(self, x: torch.Tensor, state: State | None = None, mask: torch.Tensor | None = None,
                reverse: bool = False, final_state: bool = True) -> tuple[torch.Tensor, State | None]:
        """``x`` [B, L, in] -> outputs [B, L, out] and the final state. ``mask`` [B, L] (1 = token):
        padding is skipped (zero outputs there) and the state is the one after each row's last real
        token. ``reverse``: each row's real tokens are read from last to first. Without
        ``final_state`` (None returned) a padded batch runs without packing: the real tokens come first,
        so their outputs do not depend on the padding that follows them."""
        hx = None if state is None else (state[0][None].contiguous(), state[1][None].contiguous())
        padded = mask is not None and not bool(mask.all())
        if not padded and not reverse:
            out, (h, c) = self._run(x, hx)
            return out, (h[0], c[0])
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        order, lengths = real_first(mask)
        if reverse:
            order = order.gather(1, reverse_within(lengths, x.shape[1]))
        compact = gather_time(x, order)
        if padded and not final_state:
            out, _ = self._run(compact, hx)
            return scatter_time(out, order) * mask[..., None].to(out.dtype), None
        if padded:
            packed = pack_padded_sequence(compact, lengths.clamp(min=1).cpu(), batch_first=True,
                                          enforce_sorted=False)
            out, (h, c) = self._run(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, (h, c) = self._run(compact, hx)
        out = scatter_time(out, order) * mask[..., None].to(out.dtype)
        return out, (h[0], c[0])


class RecurrentState:
    """The state of a stack of LSTM layers for a batch of rows: one (h, c) per layer, or None
    (zeros) before the first call. A backbone reads it at the start of a call and writes the final
    state back (``forward(..., cache=state)``)."""

    def __init__(self, num_layers: int):
        self.layers: list[State | None] = [None] * num_layers

    def __len__(self) -> int:
        return len(self.layers)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep row ``index[i]`` as row i (beam search continues the chosen beams)."""
        self.layers = [None if s is None else (s[0].index_select(0, index.to(s[0].device)),
                                                s[1].index_select(0, index.to(s[1].device))) for s in self.layers]

    def detach(self) -> None:
        """Cut the gradient to earlier calls (truncated backpropagation through time)."""
        self.layers = [None if s is None else (s[0].detach(), s[1].detach()) for s in self.layers]

    def reset(self) -> None:
        self.layers = [None] * len(self.layers)


class BidirectionalLSTM(nn.Module):
    """One layer of LSTMs in both directions over padded rows; outputs [forward; backward] (zero at padding)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.forward_lstm = LSTMLayer(input_size, hidden_size)
        self.backward_lstm = LSTMLayer(input_size, hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        forward, _ = self.forward_lstm(x, mask=mask, final_state=False)
        backward, _ = self.backward_lstm(x, mask=mask, reverse=True, final_state=False)
        return torch.cat([forward, backward], dim=-1)
