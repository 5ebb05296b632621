"""Generation with encoder-decoder models (T5, BART): greedy, sampling and beam search.

The source is encoded once. Each layer's cross-attention keys/values are computed from the
encoder output at the first decoder pass and reused at every step; the decoder's self-attention
keys/values go into the static ``KVCache``. The search loops are those of decoder-only models
(``decoding.sampling_steps`` and ``decoding.beam_search``): ``Seq2SeqLM`` is a stepper like
``CachedLM`` whose ``prefill`` encodes the source and decodes the start token.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..models.base import BackboneOutput
from ..nn.attention import AttentionMask, padding_mask
from .cache import KVCache
from .decoding import (
    Generation,
    GenerationOptions,
    _Continuations,
    decode,
    decoding_cache,
)


class Seq2SeqCache(KVCache):
    """The decoder's self-attention cache plus every layer's cross-attention keys/values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cross_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_backbone(cls, backbone, batch: int, max_len: int, static: bool = False) -> Seq2SeqCache:
        heads, head_dim = backbone.attention_shape
        weight = backbone.input_embeddings.weight
        return cls(backbone.num_decoder_layers, batch, heads, max_len, head_dim, dtype=weight.dtype,
                   device=weight.device, static=static)

    def cross(self, layer: int, attention, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of ``attention`` over the encoder output, computed at the first call only."""
        if layer not in self.cross_kv:
            self.cross_kv[layer] = attention.project_kv(memory)
        return self.cross_kv[layer]

    def reorder(self, index: torch.Tensor) -> None:
        super().reorder(index)
        index = index.to(self.keys.device)
        self.cross_kv = {layer: (k.index_select(0, index), v.index_select(0, index))
                         for layer, (k, v) in self.cross_kv.items()}


def seq2seq_head(model):
    heads = [head for head in model.heads.values() if head.kind == "seq2seq_lm"]
    if not model.backbone.is_encoder_decoder or not heads:
        raise UserError(f"this {model.family} model cannot generate with an encoder-decoder: it needs a "
                        f"seq2seq_lm head (it has: {', '.join(model.heads) or 'none'})")
    return heads[0]


class Seq2SeqLM:
    """An encoder-decoder run incrementally: the source once, then a target token per step."""

    def __init__(self, model, batch: int, max_len: int, static: bool = False):
        self.backbone = model.backbone
        self.head = seq2seq_head(model)
        self.cache = (decoding_cache(self.backbone, batch, max_len, static) if self.backbone.recurrent
                      else Seq2SeqCache.for_backbone(self.backbone, batch, max_len, static))
        self.memory: torch.Tensor | None = None
        self.memory_mask = AttentionMask()

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.memory = self.backbone.encode(input_ids, attention_mask)
        self.memory_mask = padding_mask(attention_mask)
        start = torch.full((input_ids.shape[0], 1), self.backbone.decoder_start_id, device=input_ids.device)
        return self._logits(start)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(tokens[:, None])

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)
        self.memory = self.memory.index_select(0, index)
        if self.memory_mask.mask is not None:
            self.memory_mask = AttentionMask(mask=self.memory_mask.mask.index_select(0, index))

    def _logits(self, decoder_ids: torch.Tensor) -> torch.Tensor:
        states = self.backbone.decode(decoder_ids, self.memory, self.memory_mask, cache=self.cache)
        return self.head.logits(BackboneOutput(states[:, -1:]), {})[:, -1].float()


def _sources(inputs, tokenizer) -> list[list[int]]:
    """Inputs as token id lists: a text, texts (encoded with the tokenizer's special tokens), ids."""
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.tolist()
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not inputs:
        raise UserError("no inputs given")
    if any(isinstance(x, str) for x in inputs):
        if tokenizer is None:
            raise UserError("text inputs need a tokenizer (give token ids, or a model loaded with ptmzoo.load)")
        return tokenizer.encode_batch(list(inputs))
    if any(len(x) == 0 for x in inputs):
        raise UserError("empty token id input; give at least one token")
    return [list(map(int, x)) for x in inputs]


@torch.inference_mode()
def generate_seq2seq(model, inputs, tokenizer=None, *, generator: torch.Generator | None = None,
                     **options) -> Generation:
    """Outputs of an encoder-decoder for ``inputs`` (a text, texts or token id lists, one batch).

    ``options``: the fields of ``GenerationOptions`` (max_new_tokens, num_beams, temperature, top_k,
    top_p, repetition_penalty, length_penalty, early_stopping, stop, eos_token_id, ignore_eos,
    seed, static_cache). Decoding starts from the model's decoder start token; the EOS is the
    model's unless given. ``prompt_ids`` of the result are the encoded sources.
    """
    if hasattr(model, "tokenizer") and hasattr(model, "model"):  # what ptmzoo.load returns
        model, tokenizer = model.model, tokenizer or model.tokenizer
    seq2seq_head(model)
    opts = GenerationOptions(**options)
    sources = _sources(inputs, tokenizer)
    config = model.config
    eos_id = None if opts.ignore_eos else (opts.eos_token_id if opts.eos_token_id is not None else config.eos_token_id)
    device = model.backbone.input_embeddings.weight.device
    width = max(map(len, sources))
    input_ids = torch.full((len(sources), width), config.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(sources):  # right padding: the encoder is bidirectional
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    if generator is None and opts.seed is not None:
        generator = torch.Generator(device=device).manual_seed(opts.seed)
    rows = _Continuations([[] for _ in sources], tokenizer, eos_id, opts.stop, live=False)
    lm = Seq2SeqLM(model, len(sources) * opts.num_beams, opts.max_new_tokens + 1, opts.static_cache)
    for _ in decode(model, lm, input_ids, attention_mask, opts, eos_id, generator, rows):
        pass  # nothing streams: ``rows`` is not live
    return Generation(sources, rows.ids, rows.texts if tokenizer is not None else None, rows.reasons)
