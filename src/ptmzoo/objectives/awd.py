"""AWD-LSTM's language modelling (Merity et al., 2018): truncated BPTT over a continuous stream.

Every batch row reads its own part of the corpus in order (``stream`` samples), and the LSTM's
state at the end of a step is where the row starts at the next one: the state is carried across
batches (detached: the gradient is truncated at the segment boundary) and saved with the trainer
state, so a resumed run continues exactly. Segment lengths vary (``data.stream.VariableLengths``:
N(bptt, 5), N(bptt/2, 5) with probability 0.05), so that no token is always cut at the same place.
Every position predicts the next token of the stream, the first token of the next segment
included. The loss adds the paper's two regularisers of the last layer's output h:

* activation regularisation AR = alpha * mean(dropped(h) ** 2) -- on the output after dropout;
* temporal activation regularisation TAR = beta * mean((h_t - h_{t-1}) ** 2) -- before dropout.

Both are means over positions and units, reported as the losses ``ar`` and ``tar`` next to the LM
loss (``awd_lm``); they are training terms only, so evaluation reports the LM loss and perplexity.
The evaluation keeps a state of its own (reset at the start of the split), the training state is
untouched by it. (The paper trains with NT-ASGD; ptmzoo's Trainer uses AdamW, as fastai's ULMFiT does.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import Config
from ..data.stream import VariableLengths
from ..errors import UserError
from ..models.base import ModelOutput
from ..nn.losses import linear_cross_entropy
from ..nn.rnn import RecurrentState
from .base import Objective
from .clm import LMHead


@dataclass
class AwdOptions(Config):
    alpha: float = 2.0  # AR
    beta: float = 1.0  # TAR
    variable_length: bool = True
    short_probability: float = 0.05
    length_std: float = 5.0
    min_length: int = 5

    def validate(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise UserError("objectives.awd_lm.alpha and beta must not be negative")
        if not 0 <= self.short_probability <= 1 or self.length_std < 0 or self.min_length < 1:
            raise UserError("objectives.awd_lm: short_probability must be in [0, 1], length_std >= 0, "
                            "min_length >= 1")


class CarriedStates:
    """One LSTM state per stream row, on the model's device; a row's state is read at the start of
    its segment and replaced by the (detached) state at its end. Segment 0 starts from zeros."""

    def __init__(self):
        self.layers: list[list[torch.Tensor]] = []  # per layer: [h, c], each [rows, width]

    def read(self, rows: torch.Tensor, restart: torch.Tensor, num_layers: int) -> RecurrentState:
        state = RecurrentState(num_layers)
        if self.layers and int(rows.max()) < len(self.layers[0][0]):
            keep = (~restart).to(self.layers[0][0].dtype)[:, None]
            state.layers = [(h[rows] * keep, c[rows] * keep) for h, c in self.layers]
        return state

    def write(self, rows: torch.Tensor, state: RecurrentState) -> None:
        needed = int(rows.max()) + 1
        if not self.layers or len(self.layers[0][0]) < needed:
            old = self.layers
            self.layers = [[h.new_zeros(needed, h.shape[1]), c.new_zeros(needed, c.shape[1])] for h, c in state.layers]
            for (h, c), (old_h, old_c) in zip(self.layers, old):
                h[: len(old_h)], c[: len(old_c)] = old_h, old_c
        for (h, c), (new_h, new_c) in zip(self.layers, state.layers):
            h[rows], c[rows] = new_h.detach(), new_c.detach()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{kind}{i}": t for i, pair in enumerate(self.layers) for kind, t in zip("hc", pair)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.layers = [[tensors[f"h{i}"].clone(), tensors[f"c{i}"].clone()] for i in range(len(tensors) // 2)]


class AwdLM(Objective):
    name = "awd_lm"
    head = LMHead
    Options = AwdOptions
    samples = "stream"
    direction = "causal"
    salt = 13
    has_step = True
    shardable = False  # the step calls the backbone and the head's weights directly
    extra_losses = ("awd_lm", "ar", "tar")

    def __init__(self, options: AwdOptions, tokenizer, seed: int = 0):
        super().__init__(options, tokenizer, seed)
        self.train_states, self.eval_states = CarriedStates(), CarriedStates()

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not backbone.recurrent:
            raise UserError(f"objective 'awd_lm' carries an LSTM's state across batches; '{preset}' is not "
                            "recurrent (use 'clm' for Transformer decoders)")

    def sample_options(self):
        o = self.options
        if not o.variable_length:
            return {}
        return {"lengths": VariableLengths(self.seed, o.short_probability, o.length_std, o.min_length)}

    def count_targets(self, batch):
        targets = batch["target_ids"]
        rows, length = targets.shape
        device = targets.device
        return {"awd_lm": torch.tensor(targets.numel(), device=device),
                "ar": torch.tensor(rows * length, device=device),
                "tar": torch.tensor(rows * max(length - 1, 0), device=device)}

    def step(self, model, batch) -> ModelOutput:
        backbone, head = model.backbone, model.heads[self.name]
        states = self.train_states if model.training else self.eval_states
        rows = batch["stream_row"]
        state = states.read(rows, batch["stream_segment"] == 0, len(backbone.layers))
        out = backbone(batch["input_ids"], output_hidden_states=True, cache=state)
        states.write(rows, state)
        dropped, raw = out.last_hidden_state, out.hidden_states[-1]
        losses = {"awd_lm": linear_cross_entropy(dropped, head.decoder.weight, None, batch["target_ids"])}
        if model.training:
            width = dropped.shape[-1]
            losses["ar"] = self.options.alpha * dropped.float().pow(2).sum() / width
            losses["tar"] = self.options.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).sum() / width
        result = ModelOutput(out.last_hidden_state, None, out.hidden_states, loss_sums=losses)
        counts = self.count_targets(batch)
        result.loss = sum(loss / counts[name].clamp(min=1) for name, loss in losses.items())
        return result

    def state_dict(self):
        return self.train_states.tensors()

    def load_state_dict(self, state):
        if state:
            self.train_states.load(state)
