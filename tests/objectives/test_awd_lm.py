"""AWD-LSTM's language modelling: variable BPTT lengths over a stream, AR/TAR, the LSTM state carried
across batches (and through an exact resume)."""

import os

import numpy as np
import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.data.sampling import StepSampler
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.data.stream import StreamSegments, VariableLengths
from ptmzoo.objectives import PretrainCollator
from ptmzoo.objectives.awd import AwdLM, AwdOptions
from tests.train.stream_helpers import train_on_stream

TINY = {"vocab_size": 3000, "hidden_size": 16, "lstm_size": 24, "num_layers": 2}


def test_bptt_lengths_follow_the_paper_and_cover_every_epoch_in_the_same_steps():
    lengths = VariableLengths(seed=3)
    epochs = [np.diff(lengths.boundaries(70, 2000, epoch)) for epoch in range(3)]
    for drawn in epochs:
        assert drawn.sum() == 70 * 2000 and drawn.min() >= 5
        short = (drawn < 52).mean()  # N(35, 5) draws, scaled by ~1.03
        assert 0.03 < short < 0.07
        assert 8 > drawn[drawn >= 52].std() > 3
    assert not np.array_equal(epochs[0], epochs[1])  # cut at other places every epoch
    assert np.array_equal(epochs[0], np.diff(VariableLengths(seed=3).boundaries(70, 2000, 0)))  # a function of the seed
    fixed = VariableLengths(seed=3, short_probability=0.0, std=0.0)
    assert set(np.diff(fixed.boundaries(70, 50, 0)).tolist()) == {70}


def test_variable_segments_continue_each_row_and_share_a_length_per_step(wiki_shards):
    split = ShardedCorpus(wiki_shards).split("train")
    data = StreamSegments(split, 16, 4, separator_id=0, lengths=VariableLengths(seed=1, std=4.0, min_length=3))
    sampler = StepSampler(len(data), 4, 4, shuffle=False, max_steps=2 * data.segments + 3)
    previous, lengths = {}, set()
    for step, keys in enumerate(sampler):
        samples = [data[key] for key in keys]
        assert len({len(s["input_ids"]) for s in samples}) == 1  # one length per step: a rectangular batch
        lengths.add(len(samples[0]["input_ids"]))
        for sample in samples:
            row = sample["stream_row"]
            assert sample["stream_segment"] == step % data.segments
            if row in previous and sample["stream_segment"] > 0:
                assert sample["input_ids"][0] == previous[row]["target_ids"][-1]
            previous[row] = sample
    assert len(lengths) > 5


def awd_model():
    torch.manual_seed(0)
    return build_model("awd_lstm", TINY)


def stream_batch(data, step, objective):
    collate = PretrainCollator([objective], 0)
    return collate([data[(step * data.rows + row, 0)] for row in range(data.rows)])


def test_ar_and_tar_are_the_papers_terms(wiki_shards):
    data = StreamSegments(ShardedCorpus(wiki_shards).split("train"), 12, 3, separator_id=0)
    objective = AwdLM(AwdOptions(alpha=2.0, beta=1.0), None)
    model = awd_model()
    objective.attach(model)
    batch = stream_batch(data, 0, objective)
    torch.manual_seed(5)
    out = objective.step(model, batch)
    torch.manual_seed(5)  # the same dropout masks
    backbone = model.backbone(batch["input_ids"], output_hidden_states=True)
    dropped, raw = backbone.last_hidden_state, backbone.hidden_states[-1]
    counts = objective.count_targets(batch)
    torch.testing.assert_close(out.loss_sums["ar"] / counts["ar"], 2.0 * dropped.pow(2).mean())
    torch.testing.assert_close(out.loss_sums["tar"] / counts["tar"], 1.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean())
    logits = model.heads["awd_lm"].decoder(dropped)
    lm = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["target_ids"].flatten())
    torch.testing.assert_close(out.loss_sums["awd_lm"] / counts["awd_lm"], lm)  # every position, the last too
    torch.testing.assert_close(out.loss, sum(out.loss_sums[n] / counts[n] for n in ("awd_lm", "ar", "tar")))
    model.eval()
    assert set(objective.step(model, batch).loss_sums) == {"awd_lm"}  # regularisers: training only


def test_the_state_is_carried_across_batches_and_reset_at_the_start_of_the_stream(wiki_shards):
    data = StreamSegments(ShardedCorpus(wiki_shards).split("train"), 10, 2, separator_id=0)
    objective = AwdLM(AwdOptions(), None)
    model = awd_model().eval()  # no dropout: deterministic
    objective.attach(model)
    first, second = stream_batch(data, 0, objective), stream_batch(data, 1, objective)
    objective.step(model, first)
    carried = objective.step(model, second).last_hidden_state
    joined = torch.cat([first["input_ids"], second["input_ids"]], 1)
    whole = model.backbone(joined).last_hidden_state[:, 10:]
    torch.testing.assert_close(carried, whole)  # as if the two segments were one
    fresh = model.backbone(second["input_ids"]).last_hidden_state
    assert not torch.allclose(carried, fresh)
    assert not objective.state_dict()  # evaluation keeps its own state: the training state is untouched
    restart = objective.step(model, first).last_hidden_state  # segment 0 again: from zeros
    torch.testing.assert_close(restart, model.backbone(first["input_ids"]).last_hidden_state)
    model.train()
    objective.step(model, first)
    state = objective.state_dict()
    assert set(state) == {"h0", "c0", "h1", "c1"} and state["h0"].shape == (2, 24)


def run(shards, out, max_steps, save_every, resume=None):
    model = awd_model()
    objective = AwdLM(AwdOptions(), None, seed=4)
    objective.attach(model)
    data = StreamSegments(ShardedCorpus(shards).split("train"), 12, 4, separator_id=0,
                          **objective.sample_options())
    return train_on_stream(model, objective, data, out, max_steps, save_every, resume), objective


def test_a_resumed_run_continues_with_the_carried_state_exactly(wiki_shards, tmp_path):
    whole, objective = run(wiki_shards, str(tmp_path / "whole"), 6, 3)
    first, _ = run(wiki_shards, str(tmp_path / "part"), 3, 3)
    checkpoint = str(tmp_path / "part" / "checkpoints" / "step_00000003")
    rest, resumed = run(wiki_shards, str(tmp_path / "rest"), 6, 3, resume=checkpoint)
    assert first == pytest.approx(whole[:3], rel=1e-6)
    assert rest == pytest.approx(whole[3:], rel=1e-6)
    for key, value in objective.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)
    os.remove(os.path.join(checkpoint, "trainer_state", "objectives_rank0.safetensors"))
    forgot, _ = run(wiki_shards, str(tmp_path / "forgot"), 6, 3, resume=checkpoint)
    assert forgot != pytest.approx(whole[3:], rel=1e-6)  # the state matters: losing it shows
