import dataclasses

import pytest

from ptmzoo.config import Config, TrainConfig, apply_overrides
from ptmzoo.errors import UserError
from ptmzoo.models import BertConfig


def test_unknown_key_is_rejected_with_suggestion():
    with pytest.raises(UserError, match=r"unknown key 'train.lrr'.*did you mean 'lr'"):
        TrainConfig.from_dict({"lrr": 1e-3}, where="train.")


def test_values_are_coerced_to_declared_types():
    cfg = TrainConfig.from_dict({"lr": "3e-4", "max_steps": 10.0, "compile": "true", "micro_batch_size": None})
    assert cfg.lr == pytest.approx(3e-4) and cfg.max_steps == 10 and cfg.compile is True
    with pytest.raises(UserError, match="expected an integer"):
        TrainConfig.from_dict({"max_steps": "ten"})
    with pytest.raises(UserError, match="not one of"):
        TrainConfig.from_dict({"schedule": "exponential"})


def test_cross_field_validation():
    with pytest.raises(UserError, match="divisible"):
        BertConfig.from_dict({"hidden_size": 100, "num_heads": 3})


def test_overrides_set_nested_values_parsed_as_yaml():
    data = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=5e-5", "model.num_layers=4", "objectives.mlm.dynamic=false"])
    assert data == {"train": {"lr": "5e-5"}, "model": {"num_layers": 4}, "objectives": {"mlm": {"dynamic": False}}}
    assert TrainConfig.from_dict(data["train"]).lr == pytest.approx(5e-5)
    with pytest.raises(UserError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_round_trip_through_dict():
    @dataclasses.dataclass
    class Outer(Config):
        train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
        name: str = "x"

    outer = Outer.from_dict({"train": {"batch_size": 8}, "name": "y"})
    assert Outer.from_dict(outer.to_dict()) == outer
