"""XLM (Lample & Conneau, 2019): a BERT encoder pre-trained on many languages with one shared BPE
vocabulary, with a learned *language embedding* added to every input token.

A language embedding is a table indexed per token and summed with the token and position
embeddings -- exactly what BERT's segment table computes -- so XLM is BERT whose segment ids
carry language ids: ``languages`` names the table's rows (``type_vocab_size`` follows it). The
objectives decide the ids: MLM on a monolingual stream gives every token its stream's language,
translation LM (``objectives.tlm``) gives each half of a sentence pair its own language and
restarts the positions at the target sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .bert import BertConfig, BertModel


@dataclass
class XLMConfig(BertConfig):
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # language id = index here
    add_pooler: bool = False  # XLM classifies from the first token's state

    def __post_init__(self) -> None:
        self.type_vocab_size = len(self.languages)  # the segment table is the language table

    def validate(self) -> None:
        super().validate()
        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise UserError("model.languages must name at least one language, each once (e.g. [en, zh])")

    def language_id(self, language: str, where: str = "") -> int:
        if language not in self.languages:
            raise UserError(f"{where}language {language!r} is not one of the model's languages "
                            f"({', '.join(self.languages)}); set model.languages")
        return self.languages.index(language)


class XLMModel(BertModel):
    config_class = XLMConfig
