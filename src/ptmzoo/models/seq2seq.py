"""What the encoder-decoder families (T5, BART) share: the backbone interface, the model with its
language-model head, and how a decoder pass sets up its self-attention with or without a cache.

An encoder-decoder backbone has ``encode`` (source ids -> encoder states) and ``decode`` (target
ids + encoder states -> decoder states); ``forward`` is both. ``Seq2SeqModel`` is the
``PtmModel`` of these families: the Trainer passes it the source as ``input_ids`` and the whole
batch as ``targets``, from which it reads ``decoder_input_ids`` and ``decoder_attention_mask``
(the collators of the seq2seq objectives build them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nn.attention import AttentionMask, causal_mask, padding_mask
from ..nn.losses import linear_cross_entropy
from .base import Backbone, BackboneOutput, ModelOutput
from .model import Head, PtmModel


@dataclass
class Seq2SeqBackboneOutput(BackboneOutput):
    encoder_last_hidden_state: torch.Tensor | None = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    encoder_last_hidden_state: torch.Tensor | None = None


class EncoderDecoder(Backbone):
    """Base class of encoder-decoder backbones. Subclasses define ``encode`` and ``decode``."""

    is_encoder_decoder = True
    inputs = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
    output_scale = 1.0  # the LM head multiplies decoder states by this (T5 v1.0: d_model ** -0.5)
    final_logits_bias = False  # BART's LM head has a (non-trained) output bias

    @property
    def num_decoder_layers(self) -> int:
        return self.config.num_decoder_layers or self.config.num_layers

    # the config field whose token starts the decoder when decoder_start_token_id is not set
    default_decoder_start: str = "pad_token_id"

    @property
    def decoder_start_id(self) -> int:
        start = self.config.decoder_start_token_id
        return getattr(self.config, self.default_decoder_start) if start is None else start

    @property
    def attention_shape(self) -> tuple[int, int]:
        """(heads, head size) of the decoder's self-attention: the shape of its KV cache."""
        return self.config.num_heads, self.config.hidden_size // self.config.num_heads

    def init_lm_head(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, std=self.config.initializer_range)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, memory_mask: AttentionMask,
               attention_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """Decoder states; ``memory_mask`` is the encoder's padding mask (``nn.padding_mask``).
        ``cache``: a ``generation.seq2seq.Seq2SeqCache`` -- the ids continue the cached ones."""
        raise NotImplementedError

    @staticmethod
    def self_attention_mask(length: int, attention_mask: torch.Tensor | None, cache) -> tuple[AttentionMask, int, int]:
        """The decoder's causal self-attention mask, the position of its first query and the number
        of keys it attends over (cached + new)."""
        if cache is None:
            return causal_mask(length, attention_mask), 0, length
        start = cache.length
        mask = cache.begin(length, attention_mask)
        return mask, start, cache.max_len if cache.static else start + length

    @property
    def bos_token_id(self) -> int | None:
        """The token that opens a source or target (BART's <s>); None when the family has none (T5)."""
        return None

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                output_hidden_states=False) -> Seq2SeqBackboneOutput:
        if output_hidden_states:
            raise UserError("output_hidden_states is not supported by encoder-decoder models")
        memory = self.encode(input_ids, attention_mask)
        if decoder_input_ids is None:  # the start token alone: the first decoding step
            decoder_input_ids = torch.full((input_ids.shape[0], 1), self.decoder_start_id, device=input_ids.device)
        states = self.decode(decoder_input_ids, memory, padding_mask(attention_mask), decoder_attention_mask)
        return Seq2SeqBackboneOutput(states, encoder_last_hidden_state=memory)


class Seq2SeqModel(PtmModel):
    """An encoder-decoder backbone with named heads (the ``seq2seq_lm`` head generates)."""

    def forward(self, *args, targets=None, **inputs) -> Seq2SeqModelOutput:
        """As ``PtmModel.forward``; when training, the decoder inputs come from ``targets`` unless given."""
        if targets is not None:  # (a task head without a target sequence reads the model without them)
            inputs.setdefault("decoder_input_ids", targets.get("decoder_input_ids"))
            inputs.setdefault("decoder_attention_mask", targets.get("decoder_attention_mask"))
        return super().forward(*args, targets=targets, **inputs)

    def wrap_output(self, out: Seq2SeqBackboneOutput) -> Seq2SeqModelOutput:
        return Seq2SeqModelOutput(out.last_hidden_state, encoder_last_hidden_state=out.encoder_last_hidden_state)


class Seq2SeqLMHead(Head):
    """Next-token logits of the decoder: a vocabulary projection, tied to the shared embeddings or
    not (T5 v1.0 scales the states by d_model ** -0.5 first; BART adds ``final_logits_bias``).
    Option ``label_smoothing`` (the original Transformer: 0.1) smooths the training targets."""

    kind = "seq2seq_lm"
    target_key = "seq2seq_labels"

    def __init__(self, backbone: EncoderDecoder, **options):
        super().__init__(backbone, **options)
        config = backbone.config
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if backbone.ties_output_embeddings:
            self.decoder.weight = backbone.input_embeddings.weight
        else:
            backbone.init_lm_head(self.decoder.weight)
        self.scale = backbone.output_scale
        # [1, vocab] as in BART checkpoints; None (no entry in the state dict) for the others
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size)
                             if backbone.final_logits_bias else None)

    def _bias(self):
        return None if self.final_logits_bias is None else self.final_logits_bias[0]

    def logits(self, out, batch):
        return nn.functional.linear(out.last_hidden_state * self.scale, self.decoder.weight, self._bias())

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        hidden = out.last_hidden_state[chosen] * self.scale
        smoothing = self.options.get("label_smoothing", 0.0)
        if smoothing:  # (1 - eps) NLL + eps * mean NLL over the vocabulary: needs every logit, so no chunking
            logits = nn.functional.linear(hidden, self.decoder.weight, self._bias()).float()
            return nn.functional.cross_entropy(logits, labels[chosen], label_smoothing=smoothing, reduction="sum")
        return linear_cross_entropy(hidden, self.decoder.weight, self._bias(), labels[chosen])

