"""XLM (Lample & Conneau, 2019): a BERT encoder pre-trained on many languages with one shared BPE
vocabulary, with a learned *language embedding* added to every input token.

A language embedding is a table indexed per token and summed with the token and position
embeddings -- exactly what BERT's segment table computes -- so XLM is BERT whose segment ids
carry language ids: ``languages`` names the table's rows (``type_vocab_size`` follows it). The
objectives decide the ids: MLM on a monolingual stream gives every token its stream's language,
translation LM (``objectives.tlm``) gives each half of a sentence pair its own language and
restarts the positions at the target sentence.

Where XLM's code differs from BERT, config fields follow it:

* no language table for a single language or with ``language_embeddings: false`` (XLM-17/100),
  and no language added when a batch carries no language ids;
* ``sinusoidal_positions``: the fixed sin/cos table of the original Transformer instead of a
  learned one (kept as the position table, but never trained);
* ``causal``: left-to-right attention, for XLM's causal LM (CLM) objective;
* ``lm_head_transform``: BERT's MLM head has a dense + LayerNorm transform before the tied
  vocabulary projection; XLM's prediction layer is the projection alone (false in the presets);
* the states of padded positions are zero (XLM multiplies every layer's output by the padding
  mask; no real token attends to them, so the states of real tokens are BERT's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..nn.positions import sinusoidal_positions
from .base import BackboneOutput
from .bert import BertConfig, BertEmbeddings, BertModel


@dataclass
class XLMConfig(BertConfig):
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # language id = index here
    add_pooler: bool = False  # XLM classifies from the first token's state
    language_embeddings: bool = True  # XLM's use_lang_emb; a single language never has a table
    sinusoidal_positions: bool = False  # fixed, untrained sin/cos positions (XLM's sinusoidal_embeddings)
    causal: bool = False  # left-to-right attention (XLM's CLM)
    lm_head_transform: bool = True  # the MLM head's dense + LayerNorm (BERT's); XLM's has none

    def __post_init__(self) -> None:
        # the segment table is the language table
        with_table = self.language_embeddings and len(self.languages) > 1
        self.type_vocab_size = len(self.languages) if with_table else 0

    def validate(self) -> None:
        super().validate()
        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise UserError("model.languages must name at least one language, each once (e.g. [en, zh])")

    def language_id(self, language: str, where: str = "") -> int:
        if language not in self.languages:
            raise UserError(f"{where}language {language!r} is not one of the model's languages "
                            f"({', '.join(self.languages)}); set model.languages")
        return self.languages.index(language)


class LanguageEmbeddings(BertEmbeddings):
    """BERT's embeddings, the segment table holding one row per language. Without language ids
    no language is added (XLM adds its language embedding only when given languages)."""

    def segments(self, language_ids: torch.Tensor | None):
        return 0 if language_ids is None else self.token_type(language_ids)


class XLMModel(BertModel):
    config_class = XLMConfig
    embeddings_class = LanguageEmbeddings

    def __init__(self, config: XLMConfig):
        super().__init__(config)
        self.causal = config.causal
        if config.sinusoidal_positions:
            table = self.embeddings.position.weight
            with torch.no_grad():
                table.copy_(sinusoidal_positions(*table.shape))
            table.requires_grad_(False)

    @property
    def mlm_head_transform(self) -> bool:
        return self.config.lm_head_transform

    def corpus_segment_ids(self, corpus_meta) -> tuple[int, ...] | None:
        """The language ids a corpus gives its tokens: (source, target) for a parallel corpus, (id,)
        for a monolingual one that names its language (``prepare --language``), else None."""
        where = "corpus: "
        if "parallel" in corpus_meta:
            return tuple(self.config.language_id(lang, where) for lang in corpus_meta["parallel"]["languages"])
        return (self.config.language_id(corpus_meta["language"], where),) if "language" in corpus_meta else None

    def forward(self, input_ids, attention_mask=None, *args, **kwargs) -> BackboneOutput:
        """BERT's forward (``token_type_ids`` are language ids); the states of padded positions are
        zero, as XLM multiplies them by the padding mask (no real token attends to them)."""
        out = super().forward(input_ids, attention_mask, *args, **kwargs)
        if attention_mask is None:
            return out
        real = attention_mask[..., None].bool()
        states = None if out.hidden_states is None else tuple(state * real for state in out.hidden_states)
        return BackboneOutput(out.last_hidden_state * real, out.pooler_output, states)
