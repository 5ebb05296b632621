"""The parallelism seam in one process: which blocks are layers, activation checkpointing, errors."""

import pytest
import torch

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.errors import UserError
from ptmzoo.train.distributed import DistEnv
from ptmzoo.train.parallel import Parallelism, layers_of
from ptmzoo.train.step import TrainingStep

TINY = {"vocab_size": 50, "hidden_size": 16, "num_layers": 3, "num_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 32, "hidden_dropout": 0.0, "attention_dropout": 0.0}


def test_layers_are_the_repeated_blocks_each_once():
    bert = build_model("bert", TINY)
    assert layers_of(bert.backbone) == list(bert.backbone.layers)
    t5 = build_model("t5", {**TINY, "head_dim": 8, "num_decoder_layers": 2})
    assert len(layers_of(t5.backbone)) == 5  # encoder and decoder blocks
    albert = build_model("albert", {**TINY, "embedding_size": 8})  # one layer shared by every position
    assert len(layers_of(albert.backbone)) == 1


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    def loss_and_grads(checkpointed: bool):
        torch.manual_seed(0)
        model = build_model("bert", TINY)
        model.add_head("mlm", HEADS["mlm"])
        step = Parallelism("none", DistEnv(), activation_checkpointing=checkpointed).wrap(TrainingStep(model), model)
        ids = torch.randint(5, 50, (2, 12))
        labels = torch.where(torch.rand(2, 12) < 0.3, ids, -100)
        out = step({"input_ids": ids, "attention_mask": torch.ones_like(ids), "mlm_labels": labels})
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain_loss, plain_grads = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    assert torch.equal(loss, plain_loss)
    assert len(grads) == len(plain_grads)
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_sharding_or_data_parallel_without_torchrun_is_a_clear_error():
    for mode in ("ddp", "fsdp"):
        with pytest.raises(UserError, match="launch with torchrun"):
            Parallelism(mode, DistEnv())
    with pytest.raises(UserError, match="one of auto, none, ddp, fsdp"):
        Parallelism("zero3", DistEnv())
