"""CoVe (McCann et al., 2017, "Learned in Translation: Contextualized Word Vectors"): the encoder of
an attentional LSTM translation model, whose states are word vectors in context.

* Encoder: word embeddings (``embedding_size``; GloVe in the paper -- ``finetune --init-embeddings``
  loads word vectors, ``freeze_embeddings`` keeps them fixed) and ``num_layers`` bidirectional LSTM
  layers of ``lstm_size`` units per direction. CoVe(w) is the top layer's [forward; backward] state.
* Decoder: target embeddings, ``num_layers`` LSTM layers of ``2 * lstm_size`` units, and global
  attention over the encoder states (Luong et al., 2015, "general" score): the context vector
  and the decoder state give the attentional state tanh(W [context; state]), which the LM head
  (``seq2seq_lm``) projects onto the target vocabulary. (The paper also feeds the attentional state
  back into the next decoder input; this decoder does not, so teacher-forced training runs over
  the whole target at once.)

The model is trained with the translation task (``ptmzoo init --preset cove`` + ``ptmzoo finetune
--task translation``) and decodes with the encoder-decoder generation, its decoder state taking the
place of a key/value cache. Given no target (a classification or tagging head), the backbone
returns CoVe's features: [embedding(w); CoVe(w)], ``hidden_size = embedding_size + 2 * lstm_size``
wide -- the attentional state has that width too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config
from ..errors import UserError
from ..nn.attention import AttentionMask, padding_mask
from ..nn.rnn import BidirectionalLSTM, LSTMLayer, RecurrentState
from .seq2seq import EncoderDecoder, Seq2SeqBackboneOutput


@dataclass
class CoveConfig(Config):
    vocab_size: int = 32000  # one (joint) vocabulary for source and target
    embedding_size: int = 300
    lstm_size: int = 300  # per direction; the decoder has twice as many
    num_layers: int = 2
    dropout: float = 0.2
    freeze_embeddings: bool = False  # the paper's fixed GloVe vectors
    hidden_size: int = 0  # the features' width: 0 = embedding_size + 2 * lstm_size
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None  # default: the padding token (as T5)
    initializer_range: float = 0.02  # the LM and task heads
    num_decoder_layers: int | None = None  # default: num_layers

    def __post_init__(self):
        if not self.hidden_size:
            self.hidden_size = self.embedding_size + 2 * self.lstm_size

    def validate(self) -> None:
        for name in ("vocab_size", "embedding_size", "lstm_size", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name} must be at least 1")
        if self.hidden_size != self.embedding_size + 2 * self.lstm_size:
            raise UserError(f"model.hidden_size ({self.hidden_size}) must be embedding_size + 2 * lstm_size "
                            f"({self.embedding_size + 2 * self.lstm_size}); leave it out")
        if not 0 <= self.dropout < 1:
            raise UserError("model.dropout must be in [0, 1)")


class CoveModel(EncoderDecoder):
    config_class = CoveConfig
    recurrent = True  # generation keeps the decoder's LSTM state (initial_state), not keys and values

    def __init__(self, config: CoveConfig):
        super().__init__(config)
        width, cells = config.embedding_size, config.lstm_size
        self.source_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.encoder = nn.ModuleList(BidirectionalLSTM(width if i == 0 else 2 * cells, cells)
                                     for i in range(config.num_layers))
        self.target_embeddings = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.decoder = nn.ModuleList(LSTMLayer(width if i == 0 else 2 * cells, 2 * cells)
                                     for i in range(self.num_decoder_layers))
        self.attention_score = nn.Linear(2 * cells, 2 * cells, bias=False)  # general: s^T W h
        self.attentional = nn.Linear(4 * cells, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        for embedding in (self.source_embeddings, self.target_embeddings):
            nn.init.normal_(embedding.weight, std=width ** -0.5)
            embedding.weight.data[config.pad_token_id].zero_()

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.source_embeddings  # the word vectors CoVe is trained on (--init-embeddings)

    @property
    def max_length(self) -> int | None:
        return None

    @property
    def ties_output_embeddings(self) -> bool:
        return False

    @property
    def attention_shape(self) -> tuple[int, int]:
        raise UserError("CoVe's decoder is an LSTM: it has no attention heads")

    def initial_state(self, batch: int) -> RecurrentState:
        return RecurrentState(len(self.decoder))

    def embed_source(self, input_ids: torch.Tensor) -> torch.Tensor:
        words = self.source_embeddings(input_ids)
        return words.detach() if self.config.freeze_embeddings else words

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               words: torch.Tensor | None = None) -> torch.Tensor:
        """CoVe(w): the top encoder layer's states [B, S, 2 * lstm_size] (zero at padding)."""
        x = self.embed_source(input_ids) if words is None else words
        for i, layer in enumerate(self.encoder):
            x = layer(self.dropout(x) if i else x, attention_mask)
        return x

    def decode(self, decoder_input_ids, memory, memory_mask: AttentionMask, attention_mask=None, cache=None):
        """Attentional states [B, T, hidden_size]; ``cache`` (a ``RecurrentState``) continues the decoder."""
        x = self.dropout(self.target_embeddings(decoder_input_ids))
        for i, layer in enumerate(self.decoder):
            out, final = layer(x, None if cache is None else cache.layers[i])
            if cache is not None:
                cache.layers[i] = final
            x = self.dropout(out) if i < len(self.decoder) - 1 else out
        scores = torch.einsum("btd,bsd->bts", self.attention_score(x), memory)
        if memory_mask.mask is not None:
            scores = scores.masked_fill(~memory_mask.mask[:, 0], float("-inf"))
        context = torch.einsum("bts,bsd->btd", scores.softmax(dim=-1), memory)
        return self.dropout(torch.tanh(self.attentional(torch.cat([context, x], dim=-1))))

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                output_hidden_states=False) -> Seq2SeqBackboneOutput:
        if output_hidden_states:
            raise UserError("CoVe gives one layer of features ([GloVe; CoVe]); use --layers last")
        words = self.embed_source(input_ids)
        memory = self.encode(input_ids, attention_mask, words)
        if decoder_input_ids is None:  # no target: the features
            features = torch.cat([words, memory], dim=-1)
            if attention_mask is not None:
                features = features * attention_mask[..., None].to(features.dtype)
            return Seq2SeqBackboneOutput(features, encoder_last_hidden_state=memory)
        states = self.decode(decoder_input_ids, memory, padding_mask(attention_mask), decoder_attention_mask)
        return Seq2SeqBackboneOutput(states, encoder_last_hidden_state=memory)
