"""Good results by default (issue 19): threads, a time budget that shapes the run, warmup and
precision defaults, and logs a person and a file can both read."""

from __future__ import annotations

import json
import os

import pytest
import torch

from ptmzoo.config import TrainConfig
from ptmzoo.train import budget, precision, progress, resources
from ptmzoo.train.optim import lr_factor
from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe
from tests.conftest import TINY_PRETRAIN, run_main

TINY_MODEL = {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Each test starts with no --threads flag seen and gets torch's thread count back."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(resources, "_flag_threads", None)
    yield
    torch.set_num_threads(threads)


def _job(shards, **train):
    settings = {"batch_size": 4, "max_steps": 1000, "lr": 1e-3, "log_every": 5, "eval_every": 10**9,
                "save_every": 10**9, "seed": 0, "precision": "fp32"}
    settings.update(train)
    return PretrainJob(PretrainRecipe.from_dict({"preset": "bert-tiny", "data": {"shards": shards, "seq_len": 32},
                                                 "model": TINY_MODEL, "train": settings}))


class FakeTime:
    """A clock that moves only while a training step runs: ``seconds(step)`` per step."""

    def __init__(self, trainer, seconds):
        self.now = 1000.0
        trainer.clock = lambda: self.now
        original = trainer._train_step

        def timed_step(batches):
            record = original(batches)
            self.now += seconds(trainer.step + 1)
            return record

        trainer._train_step = timed_step


def _records(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


# ------------------------------------------------------------------------------------------ threads
def test_physical_cores_from_cpuinfo(tmp_path):
    # 2 sockets x 2 cores x 2 hyper-threads: 8 logical CPUs, 4 physical cores
    blocks = [f"processor\t: {4 * s + 2 * c + h}\nphysical id\t: {s}\ncore id\t\t: {c}\n"
              for s in range(2) for c in range(2) for h in range(2)]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks))
    assert resources._cpuinfo_cores(str(path)) == 4
    assert resources._cpuinfo_cores(str(tmp_path / "missing")) is None


def test_default_threads_share_the_physical_cores_among_torchrun_processes(monkeypatch):
    monkeypatch.setattr(resources, "physical_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resources.default_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's own setting: replaced
    assert resources.default_threads() == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resources.default_threads() is None  # the user's OMP_NUM_THREADS is kept


def test_threads_flag_on_any_verb_and_in_the_run(capsys, wiki_shards, tmp_path, monkeypatch):
    seen = []
    from ptmzoo.train.trainer import Trainer

    original = Trainer._train_step
    monkeypatch.setattr(Trainer, "_train_step", lambda self, b: (seen.append(torch.get_num_threads()),
                                                               original(self, b))[1])
    torch.set_num_threads(2)
    assert run_main(capsys, "--threads", "1", "zoo").returncode == 0  # before the verb ...
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    # ... or after it; and it wins over train.threads
    result = run_main(capsys, "pretrain", "--data", wiki_shards, "--out", str(tmp_path / "run"), "--steps", "2",
                      "--threads", "1", *TINY_PRETRAIN, "train.threads=2")
    assert result.returncode == 0, result.stderr
    assert seen == [1, 1]
    # before a verb with flags of its own (the value 1 is not taken for the verb)
    torch.set_num_threads(2)
    before = run_main(capsys, "--threads", "1", "pretrain", "--data", wiki_shards, "--out", str(tmp_path / "run2"),
                      "--steps", "2", *TINY_PRETRAIN)
    assert before.returncode == 0, before.stderr
    assert seen == [1, 1, 1, 1]
    assert "(fp32, 1 thread)" in result.stdout.splitlines()[0]
    bad = run_main(capsys, "zoo", "--threads", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --threads")


def test_train_threads_setting_is_honoured(wiki_shards, tmp_path):
    torch.set_num_threads(2)
    trainer = _job(wiki_shards, max_steps=2, threads=1).trainer(str(tmp_path), progress=False)
    seen = []
    trainer.callbacks.append(lambda step, record: seen.append(torch.get_num_threads()))
    trainer.config = trainer.config.replace(log_every=1)
    trainer.train()
    assert trainer.threads == 1 and seen == [1, 1]


def test_oversubscription_warning_at_start_and_when_throughput_collapses(wiki_shards, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTMZOO_LOAD_WARNING", "1")
    monkeypatch.setattr(resources, "physical_cores", lambda: 2)
    assert resources.oversubscription(2, 0.3, 2) is None  # idle
    assert resources.oversubscription(2, 0.9, 2) is None
    assert "load average 3.5 on 2 physical cores" in resources.oversubscription(2, 3.5, 2)
    assert resources.oversubscription(1, 1.5, 2) is None  # the spare core takes the other work

    def run(name, load, seconds):
        trainer = _job(wiki_shards, max_steps=40, threads=1).trainer(str(tmp_path / name), progress=False)
        trainer.read_load = lambda: load
        FakeTime(trainer, seconds)
        capsys.readouterr()
        trainer.train()
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]

    assert run("idle", 0.2, lambda step: 0.5) == []
    busy = run("busy", 4.0, lambda step: 0.5)
    assert len(busy) == 1 and "oversubscribed" in busy[0] and "load average 4.0" in busy[0]
    # steps 4x slower from step 21 on: the window after it is under a third of the best; one line
    collapsed = run("collapse", 0.2, lambda step: 0.5 if step <= 20 else 2.0)
    assert len(collapsed) == 1 and collapsed[0].startswith("warning: at step 25 ") and "under a third" in collapsed[0]
    monkeypatch.setenv("PTMZOO_LOAD_WARNING", "0")
    assert run("silenced", 4.0, lambda step: 0.5 if step <= 20 else 2.0) == []


# -------------------------------------------------------------------------------------- time budget
def test_time_budget_plans_the_steps_and_the_schedule_decays_by_the_deadline(wiki_shards, tmp_path, capsys):
    out = str(tmp_path / "run")
    trainer = _job(wiki_shards, max_minutes=1.0, log_every=1).trainer(out, progress=False)
    clock = FakeTime(trainer, lambda step: 1.0)  # 1 s per step, 60 s of budget
    etas = []
    trainer.callbacks.append(lambda step, record: etas.append((step, trainer.plan.eta_s(step))))
    result = trainer.train()
    # planned after 3 warm and 5 measured steps: 8 + (60 - 8 - 3 reserved) s / 1 s = 57 steps
    expected = budget.steps_that_fit(8, 49.0, 1.0, 1000)
    assert expected == 57
    assert trainer.plan.total == expected and result.step == expected and result.stopped_early == "time budget"
    assert clock.now - 1000.0 <= 60.0  # inside the budget
    # the scheduler's total is the plan: warmup 6% of 57 steps, then decay to zero at the last step
    config = trainer.config
    assert config.warmup(expected) == 3
    records = [r for r in _records(out) if "lr" in r]
    assert records[-1]["step"] == expected and records[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert records[9]["lr"] == pytest.approx(1e-3 * lr_factor(10, config, expected))
    assert records[30]["lr"] < 0.6e-3  # decaying: a 1000-step schedule would still be at the peak
    # the ETA: time left for the planned steps at the measured speed, never more than the budget left
    for step, eta in etas:
        if step >= 8:
            assert eta == pytest.approx(expected - step)
            assert eta <= 60.0 - step
    assert "time budget: planned 57 steps" in capsys.readouterr().out


def test_time_budget_replans_when_the_speed_changes(wiki_shards, tmp_path):
    trainer = _job(wiki_shards, max_minutes=1.0).trainer(str(tmp_path / "run"), progress=False)
    clock = FakeTime(trainer, lambda step: 0.5 if step <= 20 else 1.0)  # twice as slow from step 21
    result = trainer.train()
    # step 8 (4 s used, 3 s reserved): 8 + 53 / 0.5 = 114 steps planned. At step 28, the last 20 steps
    # took 0.7 s on average: the plan would end 21 s late, more than 5% of the budget (3 s) off:
    # 28 + 39 / 0.7 = 83. At step 48 (20 steps of 1 s): 48 + 19 / 1.0 = 67, and that holds.
    assert budget.steps_that_fit(8, 60.0 - 4.0 - 3.0, 0.5, 1000) == 114
    assert trainer.plan.changes == 2 and result.step == trainer.plan.total == 67
    assert clock.now - 1000.0 <= 60.0 and result.stopped_early == "time budget"
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_time_budget_keeps_max_steps_as_the_upper_bound():
    plan = budget.StepPlan(max_steps=30, budget_s=600.0)
    for step in range(1, 10):
        plan.observe(step, 0.1, 0.0, 600.0 - step * 0.1)
    assert plan.total == 30
    assert budget.steps_that_fit(10, -5.0, 1.0, 100) == 11  # past the deadline: the step under way
    unbudgeted = budget.StepPlan(max_steps=30, budget_s=None)
    assert not unbudgeted.observe(9, 5.0, 0.0, 0.0) and unbudgeted.total == 30


def test_warmup_is_on_by_default():
    assert TrainConfig(max_steps=1000).warmup() == 60
    assert TrainConfig(max_steps=1000, warmup_ratio=0.0).warmup() == 0
    assert TrainConfig(max_steps=1000, warmup_steps=7).warmup() == 7
    assert lr_factor(0, TrainConfig(max_steps=100)) == pytest.approx(1 / 6)


# ---------------------------------------------------------------------------------------- precision
def test_precision_auto_follows_the_cpu(monkeypatch, wiki_shards, tmp_path):
    cpu = torch.device("cpu")
    monkeypatch.delenv("PTMZOO_CPU_BF16", raising=False)
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    trainer = _job(wiki_shards, max_steps=1, precision="auto").trainer(str(tmp_path / "a"), progress=False)
    with trainer.autocast():
        assert trainer.precision == "fp32" and not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    trainer = _job(wiki_shards, max_steps=1, precision="auto").trainer(str(tmp_path / "b"), progress=False)
    with trainer.autocast():
        assert trainer.precision == "bf16" and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")


def test_the_cpu_detection_can_be_forced(monkeypatch):
    monkeypatch.setenv("PTMZOO_CPU_BF16", "1")
    assert precision.cpu_bf16_is_fast()
    monkeypatch.setenv("PTMZOO_CPU_BF16", "0")
    assert not precision.cpu_bf16_is_fast()
    from ptmzoo import demo

    assert demo.cpu_bf16_is_fast is precision.cpu_bf16_is_fast


@pytest.mark.slow
def test_bf16_auto_loss_curve_follows_float32(wiki_shards, tmp_path, monkeypatch):
    from tests.train.test_precision import MAX_MEAN_DIFF, MAX_STEP_DIFF, _loss_curve

    fp32 = _loss_curve(wiki_shards, "bert-tiny", "fp32", str(tmp_path / "fp32"))
    monkeypatch.setenv("PTMZOO_CPU_BF16", "1")  # a CPU with native bf16: auto is bf16
    auto = _loss_curve(wiki_shards, "bert-tiny", "auto", str(tmp_path / "auto"))
    diffs = [abs(a - b) for a, b in zip(fp32, auto)]
    assert len(diffs) == 100 and max(diffs) > 0  # really computed in bf16
    assert max(diffs) < MAX_STEP_DIFF and sum(diffs) / len(diffs) < MAX_MEAN_DIFF, (max(diffs), sum(diffs) / 100)


# --------------------------------------------------------------------------------------------- logs
def test_progress_off_a_terminal_is_plain_throttled_lines(capsys):
    now = [0.0]
    shown = progress.Progress(total=100, initial=0, enabled=True, mode=None, line_seconds=30.0, clock=lambda: now[0])
    assert shown.mode == "lines"  # pytest's captured streams are no terminal
    for step in range(1, 101):
        now[0] = step * 1.0
        record = {"loss": 5.0 - step / 100, "lr": 1e-4, "tokens_per_s": 1234.0, "elapsed": step * 1.0}
        shown.update(step, record if step % 10 == 0 else None, eta_s=100.0 - step, last=step == 100)
    shown.write("step 100: eval_loss=4.0000")
    shown.close()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "\r" not in captured.out + captured.err and captured.err == ""
    assert lines[0] == "step 10/100 (10%)  loss 4.9000  lr 0.0001  1234 tok/s  elapsed 0:00:10  eta 0:01:30"
    assert [line.split()[1] for line in lines[:-1]] == ["10/100", "40/100", "70/100", "100/100"]
    assert lines[-1] == "step 100: eval_loss=4.0000"


def test_pretrain_log_summary_evaluations_with_no_progress_and_resume(capsys, wiki_shards, tmp_path):
    out = str(tmp_path / "run")
    args = ["--data", wiki_shards, "--out", out, *TINY_PRETRAIN, "train.eval_every=2", "train.eval_batches=1"]
    first = run_main(capsys, "pretrain", "--steps", "4", *args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("pre-training bert-tiny (mlm,nsp): ") and " parameters on cpu (fp32, " in lines[0]
    job = PretrainJob(PretrainRecipe.from_dict({"preset": "bert-tiny", "data": {"shards": wiki_shards, "seq_len": 32},
                                                "model": TINY_MODEL}))
    parameters = sum(p.numel() for p in job.model.parameters())
    assert f"{parameters:,} parameters" in lines[0]
    epochs = 4 * 4 / len(job.train_data)
    assert lines[1] == (f"  4 sequences x 32 tokens = 128 tokens per step; 4 steps = {epochs:.2f} epochs over "
                        f"{len(job.train_data):,} training sequences; warmup 0, lr 0.0001 (linear)")
    # --no-progress: no progress lines, but the evaluations are shown
    assert [line.split(":")[0] for line in lines if line.startswith("step ")] == ["step 2", "step 4"]
    assert "eval_loss=" in lines[2] and not any("/4 (" in line for line in lines)
    resumed = run_main(capsys, "pretrain", "--steps", "6", "--resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert any(line.startswith("resuming from step 4 (") for line in resumed.stdout.splitlines())


def test_generate_says_why_it_stopped(capsys, tiny_gpt2):
    from ptmzoo.cli import _say_why_generation_stopped

    result = run_main(capsys, "generate", tiny_gpt2, "--prompt", "The", "--max-new-tokens", "3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "stopped: max tokens (3)\n" and result.stdout.startswith("The")
    _say_why_generation_stopped(["eos", "stop", "length"], 9)
    assert capsys.readouterr().err == "stopped: 1: end of text; 2: a stop string; 3: max tokens (9)\n"


def test_the_load_a_process_made_itself_is_not_taken_for_other_work(monkeypatch):
    """The demo runs one fine-tuning after another in one process: the load average that the
    previous run left is this process's own, not oversubscription."""
    from types import SimpleNamespace

    from ptmzoo.train import resources

    monkeypatch.setenv("PTMZOO_LOAD_WARNING", "1")
    monkeypatch.setattr(resources, "physical_cores", lambda: 2)
    monkeypatch.setattr(resources, "local_processes", lambda: 1)
    clock = {"wall": 1000.0, "cpu": 5.0}
    monkeypatch.setattr(resources, "time", SimpleNamespace(time=lambda: clock["wall"], process_time=lambda: clock["cpu"]))
    resources.own_load()  # the window starts now
    clock["wall"] += 60.0
    clock["cpu"] += 110.0  # the previous run kept ~2 cores busy for a minute
    assert resources.start_warning(2, lambda: 1.9) is None
    clock["wall"] += 60.0  # an idle minute: the same load is others' work
    assert "load average 1.9 on 2 physical cores" in resources.start_warning(2, lambda: 1.9)
