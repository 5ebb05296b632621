"""The Trainer: loss normalisation across micro-batches, exact resume, interruption."""

import json
import os

import pytest
import torch

from ptmzoo.config import TrainConfig
from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe
from tests.conftest import SimulatedCrash, crash_at


def _recipe(shards, out_steps=12, **train):
    settings = {"batch_size": 8, "max_steps": out_steps, "lr": 1e-3, "warmup_steps": 2, "log_every": 1,
                "eval_every": 6, "eval_batches": 2, "save_every": 4, "seed": 5}
    settings.update(train)
    return PretrainRecipe.from_dict({
        "preset": "bert-tiny", "data": {"shards": shards, "seq_len": 64},
        "model": {"num_layers": 1, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128},
        "train": settings,
    })


def _losses(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    return {r["step"]: r["loss"] for r in records if "loss" in r}, {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}


def test_micro_batches_give_the_same_gradient_as_one_batch(wiki_shards, tmp_path):
    """Loss normalisation by the step's global target count: accumulating 4 micro-batches of 2
    gives the gradient of one batch of 8 (compared before the optimizer touches it: Adam
    turns float-rounding noise in near-zero gradients into visible differences)."""
    no_dropout = {"hidden_dropout": 0.0, "attention_dropout": 0.0}
    results = []
    for micro in (8, 2):
        recipe = _recipe(wiki_shards, 3, micro_batch_size=micro, max_grad_norm=0)
        recipe = recipe.replace(model={**recipe.model, **no_dropout})
        job = PretrainJob(recipe)
        trainer = job.trainer(str(tmp_path / f"m{micro}"), progress=False)
        assert trainer.micro_batch == micro
        trainer.optimizer.step = lambda: None
        trainer.optimizer.zero_grad = lambda set_to_none=True: None
        batches = trainer._micro_batches()
        record = trainer._train_step(batches)
        grads = {n: p.grad.clone() for n, p in job.model.named_parameters() if p.grad is not None}
        results.append((record["loss"], grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert trainer.accumulation == 4
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-7, rtol=1e-4)


def test_interrupted_and_resumed_run_matches_uninterrupted_step_for_step(wiki_shards, tmp_path):
    # dropout stays on: the resumed run must restore the RNG state as well
    full = str(tmp_path / "full")
    PretrainJob(_recipe(wiki_shards)).trainer(full, progress=False).train()
    reference, reference_eval = _losses(full)
    assert sorted(reference) == list(range(1, 13))

    broken = str(tmp_path / "broken")
    with pytest.raises(SimulatedCrash):
        PretrainJob(_recipe(wiki_shards)).trainer(broken, progress=False, callbacks=[crash_at(7)]).train()
    assert sorted(os.listdir(os.path.join(broken, "checkpoints"))) == ["latest", "step_00000004"]
    # a fresh process state: the job is rebuilt from the recipe, weights come from the checkpoint
    torch.manual_seed(12345)
    PretrainJob(_recipe(wiki_shards)).trainer(broken, progress=False).train(resume=True)
    resumed, resumed_eval = _losses(broken)
    assert resumed == reference  # exactly, not approximately
    assert resumed_eval == reference_eval


def test_resume_refuses_a_different_batch_size(wiki_shards, tmp_path):
    from ptmzoo.errors import UserError

    out = str(tmp_path / "run")
    PretrainJob(_recipe(wiki_shards, 4)).trainer(out, progress=False).train()
    with pytest.raises(UserError, match="keep the global batch size"):
        PretrainJob(_recipe(wiki_shards, 8, batch_size=16)).trainer(out, progress=False).train(resume=True)


def test_time_budget_stops_cleanly_with_a_checkpoint(wiki_shards, tmp_path):
    out = str(tmp_path / "run")
    result = PretrainJob(_recipe(wiki_shards, 10_000, max_minutes=0.002)).trainer(out, progress=False).train()
    assert result.stopped_early == "time budget" and result.step < 10_000
    assert os.path.exists(os.path.join(out, "checkpoints", f"step_{result.step:08d}", "model.safetensors"))


def test_train_config_micro_batch_validation():
    from ptmzoo.errors import UserError

    with pytest.raises(UserError):
        TrainConfig.from_dict({"batch_size": 0})
