"""ELECTRA (Clark et al., 2020): the discriminator's network is BERT's encoder with ELECTRA's
defaults; the config also sizes the generator that pre-training trains beside it (the generator,
its sampling and the replaced-token loss are the ``rtd`` objective's: ``objectives.rtd``).

The generator is the discriminator scaled down by ``generator_size`` (hidden size, feed-forward
size and heads; 1/4 for ELECTRA-small, 1/3 for base), with ``generator_layers`` layers (default:
the discriminator's); the two share their embeddings, of the discriminator's embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import UserError
from .bert import BertConfig, BertModel


@dataclass
class ElectraConfig(BertConfig):
    """The discriminator's architecture plus the generator's size."""

    add_pooler: bool = False  # ELECTRA reads [CLS] in its task heads
    generator_size: float = 0.25  # generator hidden, feed-forward and head counts as a fraction
    generator_layers: int | None = None  # None: as many layers as the discriminator

    def validate(self) -> None:
        super().validate()
        if not 0 < self.generator_size <= 1:
            raise UserError("model.generator_size must be in (0, 1] (a fraction of the discriminator)")
        if self.generator_layers is not None and self.generator_layers < 1:
            raise UserError("model.generator_layers must be at least 1 (or null: the discriminator's)")

    def generator_config(self) -> BertConfig:
        base = {f.name: getattr(self, f.name) for f in fields(BertConfig)}
        scale = self.generator_size
        return BertConfig.from_dict({
            **base,
            "hidden_size": max(1, round(self.hidden_size * scale)),
            "intermediate_size": max(1, round(self.intermediate_size * scale)),
            "num_heads": max(1, round(self.num_heads * scale)),
            "num_layers": self.generator_layers or self.num_layers,
            "embedding_size": self.embedding_size or self.hidden_size,  # the shared embeddings' size
            "add_pooler": False,
        }, where="model.generator.")


class ElectraBackbone(BertModel):
    """The discriminator: BERT's encoder with ELECTRA's defaults."""

    config_class = ElectraConfig
