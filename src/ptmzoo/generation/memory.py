"""Generation with Transformer-XL's memory instead of a key/value cache.

The prompt runs once (left-padded rows: the padding is masked and, with relative positions, moves
nothing); then each new token runs alone against the memory -- the states that entered each layer
for the tokens before it (the last ``mem_len`` of them, the model's by default) -- as in the
paper's evaluation, where each token may see up to ``num_layers x mem_len`` tokens back. A
memory as long as the text gives exactly the logits of running the whole text again.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..models.base import BackboneOutput
from .decoding import GenerationOptions, generate


def memory_lm_head(model):
    """The ``xl_lm`` head of a model with a memory, or a clear error."""
    heads = [head for head in model.heads.values() if head.kind == "xl_lm"]
    if "mems" not in model.backbone.inputs or not heads:
        raise UserError(f"this {model.family} model has no memory language-model head (xl_lm; heads: "
                        f"{', '.join(model.heads) or 'none'}); pre-train a Transformer-XL preset (transfo-xl-tiny)")
    return heads[0]


class MemoryLM:
    """The stepper of ``generation.decoding``: prefill, one token per step, reorder for beams."""

    def __init__(self, model, mem_len: int | None = None):
        self.backbone = model.backbone
        self.head = memory_lm_head(model)
        self.mem_len = mem_len if mem_len is not None else model.config.mem_len
        self.mems = None
        self.real: torch.Tensor | None = None  # [B, memory length]: which memory slots are real tokens

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask if self.real is None else torch.cat([self.real, attention_mask], dim=1)
        out = self.backbone(input_ids, mask, mems=self.mems, mem_len=self.mem_len)
        self.mems = out.mems
        if out.mems is not None:
            self.real = mask[:, mask.shape[1] - out.mems[0].shape[1]:]
        return self.head.logits(BackboneOutput(out.last_hidden_state[:, -1:]), {})[:, -1].float()

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.mems, self.real = None, None
        return self._logits(input_ids, attention_mask)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(tokens[:, None], torch.ones_like(tokens)[:, None])

    def reorder(self, index: torch.Tensor) -> None:
        if self.mems is not None:
            self.mems = tuple(m[index] for m in self.mems)
            self.real = self.real[index]


def memory_stepper(model, batch: int, input_ids, options: GenerationOptions):
    """``generation.decoding``'s stepper factory for models with a memory."""
    if input_ids is None:
        return memory_lm_head(model)
    if model.config.mem_len == 0:
        raise UserError("this model keeps no memory (model.mem_len=0); it would generate from one token only")
    return MemoryLM(model)


def generate_xl(model, prompts, tokenizer=None, **options):
    """``generation.generate`` for Transformer-XL: the same options, the memory as its cache."""
    return generate(model, prompts, tokenizer, stepper=memory_stepper, **options)
