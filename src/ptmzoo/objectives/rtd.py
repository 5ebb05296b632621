"""ELECTRA (Clark et al., 2020): a discriminator trained to tell which tokens a small generator
replaced, the generator trained at the same time as a masked language model.

The corruption is MLM masking (by default 15% of the tokens, 85% of those [MASK] and the rest left
as they are, as in ELECTRA's release) for the generator; ``rtd_labels`` marks the tokens the
discriminator classifies (every real token, specials included). The objective's ``step`` runs the
generator on the masked batch, samples replacements at the masked positions (no gradient flows
through sampling), labels each token replaced or original by comparing with the original text --
a sample that equals the original counts as original -- and runs the discriminator on the result.
The loss is generator MLM + lambda (``weight``, 50) * discriminator BCE.

The generator is a helper network of the model (``model.helpers["generator"]``, saved with it):
a BERT encoder scaled down by ``generator_size`` (hidden size, feed-forward size and heads; 1/4
for ELECTRA-small, 1/3 for base) with an MLM head, sharing the discriminator's embeddings (token,
position, segment and the embedding LayerNorm), which have the discriminator's embedding size --
each network projects them to its own hidden size when the sizes differ. ``ptmzoo.load(run).model``
is the discriminator ready for fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.base import ModelOutput
from ..models.bert import BertModel
from ..models.electra import ElectraConfig
from ..models.model import Head, PtmModel
from ..nn import activation
from .mlm import MaskedLM, MLMHead, MLMOptions


@dataclass
class RTDOptions(MLMOptions):
    mask_token_prob: float = 0.85
    random_token_prob: float = 0.0
    weight: float = 50.0  # lambda: the discriminator loss's weight against the generator's

    def validate(self) -> None:
        super().validate()
        if self.weight <= 0:
            raise UserError("objectives.rtd.weight must be positive")


class ElectraGenerator(PtmModel):
    """The generator: a BERT encoder of ``ElectraConfig.generator_config()`` with a tied MLM head,
    sharing the discriminator's embeddings. A helper network (``PtmModel.add_helper``)."""

    kind = "electra_generator"

    def __init__(self, model: PtmModel, **options):
        if not isinstance(model.config, ElectraConfig):
            raise UserError("an ELECTRA generator needs an ELECTRA discriminator (its config sizes the generator)")
        generator = BertModel(model.config.generator_config())
        shared, own = model.backbone.embeddings, generator.embeddings
        own.word, own.position, own.token_type, own.norm = shared.word, shared.position, shared.token_type, shared.norm
        super().__init__("bert", generator)
        self.options = options
        self.add_head("mlm", MLMHead)  # tied to the shared token embeddings


class RTDHead(Head):
    kind = "rtd"
    target_key = "rtd_labels"

    def __init__(self, backbone, weight: float = 50.0, **options):
        super().__init__(backbone, weight=weight, **options)
        config = backbone.config
        self.weight = weight
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.classifier = nn.Linear(config.hidden_size, 1)
        for layer in (self.dense, self.classifier):
            nn.init.normal_(layer.weight, std=config.initializer_range)
            nn.init.zeros_(layer.bias)

    def logits(self, out, batch):
        """One logit per token: above 0 means replaced."""
        return self.classifier(self.act(self.dense(out.last_hidden_state))).squeeze(-1)

    def loss_sum(self, out, batch):
        labels = batch[self.target_key]
        chosen = labels != -100
        logits = self.classifier(self.act(self.dense(out.last_hidden_state[chosen]))).squeeze(-1)
        return self.weight * F.binary_cross_entropy_with_logits(logits.float(), labels[chosen].float(),
                                                                reduction="sum")


class ReplacedTokenDetection(MaskedLM):
    name = "rtd"
    head = RTDHead
    Options = RTDOptions

    helpers = {"generator": ElectraGenerator}
    has_step = True
    extra_losses = ("mlm",)  # the generator's
    perplexity_losses = ("mlm",)
    shardable = False  # the generator shares the discriminator's embeddings and runs outside its forward

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not isinstance(backbone.config, ElectraConfig):
            raise UserError(f"objective 'rtd' needs a generator and a discriminator, but '{preset}' is a single "
                            "encoder; use an ELECTRA preset (electra-tiny, electra-small, electra-base)")

    def head_options(self):
        return {"weight": self.options.weight}

    def prepare(self, batch, keys) -> None:
        super().prepare(batch, keys)
        batch["rtd_labels"] = np.where(batch["attention_mask"] == 1, 0, -100)  # filled in by the model



    def count_targets(self, batch):
        return {"mlm": (batch["mlm_labels"] != -100).sum()}  # the generator's loss

    def step(self, model: PtmModel, batch) -> ModelOutput:
        """The generator's MLM loss (``loss_sums["mlm"]``) and the discriminator's (``"rtd"``) on an
        ``rtd`` batch (``input_ids`` masked, ``mlm_labels`` the originals at the masked positions)."""
        inputs = model.select_inputs(batch)
        generator_loss, replaced, rtd_labels = replace_tokens(generator_of(model), inputs, batch)
        result = model(**{**inputs, "input_ids": replaced}, targets={**batch, "rtd_labels": rtd_labels})
        result.loss_sums = {"mlm": generator_loss, **result.loss_sums}
        result.loss = generator_loss / (batch["mlm_labels"] != -100).sum().clamp(min=1) + result.loss
        return result


def generator_of(model: PtmModel) -> PtmModel:
    if "generator" not in model.helpers:
        raise UserError("this ELECTRA model has no generator, so it cannot be pre-trained with rtd; load a "
                        "discriminator/ + generator/ pair or start from a preset")
    return model.helpers["generator"]


def replace_tokens(generator: PtmModel, inputs, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The generator's summed MLM loss, the discriminator's input (one token sampled from the
    generator at each masked position) and its labels: 1 where the token differs from the
    original, 0 elsewhere (also where the sample equals the original), -100 off target."""
    input_ids, labels = inputs["input_ids"], batch["mlm_labels"]
    masked = labels != -100
    out = generator.backbone(**inputs)
    head = generator.heads["mlm"]
    logits = head.decoder(head._transform(out.last_hidden_state[masked])).float()  # masked positions only
    loss = F.cross_entropy(logits, labels[masked], reduction="sum")
    with torch.no_grad():  # sampling is not differentiable: the generator learns from MLM alone
        sampled = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)
    replaced = input_ids.masked_scatter(masked, sampled)
    original = input_ids.masked_scatter(masked, labels[masked])
    rtd_labels = torch.where(batch["rtd_labels"] != -100, (replaced != original).long(), -100)
    return loss, replaced, rtd_labels
