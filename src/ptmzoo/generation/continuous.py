"""Continuous batching: prompts join and leave one running batch between decoding steps.

``ContinuousBatch`` decodes any number of requests (each: prompts and ``GenerationOptions``) as
the rows of one ``CachedLM`` over one ``KVCache``. ``add`` prefills each new prompt on its own
(so its keys, values and first logits are those of a run alone) and appends its row to the shared
cache, right-aligned so that it ends at the shared write position; the slots left of it are
invalid, which is all the left padding a joined row needs. Positions count each row's real
tokens, as ``CachedLM`` does for left-padded rows, so a row is positioned as if alone. ``step``
chooses every row's next token with that row's own options (greedy, or sampling with its
temperature / top-k / top-p / repetition penalty and its own ``torch.Generator`` when it has a
seed), retires the rows that ended (EOS, a stop string, ``max_new_tokens``) at once, and runs
the others one token forward. ``remove`` drops a request whose client is gone.

Greedy rows give the tokens of generating the prompt alone (the same computation, in a batch:
equal up to float rounding, which only matters for near-ties). A sampled row with a seed draws
from its own generator seeded with it, the draws of a run alone with that seed, so the same seed
gives the same text, batched or not.

Room in the cache: ``add`` sizes the buffers for the longest future (write position + most new
tokens any row may still take), at most the model's context. Should the write position reach
the end (rows that joined late behind rows that started early), the cache is compacted: slot
columns before the first one a live row uses are dropped and every row moves left (the order of
a row's slots, and so its attention, is unchanged). Each row fits in the context on its own
(checked at ``add``), so after a compaction there is always room for the next token.

Decoders with a KV cache only (``supports_continuous``): beam search, a constraint or a
compiled / static cache, encoder-decoders, models with a memory (Transformer-XL) and recurrent
ones (LSTMs) are generated whole-batch by ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..nn.layout import use_decoding_layout
from .decoding import (
    CachedLM,
    Generation,
    GenerationOptions,
    _Continuations,
    _prompt_ids,
    _seen_tokens,
    check_context,
    choose_tokens,
    eos_token,
)


def supports_continuous(model) -> bool:
    """Whether ``model`` (a ``PtmModel``) can decode in a ``ContinuousBatch``: a decoder with a KV
    cache and a causal LM head."""
    backbone = model.backbone
    return (backbone.supports_cache and backbone.causal and not backbone.recurrent and not backbone.is_encoder_decoder
            and "mems" not in backbone.inputs and any(head.kind == "clm" for head in model.heads.values()))


def batches_continuously(options: GenerationOptions) -> bool:
    """Whether rows with ``options`` can share a ``ContinuousBatch`` (not beam search, a constraint
    or a compiled / static cache)."""
    return options.num_beams == 1 and options.constraint is None and not options.static_cache and not options.compile


@dataclass
class _Row:
    key: Hashable  # the request it belongs to
    options: GenerationOptions
    text: _Continuations  # of this one prompt
    generator: torch.Generator | None
    seen: torch.Tensor | None  # bool [1, V]: tokens so far (repetition penalty only)
    on_text: Callable[[str], None] | None
    ended: bool = False

    @property
    def new_tokens(self) -> int:
        return len(self.text.ids[0])

    @property
    def remaining(self) -> int:
        return self.options.max_new_tokens - self.new_tokens

    @property
    def simple(self) -> bool:
        """Greedy without a penalty: the batch's argmax is its token."""
        return not self.options.sampling and self.seen is None

    def add(self, token: int) -> bool:
        """Append a token (stream its text); True when the row has ended."""
        self.ended = self.text.add(0, token) or self.remaining == 0
        if self.seen is not None:
            self.seen[0, token] = True
        if self.ended:
            self.text.finish()
        if self.on_text is not None:
            for _, piece in self.text.new_pieces():
                self.on_text(piece)
        return self.ended


class ContinuousBatch:
    """The running batch of a decoder (``PtmModel`` with a causal LM head) and its ``tokenizer``
    (None: token id prompts, no stop strings). ``rows``: how many rows it mostly decodes (the
    server's ``--max-batch``), for the weights' layout on a CPU (``use_decoding_layout``, set at
    each ``add``: a fixed choice, not one that flips as rows come and go). Not thread-safe: one
    thread calls it."""

    def __init__(self, model, tokenizer=None, rows: int = 1):
        if not supports_continuous(model):
            raise UserError(f"a {model.family} model does not decode with a KV cache and a causal LM head: "
                            "it cannot batch continuously")
        self.model, self.tokenizer, self.layout_rows = model, tokenizer, rows
        self.device = model.backbone.input_embeddings.weight.device
        self.context = model.backbone.max_length
        self.rows: list[_Row] = []
        self.requests: dict[Hashable, list[_Row]] = {}
        self.lm = CachedLM(model, 0, 1)
        self.logits: torch.Tensor | None = None  # [rows, V]: each row's next-token logits
        self.steps = self.compactions = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cache(self):
        return self.lm.cache

    @torch.inference_mode()
    def add(self, key: Hashable, prompts, options: GenerationOptions,
            on_text: Callable[[int, str], None] | None = None) -> None:
        """Join the batch with the prompts of request ``key`` (a text, texts or token id lists);
        ``step`` answers it once all of them have ended. ``on_text(index, piece)``: new text of
        prompt ``index`` as it comes. A ``UserError`` (prompt too long, ...) adds nothing."""
        if key in self.requests:
            raise ValueError(f"request {key!r} is already in the batch")
        if not batches_continuously(options):
            raise UserError("beam search, constraints and compiled or static caches are not batched continuously")
        prompt_ids = _prompt_ids(prompts, self.tokenizer)
        if options.stop and self.tokenizer is None:
            raise UserError("stop strings need a tokenizer")
        for ids in prompt_ids:
            check_context(self.model, len(ids), options)
        self.model.eval()
        use_decoding_layout(self.model, self.layout_rows)
        eos_id, rows, logits, positions = eos_token(options, self.tokenizer), [], [], []
        width = max([self.cache.length, *map(len, prompt_ids)])
        capacity = self._within_context(width + max([options.max_new_tokens, *(row.remaining for row in self.rows)]))
        for index, ids in enumerate(prompt_ids):
            alone = CachedLM(self.model, 1, len(ids))
            input_ids = torch.tensor([ids], device=self.device)
            mask = torch.ones_like(input_ids)
            logits.append(alone.prefill(input_ids, mask))
            positions.append(alone.next_position)
            self.cache.append_rows(alone.cache, max(capacity, self.cache.length, alone.cache.length))
            generator = (torch.Generator(device=self.device).manual_seed(options.seed)
                         if options.seed is not None and options.sampling else None)
            seen = _seen_tokens(input_ids, mask, logits[-1].shape[-1]) if options.repetition_penalty != 1.0 else None
            text = _Continuations([ids], self.tokenizer, eos_id, options.stop, live=on_text is not None)
            rows.append(_Row(key, options, text, generator, seen,
                             (lambda piece, i=index: on_text(i, piece)) if on_text is not None else None))
        self.rows += rows
        self.requests[key] = rows
        self.logits = torch.cat([*([self.logits] if self.logits is not None else []), *logits])
        self.lm.next_position = torch.cat([*([self.lm.next_position] if len(self.rows) > len(rows) else []),
                                           *positions])

    def remove(self, key: Hashable) -> None:
        """Drop request ``key`` (its client is gone); its rows free at once."""
        if self.requests.pop(key, None) is not None:
            self._keep([i for i, row in enumerate(self.rows) if row.key != key])

    def _keep(self, index: list[int]) -> None:
        if not index:  # an empty batch starts its next rows from slot 0
            self.rows, self.logits, self.lm = [], None, CachedLM(self.model, 0, 1)
            return
        if len(index) == len(self.rows):
            return
        rows = torch.tensor(index, dtype=torch.long, device=self.device)
        self.cache.keep_rows(rows)
        self.lm.next_position = self.lm.next_position[rows]
        self.logits = self.logits[rows]
        self.rows = [self.rows[i] for i in index]

    def _choose(self) -> torch.Tensor:
        tokens = self.logits.argmax(dim=-1)
        for i, row in enumerate(self.rows):
            if not row.simple:
                tokens[i] = choose_tokens(self.logits[i : i + 1], row.options, row.seen, row.generator)[0]
        return tokens

    def _make_room(self) -> None:
        """Room for one more slot: drop the columns no row uses (and resize within the context)."""
        if self.cache.length < self.cache.max_len:
            return
        used = self.cache.length - self.cache.first_used_slot()
        self.cache.compact(self._within_context(used + max(row.remaining for row in self.rows)))
        self.compactions += 1

    def _within_context(self, slots: int) -> int:
        """Cache slots to allocate for ``slots`` wanted: at most the model's context."""
        return min(slots, self.context) if self.context is not None else slots

    @torch.inference_mode()
    def step(self) -> dict[Hashable, Generation]:
        """One decoding step of every row; the requests whose rows have all ended, with their
        ``Generation`` (the one ``generate`` returns for those prompts alone)."""
        if not self.rows:
            return {}
        tokens = self._choose()
        for row, token in zip(self.rows, tokens.tolist()):
            row.add(token)
        self.steps += 1
        keep = [i for i, row in enumerate(self.rows) if not row.ended]
        finished = {}
        for row in self.rows:
            if row.ended and row.key in self.requests and all(r.ended for r in self.requests[row.key]):
                finished[row.key] = self._generation(self.requests.pop(row.key))
        survivors = tokens[keep]
        self._keep(keep)
        if self.rows:
            self._make_room()
            self.logits = self.lm.step(survivors)
        return finished

    def _generation(self, rows: list[_Row]) -> Generation:
        texts = [row.text.texts[0] for row in rows] if self.tokenizer is not None else None
        return Generation([row.text.prompt_ids[0] for row in rows], [row.text.ids[0] for row in rows], texts,
                          [row.text.reasons[0] for row in rows])


__all__ = ["ContinuousBatch", "batches_continuously", "supports_continuous"]
