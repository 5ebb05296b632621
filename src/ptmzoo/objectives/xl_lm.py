"""Transformer-XL's language modelling: contiguous segments, each reading the memory of the ones
before it.

The corpus is read as a stream (``samples = "stream"``): batch row r of step s holds segment s of
the r-th part of the text, and ``target_ids`` are the next tokens (the last one is the first token
of the next segment), so every token of the corpus is predicted once per epoch. The objective owns
the memory: after each step it keeps every row's new memory (the last ``mem_len`` states that
entered each layer, no gradient) and gives it back with that row's next segment. A row whose
previous segment was not the one just before (its part of the text starts again: a new epoch)
starts without memory. The training memory is saved with the trainer state (an exact resume);
evaluation keeps a memory of its own, which starts empty at the first held-out segment.

The head is the (adaptive) softmax tied to the backbone's adaptive embedding
(``nn.adaptive``), with an output bias per cluster.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..models.model import Head, PtmModel
from ..nn.adaptive import AdaptiveSoftmax
from .base import Objective


class MemoryLMHead(Head):
    kind = "xl_lm"
    target_key = "xl_targets"  # the next token of every position (no shift inside the row)
    perplexity = True

    def __init__(self, backbone, **options):
        super().__init__(backbone, **options)
        self.softmax = AdaptiveSoftmax(backbone.embeddings)

    def logits(self, out, batch):
        """Log-probabilities of every token (a softmax of them is the model's distribution)."""
        return self.softmax.log_probs(out.last_hidden_state)

    def loss_sum(self, out, batch):
        return self.softmax.nll_sum(out.last_hidden_state, batch[self.target_key])


class SegmentMemory:
    """The memory of each stream row: [layers, rows, mem_len, hidden] states, right-aligned (the
    last ``filled`` slots of a row are real), and the segment each row's memory ends with."""

    def __init__(self):
        self.states: torch.Tensor | None = None
        self.filled: torch.Tensor | None = None  # [rows] real slots
        self.segment: torch.Tensor | None = None  # [rows] last segment written (-1: none)

    def read(self, rows: torch.Tensor, segments: torch.Tensor) -> tuple[tuple[torch.Tensor, ...] | None, torch.Tensor | None]:
        """The memory of ``rows`` about to read ``segments``, and which of its slots are real
        ([b, m] bool); (None, None) when no row has one."""
        if self.states is None or int(rows.max()) >= self.states.shape[1]:
            return None, None
        follows = (self.segment[rows] == segments - 1) & (segments > 0)
        filled = torch.where(follows, self.filled[rows], 0)
        width = int(filled.max())
        if width == 0:
            return None, None
        states = self.states[:, rows, self.states.shape[2] - width:]
        real = torch.arange(width, device=filled.device)[None, :] >= (width - filled)[:, None]
        return tuple(states.unbind(0)), real

    def write(self, rows: torch.Tensor, segments: torch.Tensor, mems: tuple[torch.Tensor, ...],
              filled: torch.Tensor, mem_len: int) -> None:
        """Store each row's new memory (``mems`` [b, m', H] per layer, the last ``filled`` real)."""
        layers, hidden = len(mems), mems[0].shape[-1]
        count = int(rows.max()) + 1
        if self.states is None or count > self.states.shape[1]:
            states = mems[0].new_zeros(layers, count, mem_len, hidden)
            filled_all = torch.zeros(count, dtype=torch.long, device=rows.device)
            segment = torch.full((count,), -1, dtype=torch.long, device=rows.device)
            if self.states is not None:
                old = self.states.shape[1]
                states[:, :old], filled_all[:old], segment[:old] = self.states, self.filled, self.segment
            self.states, self.filled, self.segment = states, filled_all, segment
        width = mems[0].shape[1]
        self.states[:, rows] = 0
        self.states[:, rows, mem_len - width:] = torch.stack(mems).to(self.states.dtype)
        self.filled[rows] = filled.clamp(max=width)
        self.segment[rows] = segments

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        if self.states is None:
            return {}
        return {f"{prefix}states": self.states, f"{prefix}filled": self.filled, f"{prefix}segment": self.segment}

    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        if f"{prefix}states" in state:
            self.states = state[f"{prefix}states"].clone()
            self.filled = state[f"{prefix}filled"].clone()
            self.segment = state[f"{prefix}segment"].clone()


def memory_inputs(model: PtmModel, batch: dict[str, torch.Tensor], memory: SegmentMemory) -> dict[str, torch.Tensor]:
    """The model inputs of a stream batch with its rows' memory (and a mask of its real slots)."""
    inputs = model.select_inputs(batch)
    mems, real = memory.read(batch["stream_row"], batch["stream_segment"])
    if mems is not None:
        inputs["mems"] = mems
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        inputs["attention_mask"] = torch.cat([real.to(mask.dtype), mask], dim=1)
    return inputs


class SegmentLM(Objective):
    name = "xl_lm"
    head = MemoryLMHead
    samples = "stream"
    direction = "causal"
    has_step = True

    def __init__(self, options, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.train_memory = SegmentMemory()
        self.eval_memory = SegmentMemory()

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if "mems" not in backbone.inputs:
            raise UserError(f"objective 'xl_lm' carries a memory across segments, but '{preset}' reads none; use a "
                            "Transformer-XL preset (transfo-xl-tiny) or 'clm'")
        if backbone.config.mem_len is None:
            raise UserError("objective 'xl_lm' keeps a memory of model.mem_len states per layer; set model.mem_len "
                            "(0: no memory)")

    def prepare(self, batch, keys) -> None:
        batch["xl_targets"] = np.where(batch["attention_mask"] == 1, batch["target_ids"], -100)

    def step(self, model: PtmModel, batch):
        memory = self.train_memory if model.training else self.eval_memory
        inputs = memory_inputs(model, batch, memory)
        out = model(**inputs, targets=batch)
        if out.mems is not None:  # real slots: those of the old memory and the segment's tokens that enter it
            width = 0 if "mems" not in inputs else inputs["mems"][0].shape[1]
            previous = inputs["attention_mask"][:, :width].sum(1) if width else 0
            filled = previous + batch["attention_mask"][:, : model.config.reuse_len].sum(1)
            memory.write(batch["stream_row"], batch["stream_segment"], out.mems, filled, model.config.mem_len)
        return out

    def state_dict(self):
        return self.train_memory.state_dict("train.")

    def load_state_dict(self, state):
        self.train_memory.load_state_dict(state, "train.")
