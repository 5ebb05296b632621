"""How many steps a run makes: ``train.max_steps``, or with ``train.max_minutes`` the steps
that fit the time budget, estimated from the measured speed of the run's first steps and
re-estimated when the speed changes a lot. The learning-rate schedule (warmup and decay), the
progress total and the ETA follow the planned number, so the rate has decayed when the time is up.

The speed is that of training steps plus the time evaluations and checkpoints took so far, spread
over the steps made; the plan ends 5% of the budget before the deadline, so the last step
finishes inside it.
"""

from __future__ import annotations

from collections import deque

WARM_STEPS = 3  # the first steps allocate memory and pick kernels: not measured
MEASURED_STEPS = 5  # then the plan is made from this many steps
SPEED_STEPS = 20  # the speed: the mean of the last steps, at least this many,
SPEED_WINDOW = 0.1  # and as many more as fit this fraction of the budget (noisy steps average out)
REPLAN_STEPS = 20  # a re-estimate comes at least this many steps after the last plan
REPLAN_ERROR = 0.05  # and replaces it when it would end this fraction of the budget off target
RESERVE = 0.05  # the plan ends this fraction of the budget before the deadline


def steps_that_fit(done: int, remaining_s: float, step_s: float, cap: int) -> int:
    """Total steps of a run that has made ``done`` steps, has ``remaining_s`` seconds left and
    makes a step in ``step_s`` seconds; at most ``cap``, at least one more than ``done``."""
    more = int(max(0.0, remaining_s) / step_s) if step_s > 0 else cap
    return max(done + 1, min(cap, done + more))


class StepPlan:
    """The planned total steps of a run. Without a time budget it is ``max_steps``; with one,
    ``max_steps`` is an upper bound and ``observe`` (after every step) plans from the speed: first
    after the warm and measured steps, then again whenever the recent speed would make the run
    end more than ``REPLAN_ERROR`` of the budget before or after its target."""

    def __init__(self, max_steps: int, budget_s: float | None, planned: int | None = None):
        self.max_steps = max_steps
        self.budget_s = budget_s
        self.total = min(planned or max_steps, max_steps)
        self.estimated = False  # the plan follows a measured speed
        self._recent: deque[float] = deque()  # seconds of the last steps (SPEED_STEPS, SPEED_WINDOW)
        self._recent_s = 0.0
        self._seen = 0  # steps observed in this process (a resumed run measures again)
        self._since_plan = 0
        self.changes = 0  # times a re-estimate replaced the plan

    def speed(self) -> float | None:
        """Seconds per step lately (None before any is measured)."""
        return self._recent_s / len(self._recent) if self._recent else None

    def _measure(self, seconds: float) -> None:
        self._recent.append(seconds)
        self._recent_s += seconds
        window = SPEED_WINDOW * (self.budget_s or 0.0)
        while len(self._recent) > SPEED_STEPS and self._recent_s - self._recent[0] >= window:
            self._recent_s -= self._recent.popleft()

    def observe(self, step: int, step_s: float, overhead_s: float, remaining_s: float) -> bool:
        """One step done (``step`` steps in all) in ``step_s`` seconds of training; ``overhead_s``:
        evaluation and checkpoint time per step so far; ``remaining_s``: seconds left. True when
        the plan changed."""
        if self.budget_s is None:
            return False
        self._seen += 1
        if self._seen <= WARM_STEPS:
            return False
        self._measure(step_s + overhead_s)
        self._since_plan += 1
        first = self._seen == WARM_STEPS + MEASURED_STEPS  # in this process: a resumed run plans anew
        if not first and (not self.estimated or self._since_plan < REPLAN_STEPS):
            return False
        speed = self.speed()
        target_s = remaining_s - RESERVE * self.budget_s
        if self.estimated and abs((self.total - step) * speed - target_s) <= REPLAN_ERROR * self.budget_s:
            return False
        estimate = steps_that_fit(step, target_s, speed, self.max_steps)
        self._since_plan = 0
        self.changes += self.estimated
        changed = estimate != self.total
        self.total, self.estimated = estimate, True
        return changed

    def eta_s(self, step: int) -> float | None:
        """Seconds until the planned last step at the recent speed (None before any is measured)."""
        speed = self.speed()
        return None if speed is None else (self.total - step) * speed
