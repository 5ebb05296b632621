"""Dynamic batching: the items of concurrent requests run in one forward pass.

Requests wait in groups of requests that can share a pass -- the same endpoint and options, and
the same length bucket (the longest text's length in characters, by powers of two, so that short
texts are not padded to long ones). The scheduler takes the group whose first request came
first, waits until it holds ``max_batch`` texts or that request has waited ``max_wait_ms``, and
runs up to ``max_batch`` texts of whole requests in the model's thread (one at a time: the model
is not shared between threads). Meanwhile new requests queue up for the next pass. A request with
more texts than ``max_batch`` runs alone. When a merged pass fails, its requests are run one by
one, so that only the request at fault gets the error.

Generation is batched the same way: requests that arrive together (with the same options) are one
left-padded batch from the first decoding step to the last; a request does not join a batch that
is already decoding (no continuous batching).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..predictions import Predictor, Request
from .metrics import Metrics


def length_bucket(chars: int) -> int:
    """0 for up to 64 characters, then one bucket per doubling."""
    return max(0, (max(chars, 1) - 1) // 64).bit_length()


@dataclass
class Pending:
    request: Request
    future: asyncio.Future
    on_text: Callable[[int, str], None] | None = None  # called in the model's thread
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, predictor: Predictor, metrics: Metrics, max_batch: int, max_wait_ms: float):
        self.predictor, self.metrics = predictor, metrics
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.groups: OrderedDict[tuple, list[Pending]] = OrderedDict()
        self.wake = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptmzoo-model")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.schedule())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, request: Request, on_text: Callable[[int, str], None] | None = None) -> list[dict]:
        pending = Pending(request, asyncio.get_running_loop().create_future(), on_text)
        self.groups.setdefault((request.key, length_bucket(request.chars)), []).append(pending)
        self.wake.set()
        return await pending.future

    # ---- the scheduler -----------------------------------------------------------------------------
    def _live(self, key) -> list[Pending]:
        """The group's requests nobody gave up on (a timed-out request's future is cancelled)."""
        group = [p for p in self.groups.get(key, []) if not p.future.done()]
        if group:
            self.groups[key] = group
        else:
            self.groups.pop(key, None)
        return group

    async def schedule(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.groups:
                key = min(self.groups, key=lambda k: self.groups[k][0].arrived)
                group = self._live(key)
                if not group:
                    continue
                deadline = group[0].arrived + self.max_wait
                while sum(len(p.request.items) for p in group) < self.max_batch and time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(self.wake.wait(), deadline - time.monotonic())
                    except TimeoutError:
                        pass
                    self.wake.clear()
                    group = self._live(key)
                    if not group:
                        break
                if not group:
                    continue
                taken, size = [], 0
                for pending in group:
                    if taken and size + len(pending.request.items) > self.max_batch:
                        break
                    taken.append(pending)
                    size += len(pending.request.items)
                self.groups[key] = group[len(taken):]
                if not self.groups[key]:
                    del self.groups[key]
                await self.run(taken)

    async def run(self, taken: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes: list = await loop.run_in_executor(self.executor, self.compute, taken)
        except Exception as exc:  # noqa: BLE001 -- find the request at fault: run them one by one
            outcomes = [exc] if len(taken) == 1 else []
            for pending in taken if len(taken) > 1 else ():
                try:
                    outcomes += await loop.run_in_executor(self.executor, self.compute, [pending])
                except Exception as alone:  # noqa: BLE001
                    outcomes.append(alone)
        for pending, outcome in zip(taken, outcomes):
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    def compute(self, taken: list[Pending]) -> list[list[dict]]:
        """One forward pass over the items of ``taken`` (in the model's thread); the records of each."""
        first = taken[0].request
        items = [item for p in taken for item in p.request.items]
        owners = [(p, i) for p in taken for i in range(len(p.request.items))]

        def on_text(index: int, piece: str) -> None:
            pending, local = owners[index]
            if pending.on_text is not None:
                pending.on_text(local, piece)

        streaming = any(p.on_text is not None for p in taken)
        start = time.perf_counter()
        outcome = self.predictor.run(Request(first.endpoint, items, first.options), on_text if streaming else None)
        self.metrics.batch(first.endpoint, len(items), outcome.tokens, time.perf_counter() - start)
        results, at = [], 0
        for pending in taken:
            results.append(outcome.records[at : at + len(pending.request.items)])
            at += len(pending.request.items)
        return results
