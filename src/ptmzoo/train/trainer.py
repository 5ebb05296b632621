"""The one Trainer, for pre-training and fine-tuning.

AdamW with warmup and linear/cosine decay, gradient accumulation, clipping, bf16 autocast (GPUs
and CPUs with native bf16), DDP under torchrun, optional torch.compile, periodic evaluation with
best-model selection, a progress bar or plain progress lines (loss, tokens/s, ETA), metrics as
JSONL and TensorBoard events (``runlog.RunLog``), atomic checkpoints and an exact resume. With a time budget (``train.max_minutes``) the
steps are planned from the measured speed (``budget.StepPlan``) and the schedule follows the plan.

Loss normalisation: each head returns the *sum* of its loss and its number of targets. Before
the backward passes of a step the target counts of all micro-batches on all processes are
summed, and every micro-batch's loss is divided by that global count. The gradient is then that
of the mean loss over the whole global batch -- identical for any split into micro-batches and
processes (up to float rounding), which is what makes 2-process DDP reproduce 1-process runs.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import write_model_files
from ..config import TrainConfig
from ..data.sampling import StepSampler, eval_batches
from ..errors import UserError
from ..io import atomic_directory, atomic_write_json, durable_rename
from ..models.model import unwrap
from ..nn.layout import use_standard_layout
from .budget import StepPlan
from .distributed import DistEnv
from .optim import build_optimizer, build_scheduler
from .parallel import Parallelism
from .precision import autocast_context, resolve_precision
from .progress import Progress, clock_text
from .resources import (
    collapse_warning,
    load_average,
    start_warning,
    use_config_threads,
    warn,
)
from .runlog import RunLog
from .state import (
    STATE_DIR,
    checkpoint_write_error,
    latest_checkpoint,
    load_rng_state,
    load_trainer_file,
    mark_latest,
    read_state,
    rng_file,
    save_rng_state,
    step_dir_name,
)
from .step import TrainingStep


class TrainingInterrupted(Exception):
    """Raised after a SIGINT/SIGTERM once the checkpoint for the current step is written."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


@dataclass
class TrainResult:
    step: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: str | None = None  # why training ended before max_steps ("time budget")


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        train_data,
        collate: Callable[[list], dict[str, torch.Tensor]],
        config: TrainConfig,
        out_dir: str,
        env: DistEnv,
        tokenizer=None,
        extra_meta: dict[str, Any] | None = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        select_metric: str | None = None,
        select_mode: str = "min",
        progress: bool = True,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        optimizer_groups: list[dict] | None = None,
        before_step: Callable[[int], None] | None = None,
        after_step: Callable[[int], None] | None = None,
        write_model: Callable[..., None] = write_model_files,
        patience: int | None = None,
        log_evaluations: bool = True,  # print each evaluation's metrics (also with progress off)
        objectives: list | None = None,
        shuffle: bool = True,
    ):
        """Fine-tuning strategies (finetune/strategies.py) use ``optimizer_groups`` (per-layer
        learning rates), ``before_step(step)`` (gradual unfreezing), ``write_model`` (save only
        adapter/LoRA parameters); ``after_step(step)`` runs after each optimizer step (pruning masks
        re-applied); ``patience``: stop after that many evaluations without a better
        ``select_metric`` (early stopping). ``objectives`` (pre-training) may run their own step
        and carry state across steps (``train.step.TrainingStep``); ``shuffle=False`` reads the
        samples in order (stream samples: each batch row continues the previous step's text)."""
        self.config = config
        self.env = env
        self.out_dir = out_dir
        self.train_data = train_data
        self.collate = collate
        self.tokenizer = tokenizer
        self.extra_meta = extra_meta or {}
        self.evaluate_fn = evaluate
        self.select_metric = select_metric
        self.select_mode = select_mode
        self.progress = progress
        self.log_evaluations = log_evaluations
        self.callbacks = callbacks or []
        self.before_step, self.write_model, self.patience = before_step, write_model, patience
        self.after_step = after_step
        self.checkpoint_dir = os.path.join(out_dir, "checkpoints")
        self.metrics = RunLog(out_dir, env.is_main, config.tensorboard)  # metrics.jsonl, tensorboard/

        if config.batch_size % env.world_size:
            raise UserError(f"train.batch_size ({config.batch_size}) must be divisible by the number of "
                            f"processes ({env.world_size})")
        self.micro_batch = config.micro_batch_size or config.batch_size // env.world_size
        self.model = unwrap(model).to(env.device)
        if config.layerdrop:
            if not self.model.backbone.supports_layerdrop:
                raise UserError(f"train.layerdrop: a {self.model.family} backbone has no LayerDrop; use a BERT- or "
                                "GPT-2-family model")
            self.model.backbone.layerdrop = config.layerdrop
        self.training_step = TrainingStep(self.model, objectives or []).to(env.device)
        self.shuffle = shuffle
        self.parallel = Parallelism(config.parallel, env, config.activation_checkpointing,
                                    skips_layers=config.layerdrop > 0)
        if self.parallel.sharded and (optimizer_groups is not None or before_step is not None):
            raise UserError("train.parallel=fsdp trains every weight at one learning rate; discriminative learning "
                            "rates and gradual unfreezing need train.parallel=ddp")
        # FSDP replaces the parameters by sharded ones: wrap first, then build the optimizer over them
        wrapped = self.parallel.wrap(self.training_step, self.model)
        self.optimizer = build_optimizer(self.model, config, env.device, optimizer_groups,
                                         fused=not self.parallel.sharded)
        budget_s = 60 * config.max_minutes if config.max_minutes else None
        self.plan = StepPlan(config.max_steps, budget_s)
        self.scheduler = build_scheduler(self.optimizer, config, lambda: self.plan.total)
        self.precision = resolve_precision(config.precision, env.device)
        self.autocast = autocast_context(self.precision, env.device)
        self.threads = use_config_threads(config.threads)
        self.clock: Callable[[], float] = time.time  # tests replace the clock and the load reading
        self.read_load: Callable[[], float | None] = load_average
        self._progress: Progress | None = None  # while train() runs
        self._plan_shown: int | None = None  # the planned steps last printed
        if config.compile:
            wrapped = torch.compile(wrapped)
        self.wrapped = wrapped
        self.step = 0
        self.samples_seen = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self._stop_signal: int | None = None
        self.resumed_from: str | None = None  # the checkpoint, once resume_from has restored it

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "world_size": self.env.world_size,
            "batch_size": self.config.batch_size,
            "max_steps": self.config.max_steps,
            "planned_steps": self.plan.total if self.plan.estimated else None,  # from a time budget
            "num_samples": len(self.train_data),
        }

    def save_checkpoint(self) -> str:
        """Write checkpoints/step_N atomically (all processes call this)."""
        name = step_dir_name(self.step)
        final = os.path.join(self.checkpoint_dir, name)
        tmp = os.path.join(self.checkpoint_dir, f".{name}.tmp")
        env = self.env
        try:
            if env.is_main:
                os.makedirs(os.path.join(tmp, STATE_DIR), exist_ok=True)
            env.barrier()
            save_rng_state(os.path.join(tmp, STATE_DIR, rng_file(env.rank)))
            carried = self.training_step.carried_state()  # objectives' memories, per process (its own rows)
            if carried:
                save_file({k: v.detach().contiguous().cpu() for k, v in carried.items()},
                          os.path.join(tmp, STATE_DIR, f"objectives_rank{env.rank}.safetensors"))
            self.parallel.save_weights(tmp, self.model)  # sharded runs: every process its shards
            self.parallel.save_optimizer(os.path.join(tmp, STATE_DIR), self.model, self.optimizer, self.scheduler)
            env.barrier()
            if env.is_main:
                write_model_files(tmp, self.model, self.tokenizer, {**self.extra_meta, "step": self.step},
                                  weights=not self.parallel.sharded)
                atomic_write_json(os.path.join(tmp, STATE_DIR, "state.json"), self._state())
                if os.path.exists(final):
                    shutil.rmtree(final)
                durable_rename(tmp, final)  # every file on disk before the name appears
                mark_latest(self.checkpoint_dir, name, self.config.keep_checkpoints)
        except (OSError, RuntimeError, SafetensorError) as exc:  # a full disk: torch says "unexpected pos"
            shutil.rmtree(tmp, ignore_errors=True)
            raise checkpoint_write_error(final, exc) from None
        env.barrier()
        return final

    def resume_from(self, checkpoint: str | bool) -> None:
        if checkpoint is True:
            found = latest_checkpoint(self.checkpoint_dir)
            if found is None:
                raise UserError(f"nothing to resume: no checkpoint in {self.checkpoint_dir}")
            checkpoint = found
        state = read_state(checkpoint)
        if state["num_samples"] != len(self.train_data):
            raise UserError(f"cannot resume from {checkpoint}: it was trained on {state['num_samples']} samples, "
                            f"this data has {len(self.train_data)}; use the same data and sequence length")
        if state["batch_size"] != self.config.batch_size:
            raise UserError(f"cannot resume from {checkpoint}: train.batch_size was {state['batch_size']}, "
                            f"now {self.config.batch_size}; keep the global batch size")
        self.parallel.load_weights(checkpoint, self.model)
        state_dir = os.path.join(checkpoint, STATE_DIR)
        self.parallel.load_optimizer(state_dir, self.model, self.optimizer, self.scheduler)
        if state["world_size"] == self.env.world_size:
            load_rng_state(state_dir, self.env.rank)
        elif self.env.is_main:  # each process's generator belongs to its rank: say that dropout differs
            print(f"note: {checkpoint} was written by {state['world_size']} processes, this run has "
                  f"{self.env.world_size}: the data continues where it stopped, the dropout masks differ", file=sys.stderr)
        carried_file = os.path.join(state_dir, f"objectives_rank{self.env.rank}.safetensors")
        if any(name.startswith("objectives_rank") for name in os.listdir(state_dir)):
            if state["world_size"] != self.env.world_size or not os.path.exists(carried_file):
                raise UserError(f"cannot resume from {checkpoint}: its objectives carry state per process, saved for "
                                f"{state['world_size']} process(es); resume with the same number of processes")
            self.training_step.load_carried_state(
                load_trainer_file(carried_file, lambda path: load_file(path, device=str(self.env.device))))
        self.step = state["step"]
        self.samples_seen = state["samples_seen"]
        self.tokens_seen = state["tokens_seen"]
        self.elapsed = state["elapsed"]
        self.best_metric = state.get("best_metric")
        self.best_step = state.get("best_step")
        self.metrics.truncate_after(self.step)
        self.resumed_from = checkpoint
        planned = state.get("planned_steps")
        if planned and state.get("max_steps") == self.config.max_steps:  # the schedule continues as planned
            self.plan.total, self.plan.estimated = min(planned, self.config.max_steps), True
        if self.env.is_main:
            print(f"resuming from step {self.step} ({checkpoint})", flush=True)

    def save_model(self, directory: str, extra: dict[str, Any] | None = None) -> None:
        """A model directory (best/, final/): whole weights, also from a sharded run (gathered)."""
        state = self.parallel.full_weights(self.model)  # every process takes part when sharded
        if self.env.is_main:
            with atomic_directory(directory) as tmp:
                meta = {**self.extra_meta, "step": self.step, **(extra or {})}
                if state is None:
                    self.write_model(tmp, self.model, self.tokenizer, meta)
                else:
                    write_model_files(tmp, self.model, self.tokenizer, meta, state=state)
        self.env.barrier()

    # ------------------------------------------------------------------ the loop
    def _micro_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        sampler = StepSampler(len(self.train_data), self.config.batch_size, self.micro_batch, self.env.rank,
                              self.env.world_size, self.config.seed, self.step, self.config.max_steps,
                              shuffle=self.shuffle)
        self.accumulation = sampler.accumulation
        # An own generator: creating a DataLoader iterator otherwise draws from the global torch
        # RNG, which would shift the dropout masks of a resumed run.
        loader = DataLoader(self.train_data, batch_sampler=sampler, collate_fn=self.collate,
                            num_workers=self.config.num_workers, pin_memory=self.env.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.config.seed))
        return iter(loader)

    def _install_signal_handlers(self):
        previous = {}

        def handler(signum, frame):
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        return previous

    def _out_of_patience(self) -> str | None:
        """Early stopping: the last ``patience`` evaluations found nothing better than the best."""
        if not self.patience or self.best_step is None:
            return None
        return "early stopping" if self.step - self.best_step >= self.patience * self.config.eval_every else None

    def _should_stop(self, deadline: float | None) -> str | None:
        flags = torch.tensor([float(self._stop_signal is not None),
                              float(deadline is not None and self.clock() >= deadline)])
        self.env.all_reduce_sum(flags)  # every process stops at the same step
        if flags[0] > 0:
            return "signal"
        if flags[1] > 0:
            return "time budget"
        return None

    def train(self, resume: str | bool | None = None) -> TrainResult:
        config, env = self.config, self.env
        use_standard_layout(self.model)  # a model that generated before keeps re-laid weights
        if resume:
            self.resume_from(resume)
        else:
            self.metrics.reset()
        if self.step >= self.plan.total:
            return TrainResult(self.step, best_metric=self.best_metric, best_step=self.best_step)
        if env.is_main and env.device.type == "cpu":
            message = start_warning(self.threads, self.read_load)
            if message:
                warn(message)
        batches = self._micro_batches()
        previous_handlers = self._install_signal_handlers()
        clock = self.clock
        deadline = clock() + self.plan.budget_s if self.plan.budget_s else None
        progress = Progress(self.plan.total, self.step, self.progress and env.is_main)
        self._progress = progress
        self.wrapped.train()
        window_tokens, window_start, window_train = 0, clock(), 0.0
        best_speed, collapse_warned = 0.0, False
        start_time = clock() - self.elapsed
        overhead, steps_here = 0.0, 0  # evaluation and checkpoint seconds, steps of this process
        result = TrainResult(self.step)
        try:
            while self.step < self.plan.total:
                if self.before_step is not None:
                    self.before_step(self.step)
                step_start = clock()
                record = self._train_step(batches)
                step_s = clock() - step_start
                self.step += 1
                steps_here += 1
                window_train += step_s
                self.elapsed = clock() - start_time
                window_tokens += record.pop("_tokens")
                if deadline is not None and self._replan(step_s, overhead / steps_here, deadline - clock()):
                    progress.set_total(self.plan.total)
                last = self.step >= self.plan.total
                logged = None
                if self.step % config.log_every == 0 or last:
                    now = clock()
                    record.update(step=self.step, lr=self.scheduler.get_last_lr()[0],
                                  tokens_per_s=window_tokens / max(now - window_start, 1e-9),
                                  tokens=self.tokens_seen, elapsed=round(self.elapsed, 3))
                    self.metrics.write(record)
                    logged = record
                    if window_train >= 1.0 and not collapse_warned:  # long enough windows to compare
                        speed = window_tokens / window_train
                        message = collapse_warning(self.step, speed, best_speed, self.read_load)
                        if message and env.is_main:
                            warn(message)
                        collapse_warned = message is not None
                        best_speed = max(best_speed, speed)
                    window_tokens, window_start, window_train = 0, now, 0.0
                    for callback in self.callbacks:
                        callback(self.step, record)
                progress.update(self.step, logged, self.plan.eta_s(self.step), last)
                busy = clock()
                if self.evaluate_fn is not None and (self.step % config.eval_every == 0 or last):
                    result.final_metrics = self.run_evaluation()
                stop = self._should_stop(deadline) or self._out_of_patience()
                if self.step % config.save_every == 0 or last or stop:
                    checkpoint = self.save_checkpoint()
                overhead += clock() - busy
                if stop == "signal":
                    raise TrainingInterrupted(self.step, checkpoint)
                if stop:
                    result.stopped_early = stop
                    if self.evaluate_fn is not None and self.step % config.eval_every != 0 and not last:
                        result.final_metrics = self.run_evaluation()
                    break
            if self.plan.estimated and self.step < config.max_steps and result.stopped_early is None:
                result.stopped_early = "time budget"  # the planned steps that fit it are done
        finally:
            progress.close()
            self.metrics.close()
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        result.step = self.step
        result.best_metric, result.best_step = self.best_metric, self.best_step
        return result

    def _replan(self, step_s: float, overhead_s: float, remaining_s: float) -> bool:
        """Re-plan the steps that fit the time budget (every process the same: the main process's
        plan is broadcast); True when the plan changed."""
        changed = self.plan.observe(self.step, step_s, overhead_s, remaining_s)
        if self.env.distributed:
            total = torch.tensor([float(self.plan.total if self.env.is_main else 0)], device=self.env.device)
            self.env.all_reduce_sum(total)
            changed = int(total.item()) != self.plan.total or changed
            self.plan.total = int(total.item())
            self.plan.estimated = self.plan.estimated or changed
        shown = self._plan_shown
        if changed and self.env.is_main and (shown is None or abs(self.plan.total - shown) >= 0.1 * shown):
            self._plan_shown = self.plan.total  # small corrections are not worth a line
            eta = self.plan.eta_s(self.step)
            what = "re-planned" if shown is not None else "planned"
            epochs = self.plan.total * self.config.batch_size / max(len(self.train_data), 1)
            self._progress.write(
                f"time budget: {what} {self.plan.total} steps = {epochs:.2f} epochs (from the speed so far; warmup "
                f"{self.config.warmup(self.plan.total)}, the schedule ends there), about {clock_text(eta or 0)} to go")
        return changed

    def _train_step(self, batches: Iterator[dict[str, torch.Tensor]]) -> dict[str, Any]:
        env = self.env
        micro = [to_device(next(batches), env.device) for _ in range(self.accumulation)]
        step = self.training_step
        names = list(step.count_targets(micro[0]))
        counts = torch.stack([sum(step.count_targets(mb)[n] for mb in micro).float() for n in names])
        counts = env.all_reduce_sum(counts.to(env.device)).clamp(min=1)
        sums = torch.zeros(len(names), device=env.device)
        tokens = 0
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            sync = self.parallel.gradient_sync(self.wrapped, last)
            with sync, self.autocast():
                out = self.wrapped(mb)
                parts = torch.stack([out.loss_sums[n].float() for n in names])
                loss = (parts / counts).sum() * env.world_size
            loss.backward()
            sums += parts.detach()
            tokens += self.model.count_tokens(mb)
        if self.config.max_grad_norm > 0:
            grad_norm = self.parallel.clip_grad_norm(self.model, self.config.max_grad_norm)
        else:
            grad_norm = float("nan")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_step is not None:
            self.after_step(self.step + 1)
        rows = sum(self.model.count_rows(mb) for mb in micro)
        stats = torch.cat([sums, torch.tensor([float(tokens), float(rows)], device=env.device)])
        env.all_reduce_sum(stats)
        per_head = (stats[: len(names)] / counts).tolist()
        self.tokens_seen += int(stats[-2])
        self.samples_seen += int(stats[-1])
        record: dict[str, Any] = {"loss": float(sum(per_head)), "grad_norm": grad_norm, "_tokens": int(stats[-2])}
        if len(names) > 1:
            record.update({f"loss_{n}": v for n, v in zip(names, per_head)})
        if not math.isfinite(record["loss"]):
            raise UserError(f"loss became {record['loss']} at step {self.step + 1}; lower train.lr or check the data")
        return record

    def run_evaluation(self) -> dict[str, float]:
        self.wrapped.eval()
        try:
            with torch.no_grad(), self.autocast():  # in the precision it trains in
                metrics = self.evaluate_fn(self.model)
        finally:
            self.wrapped.train()
        self.metrics.write({"step": self.step, **metrics, "tokens": self.tokens_seen})
        if self.env.is_main and self.log_evaluations:  # shown with --no-progress too
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            line = f"step {self.step}: {shown}"
            if self._progress is not None:
                self._progress.write(line)
            else:
                print(line, flush=True)
        if self.select_metric is not None and self.select_metric in metrics:
            value = metrics[self.select_metric]
            better = self.best_metric is None or (
                value > self.best_metric if self.select_mode == "max" else value < self.best_metric)
            if better:
                self.best_metric, self.best_step = value, self.step
                self.save_model(os.path.join(self.out_dir, "best"), {"metrics": metrics})
        return metrics


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset, collate, env: DistEnv, batch_size: int,
                  max_batches: int | None, precision: str = "auto", objectives: list | None = None) -> dict[str, float]:
    """Mean loss of each head (and objective) over (the first ``max_batches`` global batches of) a
    dataset, through the run's training step (``objectives``)."""
    autocast = autocast_context(precision, env.device)
    step = model if isinstance(model, TrainingStep) else TrainingStep(unwrap(model), objectives or [])
    names = step.loss_names()
    sums = torch.zeros(len(names), device=env.device)
    counts = torch.zeros(len(names), device=env.device)
    for keys in eval_batches(len(dataset), batch_size, env.rank, env.world_size, max_batches):
        batch = to_device(collate([dataset[k] for k in keys]), env.device)
        with autocast():
            out = step(batch)
        target_counts = step.count_targets(batch)
        for i, name in enumerate(names):
            if name in out.loss_sums:
                sums[i] += out.loss_sums[name].float()
                counts[i] += target_counts[name].float()
    env.all_reduce_sum(sums)  # every process reaches these, even one without batches
    env.all_reduce_sum(counts)
    present = [i for i in range(len(names)) if counts[i] > 0]
    if not present:
        return {}
    names = [names[i] for i in present]
    means = [float(sums[i] / counts[i]) for i in present]
    metrics = {"eval_loss": float(sum(means))}
    language_models = ({name for name, head in unwrap(step.model).heads.items() if head.perplexity}
                       | {name for objective in step.objectives for name in objective.perplexity_losses})
    for name, value in zip(names, means):
        if len(names) > 1:
            metrics[f"eval_loss_{name}"] = value
        if name in language_models:
            metrics["eval_ppl"] = float(math.exp(min(value, 50.0)))
    return metrics
