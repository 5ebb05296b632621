"""Fine-tuning learning rates: the default that fits the model, and ``--lr auto`` (a grid on the dev set).

The rule (used when no learning rate is given): BERT-base's 5e-5 for models 768 wide or wider,
scaled by the square of how much narrower a model is, ``5e-5 * (768 / hidden_size) ** 2``,
at most 1e-3, rounded to two significant digits: 384 wide -> 2e-4, 256 -> 4.5e-4, 128 -> 1e-3.
Small models need larger rates (issue 19: a small CPU-pre-trained model reached TREC accuracy
0.452 at 5e-5, 0.696 at 5e-4).

``--lr auto`` fine-tunes once per rate of a grid (default: the rule's rate / 3, x 1, x 3), picks
the rate whose best checkpoint scores highest on the dev set by the selection metric -- never on
the test set, which is evaluated once, with the chosen model -- and keeps that run's best
checkpoint as the run's ``best`` (``finetune.run.search_lr``: the procedure as a function, the demo's too).
"""

from __future__ import annotations

import os

from ..errors import UserError

BASE_LR = 5e-5  # BERT-base's fine-tuning rate (Devlin et al. 2019 searched 2e-5 .. 5e-5)
BASE_WIDTH = 768
MAX_LR = 1e-3
GRID_FACTORS = (1 / 3, 1.0, 3.0)
TRIALS_DIR = "lr_search"  # OUT/lr_search/lr_X: one fine-tuning run per rate of the grid
RULE = (f"{BASE_LR:g} x (768 / hidden_size)^2, between {BASE_LR:g} and {MAX_LR:g} "
        "(768 wide: 5e-05, 384: 0.0002, 256: 0.00045, 128: 0.001)")


def round_rate(value: float) -> float:
    """Two significant digits (4.5e-4, not 4.4999e-4)."""
    return float(f"{value:.2g}")


def lr_for_width(hidden_size: int) -> float:
    """The default fine-tuning learning rate of a model ``hidden_size`` wide (the rule above)."""
    if hidden_size <= 0:
        raise UserError(f"hidden size must be positive, not {hidden_size}")
    return round_rate(min(MAX_LR, max(BASE_LR, BASE_LR * (BASE_WIDTH / hidden_size) ** 2)))


def default_grid(hidden_size: int) -> list[float]:
    """The rates ``--lr auto`` tries without ``--lr-grid``: the rule's rate / 3, x 1 and x 3."""
    center = lr_for_width(hidden_size)
    return [round_rate(center * factor) for factor in GRID_FACTORS]


def trial_dir(out_dir: str, lr: float) -> str:
    return os.path.join(out_dir, TRIALS_DIR, f"lr_{lr:g}")
