"""Dynamic batching: the items of concurrent requests run in one forward pass.

Requests wait in groups of requests that can share a pass -- the same endpoint and options, and
the same length bucket (the longest text's length in characters, by powers of two, so that short
texts are not padded to long ones). The scheduler takes the group whose first request came
first, waits until it holds ``max_batch`` texts or that request has waited ``max_wait_ms``, and
runs up to ``max_batch`` texts of whole requests in the model's thread (one at a time: the model
is not shared between threads). Meanwhile new requests queue up for the next pass. A request with
more texts than ``max_batch`` runs alone. When a merged pass fails, its requests are run one by
one, so that only the request at fault gets the error.

Generation batches continuously where the model decodes with a KV cache (decoders: gpt2, gpt1
presets; ``generation.continuous``) and the request does not ask for beam search: a second loop
keeps one running batch of up to ``max_batch`` rows (one per prompt) and runs it a decoding step
at a time in the model's thread, between the passes of other endpoints. Before each step, waiting
requests join (first come, first served, whole requests while there are free rows; each prompt is
prefilled on its own and placed at the shared write position of the cache, with no wait for
others: ``max_wait_ms`` does not apply); each row decodes with its own request's options; after
the step, rows that ended leave at once and their request is answered when all its prompts have
ended. A request whose client is gone (timeout, closed stream) leaves at the next step. A request
that fails to join (its prompt too long) gets the error alone. Beam search, and models without a
KV cache (encoder-decoders, Transformer-XL, LSTMs, UniLM), or ``--no-continuous``, keep the
whole-batch path: requests that arrive together with the same options are one left-padded batch
from the first decoding step to the last.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..generation.decoding import GenerationOptions
from ..predictions import Predictor, Request
from .metrics import Metrics


def length_bucket(chars: int) -> int:
    """0 for up to 64 characters, then one bucket per doubling."""
    return max(0, (max(chars, 1) - 1) // 64).bit_length()


@dataclass(eq=False)  # hashable by identity: the key of its rows in the running batch
class Pending:
    request: Request
    future: asyncio.Future
    on_text: Callable[[int, str], None] | None = None  # called in the model's thread
    arrived: float = field(default_factory=time.monotonic)

    def settle(self, outcome) -> None:
        """Answer the request with its records or an exception (unless it was given up on)."""
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class Batcher:
    def __init__(self, predictor: Predictor, metrics: Metrics, max_batch: int, max_wait_ms: float,
                 continuous: bool = True):
        self.predictor, self.metrics = predictor, metrics
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.groups: OrderedDict[tuple, list[Pending]] = OrderedDict()
        self.wake = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptmzoo-model")
        self.tasks: list[asyncio.Task] = []
        self.decoder = predictor.continuous_batch(max_batch) if continuous else None  # the running generation batch
        self.joining: list[Pending] = []  # generate requests waiting for rows of the running batch
        self.decoding: set[Pending] = set()  # requests with rows in it
        self.decode_wake = asyncio.Event()
        self.lock = threading.Lock()
        self.passes_waiting = 0  # passes of other endpoints given to the model's thread, not done yet

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.schedule())]
        if self.decoder is not None:
            self.tasks.append(loop.create_task(self.decode()))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    async def submit(self, request: Request, on_text: Callable[[int, str], None] | None = None) -> list[dict]:
        pending = Pending(request, asyncio.get_running_loop().create_future(), on_text)
        if self.decoder is not None and self.predictor.joins_continuously(request):
            with self.lock:
                self.joining.append(pending)
            self.decode_wake.set()
        else:
            self.groups.setdefault((request.key, length_bucket(request.chars)), []).append(pending)
            self.wake.set()
        return await pending.future

    # ---- continuous batching of generation ------------------------------------------------------------
    def _joiners(self) -> list[Pending]:
        """Waiting requests that fit in the free rows (first come first; a request with more prompts
        than ``max_batch`` joins an empty batch)."""
        with self.lock:  # submit appends on the event loop; this runs in the model's thread
            self.joining = [p for p in self.joining if not p.future.done()]
            free, taken = self.max_batch - len(self.decoder), []
            for pending in self.joining:
                size = len(pending.request.items)
                if size > free and (taken or len(self.decoder)):
                    break
                taken.append(pending)
                free -= size
            del self.joining[: len(taken)]
        return taken

    async def decode(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.joining and not len(self.decoder):
                await self.decode_wake.wait()
                self.decode_wake.clear()
                continue
            try:
                await loop.run_in_executor(self.executor, self.decode_steps, loop)
            except Exception as exc:  # noqa: BLE001 -- a bug in a step: fail its requests, start afresh
                for pending in self.decoding:
                    pending.settle(exc)
                self.decoding.clear()
                self.decoder = self.predictor.continuous_batch(self.max_batch)

    def decode_steps(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the model's thread: decoding steps, joiners let in before each, answers sent as their
        requests end, until the batch is empty or another endpoint's pass waits for the thread.
        (Staying here between steps spares a round trip through the event loop per token.)"""
        while True:
            joiners = self._joiners()
            if not joiners and not len(self.decoder):
                return
            for pending, outcome in self.decode_step(joiners):
                loop.call_soon_threadsafe(pending.settle, outcome)
            if self.groups or self.passes_waiting:
                return

    def decode_step(self, joiners: list[Pending]) -> list[tuple[Pending, list[dict] | BaseException]]:
        """In the model's thread: free the rows of requests nobody waits for, let ``joiners`` in,
        run one decoding step; the answers of the requests that ended."""
        start, answers = time.perf_counter(), []
        for pending in [p for p in self.decoding if p.future.done()]:  # timed out, or the stream closed
            self.decoder.remove(pending)
            self.decoding.discard(pending)
        running = len(self.decoder) > 0
        for pending in joiners:
            if pending.future.done():
                continue
            try:
                self.decoder.add(pending, [item["text"] for item in pending.request.items],
                                 GenerationOptions(**pending.request.options), pending.on_text)
            except Exception as exc:  # noqa: BLE001 -- this request alone gets the error
                answers.append((pending, exc))
                continue
            self.decoding.add(pending)
            self.metrics.join(running)
        rows, compactions = len(self.decoder), self.decoder.compactions
        finished = self.decoder.step()
        self.metrics.batch("generate", rows, rows, time.perf_counter() - start)
        self.metrics.decoding(len(self.decoder), self.decoder.compactions - compactions)
        for pending, generation in finished.items():
            self.decoding.discard(pending)
            answers.append((pending, self.predictor.generation_outcome(generation).records))
        return answers

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
        self.passes_waiting += 1  # the decoding loop yields the model's thread to it
        try:
            outcomes: list = await loop.run_in_executor(self.executor, self.compute, taken)
        except Exception as exc:  # noqa: BLE001 -- find the request at fault: run them one by one
            outcomes = [exc] if len(taken) == 1 else []
            for pending in taken if len(taken) > 1 else ():
                try:
                    outcomes += await loop.run_in_executor(self.executor, self.compute, [pending])
                except Exception as alone:  # noqa: BLE001
                    outcomes.append(alone)
        finally:
            self.passes_waiting -= 1
        for pending, outcome in zip(taken, outcomes):
            pending.settle(outcome)

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
