"""What one training step computes: the module the Trainer optimises and wraps for DDP/FSDP.

``TrainingStep`` holds the model (saved in checkpoints) and the objectives of the run. Its forward
takes a whole batch: by default the model's forward with the batch's model inputs and the batch as
targets; an objective with a step of its own (``Objective.has_step``, e.g. ELECTRA's generator
sampling, a distillation teacher, a memory carried across segments) runs instead. Because that
step runs inside this module's forward, DDP's and FSDP's hooks see every forward pass. The
objectives' networks (a frozen teacher) are submodules here so that they move with the model,
but they are not part of the model and not saved with it; the objectives' carried state is
(``carried_state``, written to ``trainer_state/`` by the Trainer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..models.base import ModelOutput
from ..models.model import PtmModel


class TrainingStep(nn.Module):
    def __init__(self, model: PtmModel, objectives: Sequence[Any] = ()):
        super().__init__()
        self.model = model
        self.objectives = list(objectives)  # plain objects, not modules
        stepping = [o for o in self.objectives if o.has_step]
        if len(stepping) > 1:
            raise UserError(f"objectives {', '.join(o.name for o in stepping)} each run a training step of their "
                            "own; combine at most one of them in a run")
        self.stepper = stepping[0] if stepping else None
        self.networks = nn.ModuleDict({f"{o.name}_{name}": network for o in self.objectives
                                       for name, network in o.networks().items()})

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        if self.stepper is not None:
            return self.stepper.step(self.model, batch)
        return self.model(**self.model.select_inputs(batch), targets=batch)

    def count_targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Targets per reported loss: the objectives' own losses first, then the model's heads."""
        counts: dict[str, torch.Tensor] = {}
        for objective in self.objectives:
            counts.update(objective.count_targets(batch))
        counts.update(self.model.count_targets(batch))
        return counts

    def loss_names(self) -> list[str]:
        names = [name for o in self.objectives for name in o.extra_losses]
        return names + [name for name in self.model.loss_names() if name not in names]

    # ---- state carried from step to step, for an exact resume --------------------------------
    def carried_state(self) -> dict[str, torch.Tensor]:
        return {f"{o.name}.{key}": value for o in self.objectives for key, value in o.state_dict().items()}

    def load_carried_state(self, state: dict[str, torch.Tensor]) -> None:
        for objective in self.objectives:
            prefix = f"{objective.name}."
            objective.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
