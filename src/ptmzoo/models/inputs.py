"""What a model accepts as token ids, checked before the first layer sees them.

Without these checks an id past the vocabulary or a negative id ends in an ``IndexError`` deep in
an embedding (on a GPU, a device-side assert that poisons the process), a list fails on
``.dim()``, and a sequence longer than the position table reads past it. Each gives a
``BadInput`` (a ``ValueError``) naming the limit instead.
"""

from __future__ import annotations

import torch

from ..errors import BadInput


def check_length(length: int, max_positions: int) -> None:
    """Also called by position tables themselves (a backbone used without its PtmModel, a cache that
    grows past the table), so that the limit is named rather than an index error raised inside it."""
    if length > max_positions:
        raise BadInput(f"input of {length} tokens is longer than the model's {max_positions} positions "
                       "(max_position_embeddings); truncate it")


def check_token_ids(input_ids, vocab_size: int, max_positions: int | None) -> None:
    """``input_ids``: an integer tensor ``[length]``, ``[batch, length]`` or ``[batch, group, length]``
    of ids in ``[0, vocab_size)``, at most ``max_positions`` long (None: relative positions, no limit)."""
    if not isinstance(input_ids, torch.Tensor):
        raise BadInput(f"input_ids must be a torch.Tensor of token ids, not a {type(input_ids).__name__}; "
                       "wrap the ids, e.g. torch.tensor([ids])")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise BadInput(f"input_ids must hold integer token ids, not {input_ids.dtype}; use dtype=torch.long")
    if input_ids.dim() not in (1, 2, 3) or input_ids.shape[-1] == 0 or input_ids.numel() == 0:
        raise BadInput(f"input_ids of shape {tuple(input_ids.shape)}: expected [length], [batch, length] or "
                       "[batch, group, length] with at least one token")
    if max_positions is not None:
        check_length(input_ids.shape[-1], max_positions)
    if torch.compiler.is_compiling():  # a data-dependent branch would break the compiled graph
        return
    low, high = (int(v) for v in torch.aminmax(input_ids))
    if low < 0:
        raise BadInput(f"input_ids holds the negative id {low}; token ids are in [0, {vocab_size})")
    if high >= vocab_size:
        raise BadInput(f"input_ids holds the id {high}, beyond the model's vocabulary of {vocab_size} "
                       f"(ids 0..{vocab_size - 1}); encode the text with the model's own tokenizer")
