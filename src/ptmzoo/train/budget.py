"""How many steps a run makes: ``train.max_steps``, or with ``train.max_minutes`` the steps
that fit the time budget, estimated from the measured speed of the run's first steps and
re-estimated when the speed changes a lot. The learning-rate schedule (warmup and decay), the
progress total and the ETA follow the planned number, so the rate has decayed when the time is up.

The speed is that of training steps alone plus the time evaluations and checkpoints took so far,
spread over the steps made; the plan ends 5% of the budget before the deadline, so the last step
finishes inside it.
"""

from __future__ import annotations

from collections import deque

WARM_STEPS = 3  # the first steps allocate memory and pick kernels: not measured
MEASURED_STEPS = 5  # then the plan is made from this many steps
RECENT_STEPS = 20  # re-estimates read the speed of the last steps
REPLAN_CHANGE = 0.1  # a new estimate that differs by more than this fraction of the steps left
REPLAN_MIN_STEPS = 2  # (and by more than this many steps) replaces the plan
RESERVE = 0.05  # the plan ends this fraction of the budget before the deadline


def steps_that_fit(done: int, remaining_s: float, step_s: float, cap: int) -> int:
    """Total steps of a run that has made ``done`` steps, has ``remaining_s`` seconds left and
    makes a step in ``step_s`` seconds; at most ``cap``, at least one more than ``done``."""
    more = int(max(0.0, remaining_s) / step_s) if step_s > 0 else cap
    return max(done + 1, min(cap, done + more))


class StepPlan:
    """The planned total steps of a run. Without a time budget it is ``max_steps``; with one,
    ``max_steps`` is an upper bound and ``observe`` (after every step) re-plans from the speed."""

    def __init__(self, max_steps: int, budget_s: float | None, planned: int | None = None):
        self.max_steps = max_steps
        self.budget_s = budget_s
        self.total = min(planned or max_steps, max_steps)
        self.estimated = False  # the plan follows a measured speed
        self._recent: deque[float] = deque(maxlen=RECENT_STEPS)
        self._seen = 0  # steps observed in this process (a resumed run measures again)
        self.changes = 0  # times the estimate replaced the plan

    def observe(self, step: int, step_s: float, overhead_s: float, remaining_s: float) -> bool:
        """One step done (``step`` steps in all) in ``step_s`` seconds of training; ``overhead_s``:
        evaluation and checkpoint time per step so far; ``remaining_s``: seconds left. True when
        the plan changed."""
        if self.budget_s is None:
            return False
        self._seen += 1
        if self._seen <= WARM_STEPS:
            return False
        self._recent.append(step_s)
        if len(self._recent) < MEASURED_STEPS:
            return False
        speed = sum(self._recent) / len(self._recent) + overhead_s
        estimate = steps_that_fit(step, remaining_s - RESERVE * self.budget_s, speed, self.max_steps)
        allowed = max(REPLAN_MIN_STEPS, REPLAN_CHANGE * (self.total - step))
        if self.estimated and abs(estimate - self.total) <= allowed:
            return False
        if estimate == self.total:
            self.estimated = True
            return False
        self.changes += self.estimated
        self.total, self.estimated = estimate, True
        return True

    def eta_s(self, step: int) -> float | None:
        """Seconds until the planned last step at the recent speed (None before any is measured)."""
        if not self._recent:
            return None
        return (self.total - step) * sum(self._recent) / len(self._recent)
