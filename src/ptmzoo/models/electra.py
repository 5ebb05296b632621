"""ELECTRA (Clark et al., 2020): a discriminator trained to tell which tokens a small generator
replaced, the generator trained at the same time as a masked language model.

Both networks are BERT encoders. The generator is the discriminator scaled down by
``generator_size`` (hidden size, feed-forward size and heads; 1/4 for ELECTRA-small, 1/3 for
base); the two share their embeddings (token, position, segment and the embedding LayerNorm),
which have the discriminator's embedding size -- each network projects them to its own hidden
size when the sizes differ (``BertConfig.embedding_size``).

``ElectraModel`` is a ``PtmModel`` whose backbone and heads are the discriminator's, so
``ptmzoo.load(run).model`` is the discriminator ready for use and fine-tuning; the generator is
``.generator`` (a ``PtmModel`` with an ``mlm`` head). During pre-training (``objectives.rtd``)
its forward runs the generator on the masked batch, samples replacements at the masked positions
(no gradient flows through sampling), labels each token replaced or original by comparing with
the original text -- a sample that equals the original counts as original -- and runs the
discriminator on the result. The loss is generator MLM + lambda * discriminator BCE (lambda in
the ``rtd`` head).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import ModelOutput
from .bert import BertConfig, BertModel
from .model import PtmModel


@dataclass
class ElectraConfig(BertConfig):
    """The discriminator's architecture plus the generator's size."""

    add_pooler: bool = False  # ELECTRA reads [CLS] in its task heads
    generator_size: float = 0.25  # generator hidden, feed-forward and head counts as a fraction
    generator_layers: int | None = None  # None: as many layers as the discriminator
    # False: the discriminator (or a generator) alone, as a Hugging Face ELECTRA checkpoint holds it
    with_generator: bool = True

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


class ElectraModel(PtmModel):
    def __init__(self, family: str, backbone: ElectraBackbone, heads=None):
        super().__init__(family, backbone, heads)
        import ptmzoo.objectives  # noqa: F401  (registers the generator's mlm head)

        self.generator = None
        if not backbone.config.with_generator:
            return
        generator = BertModel(backbone.config.generator_config())
        shared, own = backbone.embeddings, generator.embeddings
        own.word, own.position, own.token_type, own.norm = shared.word, shared.position, shared.token_type, shared.norm
        self.generator = PtmModel("bert", generator)
        self.generator.add_head("mlm", "mlm")  # tied to the shared token embeddings

    def count_targets(self, batch):
        if self.generator is None:
            return super().count_targets(batch)
        return {**self.generator.count_targets(batch), **super().count_targets(batch)}

    def loss_names(self) -> list[str]:
        own = super().loss_names()
        return own if self.generator is None else self.generator.loss_names() + own

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, targets=None, document_ids=None, cache=None) -> ModelOutput:
        """Without ``rtd_labels`` in ``targets``: the discriminator alone. With them (an ``rtd``
        batch: ``input_ids`` masked, ``mlm_labels`` the originals at the masked positions): the
        generator's MLM loss (``loss_sums["mlm"]``) and the discriminator's (``"rtd"``)."""
        common = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids,
                  "document_ids": document_ids}
        if targets is None or "rtd_labels" not in targets:
            return super().forward(input_ids, output_hidden_states=output_hidden_states, targets=targets,
                                   cache=cache, **common)
        if self.generator is None:
            raise UserError("this ELECTRA model has no generator (model.with_generator is false), so it cannot be "
                            "pre-trained with rtd; load a discriminator/ + generator/ pair or start from a preset")
        generator_loss, replaced, rtd_labels = self.replace_tokens(input_ids, targets, common)
        result = super().forward(replaced, output_hidden_states=output_hidden_states,
                                 targets={**targets, "rtd_labels": rtd_labels}, **common)
        result.loss_sums = {"mlm": generator_loss, **result.loss_sums}
        result.loss = generator_loss / (targets["mlm_labels"] != -100).sum().clamp(min=1) + result.loss
        return result

    def replace_tokens(self, input_ids, targets, common) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generator's summed MLM loss, the discriminator's input (one token sampled from the
        generator at each masked position) and its labels: 1 where the token differs from the
        original, 0 elsewhere (also where the sample equals the original), -100 off target."""
        labels = targets["mlm_labels"]
        masked = labels != -100
        out = self.generator.backbone(input_ids, common["attention_mask"], common["token_type_ids"],
                                      common["position_ids"], document_ids=common["document_ids"])
        head = self.generator.heads["mlm"]
        logits = head.decoder(head._transform(out.last_hidden_state[masked])).float()  # masked positions only
        loss = F.cross_entropy(logits, labels[masked], reduction="sum")
        with torch.no_grad():  # sampling is not differentiable: the generator learns from MLM alone
            sampled = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)
        replaced = input_ids.masked_scatter(masked, sampled)
        original = input_ids.masked_scatter(masked, labels[masked])
        rtd_labels = torch.where(targets["rtd_labels"] != -100, (replaced != original).long(), -100)
        return loss, replaced, rtd_labels


class ElectraBackbone(BertModel):
    """The discriminator: BERT's encoder with ELECTRA's defaults."""

    config_class = ElectraConfig
    model_class = ElectraModel  # what ``model_for`` builds around this backbone
