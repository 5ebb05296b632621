"""A static key/value cache for decoders.

Keys and values of every layer live in two preallocated buffers of shape
[layers, batch, heads, max_len, head_dim] that are written in place, left to right, at a write
position (``length``). Nothing is reallocated while decoding, so the memory is fixed up front;
with ``static=True`` every step also attends over the whole buffer (unwritten slots are masked
out) and the write position is a tensor on the device, so a decoding step has constant shapes and
no Python number that changes from step to step -- what ``torch.compile`` (without recompiling)
and CUDA graphs need. The default attends only over the written slots, which is faster in eager
mode on a CPU.

One forward pass with a cache is ``begin`` (reserve slots, build the attention mask), one
``update`` per layer (store the new keys/values, read all of them back), then ``end``.

Continuous batching (``generation.continuous``) changes the rows of a (non-static) cache between
passes: ``keep_rows`` drops finished rows, ``append_rows`` adds freshly prefilled ones so that
their last token ends at the shared write position (the slots before it are invalid: a joined
row's left padding), and ``compact`` drops slot columns no row uses and resizes the buffers.
"""

from __future__ import annotations

import torch

from ..nn.attention import AttentionMask


class KVCache:
    def __init__(self, num_layers: int, batch: int, num_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", static: bool = False):
        shape = (num_layers, batch, num_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        # valid[b, j]: slot j of row b holds a real token (False for left padding and unwritten slots)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.static = static
        # the write position: slots [0, length) are filled; a device tensor when static
        self._length: int | torch.Tensor = torch.zeros((), dtype=torch.long, device=device) if static else 0
        self._padded = False  # some row has padding: the cheap mask shortcuts no longer apply
        self._slots: torch.Tensor | None = None  # slots of the pass in progress
        self._span = 0  # keys attended to in the pass in progress: slots [0, span)

    @classmethod
    def for_backbone(cls, backbone, batch: int, max_len: int, static: bool = False) -> KVCache:
        config = backbone.config
        weight = backbone.input_embeddings.weight
        return cls(config.num_layers, batch, config.num_heads, max_len, config.hidden_size // config.num_heads,
                   dtype=weight.dtype, device=weight.device, static=static)

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def length(self) -> int:
        """Filled slots (reading it syncs with the device for a static cache: not in a compiled step)."""
        return int(self._length)

    @length.setter
    def length(self, value: int) -> None:
        if self.static:
            self._length.fill_(value)
        else:
            self._length = value

    def buffers(self) -> tuple[torch.Tensor, ...]:
        """The tensors that decoding writes in place (their addresses never change)."""
        return (self.keys, self.values, self.valid) + ((self._length,) if self.static else ())

    @property
    def query_slots(self) -> torch.Tensor:
        """Slots of the tokens of the pass in progress ([length], between ``begin`` and ``end``)."""
        return self._slots

    @property
    def num_keys(self) -> int:
        """Keys that the pass in progress attends over (its mask's last dimension)."""
        return self._span

    def begin(self, length: int, attention_mask: torch.Tensor | None = None) -> AttentionMask:
        """Reserve slots for ``length`` new tokens; return the mask of their queries over the keys.

        ``attention_mask`` (1 = token, 0 = padding) covers the new tokens ([B, length]) or the
        cached plus the new ones ([B, self.length + length]); None means all new tokens are real.
        A query sees the real tokens at or before its own slot, and always itself (so that the
        rows of padding queries are not empty, which would give NaN).
        """
        device = self.valid.device
        if self.static:  # tensor ops only: no host sync, no step-dependent Python number
            self._slots = self._length + torch.arange(length, device=device)
            self._span = self.max_len
            new = (torch.ones(self.batch_size, length, dtype=torch.bool, device=device) if attention_mask is None
                   else attention_mask[:, -length:].to(device=device, dtype=torch.bool))
            self.valid.index_copy_(1, self._slots, new)
        else:
            start, end = self._length, self._length + length
            if end > self.max_len:
                raise ValueError(f"KV cache of {self.max_len} positions is full ({start} used, {length} more asked)")
            self._slots = torch.arange(start, end, device=device)
            self._span = end
            if attention_mask is None:
                self.valid[:, start:end] = True
            else:
                new = attention_mask[:, -length:].to(device=device, dtype=torch.bool)
                self.valid[:, start:end] = new
                self._padded = self._padded or not bool(new.all())
        if not self.static and not self._padded:
            # Unpadded shortcuts: SDPA's own causal kernel for a first pass, no mask for one new token.
            if start == 0:
                return AttentionMask(is_causal=True)
            if length == 1:
                return AttentionMask()
        keys = torch.arange(self._span, device=device)
        visible = (keys[None, :] <= self._slots[:, None])[None] & self.valid[:, None, : self._span]
        visible |= (keys[None, :] == self._slots[:, None])[None]
        return AttentionMask(mask=visible[:, None])  # [B, 1, length, span]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this pass's keys/values ([B, H, length, D]) of ``layer``; return all keys/values to attend to."""
        self.keys[layer].index_copy_(2, self._slots, key)
        self.values[layer].index_copy_(2, self._slots, value)
        return self.keys[layer, :, :, : self._span], self.values[layer, :, :, : self._span]

    def end(self) -> None:
        self._length += len(self._slots)  # a static cache's tensor is updated in place, on the device
        self._slots = None

    def reset(self) -> None:
        """Empty the cache for new prompts, keeping its buffers (and so their addresses)."""
        self.valid.zero_()
        self.length = 0
        self._padded = False

    def reorder(self, index: torch.Tensor) -> None:
        """Keep row ``index[i]`` as row i (beam search continues the chosen beams)."""
        index, used = index.to(self.keys.device), self.length
        for buffer in (self.keys, self.values):
            buffer[:, :, :, :used] = buffer[:, :, :, :used].index_select(1, index)
        self.valid[:, :used] = self.valid[:, :used].index_select(0, index)

    # ---- continuous batching: rows come and go between passes ----------------------------------------
    def _resized(self, rows: int, capacity: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        layers, _, heads, _, dim = self.keys.shape
        shape = (layers, rows, heads, capacity, dim)
        return (self.keys.new_zeros(shape), self.values.new_zeros(shape),
                self.valid.new_zeros(rows, capacity))

    def keep_rows(self, index: torch.Tensor) -> None:
        """Keep only rows ``index``, in that order (the batch may shrink)."""
        if self.static:
            raise ValueError("a static cache keeps its rows (its buffers' addresses are fixed)")
        index = index.to(self.keys.device)
        self.keys, self.values = self.keys.index_select(1, index), self.values.index_select(1, index)
        self.valid = self.valid.index_select(0, index)

    def first_used_slot(self) -> int:
        """The first slot column some row holds a token in (``length`` when no row holds any)."""
        used = self.valid[:, : self.length].any(dim=0).nonzero()
        return int(used[0, 0]) if len(used) else self.length

    def compact(self, capacity: int | None = None) -> int:
        """Drop the slot columns before the first one in use (every row moves left by as many;
        the order of a row's slots, and so its attention, is unchanged) and resize the buffers to
        ``capacity`` slots (default: as now). Returns the columns dropped."""
        if self.static:
            raise ValueError("a static cache cannot be compacted (its buffers' addresses are fixed)")
        drop, capacity = self.first_used_slot(), capacity or self.max_len
        used = self.length - drop
        if used > capacity:
            raise ValueError(f"{used} slots in use do not fit in a cache of {capacity}")
        keys, values, valid = self._resized(self.batch_size, capacity)
        keys[:, :, :, :used] = self.keys[:, :, :, drop : self.length]
        values[:, :, :, :used] = self.values[:, :, :, drop : self.length]
        valid[:, :used] = self.valid[:, drop : self.length]
        self.keys, self.values, self.valid, self.max_len, self.length = keys, values, valid, capacity, used
        return drop

    def append_rows(self, other: KVCache, capacity: int | None = None) -> None:
        """Add the rows of ``other`` (e.g. prompts prefilled alone) after this cache's rows, right-
        aligned with them: the write position becomes the longer of the two, and the shorter side
        moves right (the slots left of a row are invalid, so its tokens and their order do not
        change). ``capacity``: the slots of the new buffers (default: the larger of the two)."""
        if self.static or other.static:
            raise ValueError("rows are appended to dynamic caches only")
        width = max(self.length, other.length)
        capacity = capacity or max(self.max_len, other.max_len)
        if width > capacity:
            raise ValueError(f"{width} slots do not fit in a cache of {capacity}")
        keys, values, valid = self._resized(self.batch_size + other.batch_size, capacity)
        for rows, cache in ((slice(0, self.batch_size), self), (slice(self.batch_size, None), other)):
            start, used = width - cache.length, cache.length
            keys[:, rows, :, start:width] = cache.keys[:, :, :, :used]
            values[:, rows, :, start:width] = cache.values[:, :, :, :used]
            valid[rows, start:width] = cache.valid[:, :used]
        self.keys, self.values, self.valid, self.max_len, self.length = keys, values, valid, capacity, width
        self._padded = True  # rows of different starts: the masks must say which slots are real
