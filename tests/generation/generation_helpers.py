"""Helpers of the generation tests: a tiny random GPT-2 and a table-driven fake language model."""

import torch

import ptmzoo.objectives  # noqa: F401  (registers the clm head)
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.models.model import PtmModel
from ptmzoo.presets import get_preset


def tiny_gpt2(vocab_size: int = 97, seed: int = 0, preset: str = "gpt2-tiny", **overrides) -> PtmModel:
    """A tiny decoder preset (gpt2-tiny, gpt1-tiny, gpt3-tiny), narrower and with a small
    vocabulary: random weights, eval mode."""
    family = get_preset(preset).family
    config = {**get_preset(preset).model, "vocab_size": vocab_size, "hidden_size": 64, "num_heads": 4,
              "intermediate_size": 128, "max_position_embeddings": 128, **overrides}
    torch.manual_seed(seed)
    model = PtmModel(family, build_backbone(family, config))
    model.add_head("clm", HEADS["clm"])
    return model.eval()


class TableLM:
    """A stepper whose next-token distribution depends only on the last token: ``table[last]``."""

    def __init__(self, table: torch.Tensor):
        self.log_probs = table.log()

    def prefill(self, input_ids, attention_mask):
        return self.log_probs[input_ids[:, -1]]

    def step(self, tokens):
        return self.log_probs[tokens]

    def reorder(self, index):
        pass
