"""Transfer strategies: trainable sets, LoRA/adapter equivalences, layer mixing, ULMFiT pieces,
partial checkpoints."""

import pytest
import torch

import ptmzoo.tasks  # noqa: F401  (registers the classification head)
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.config import TrainConfig
from ptmzoo.finetune.lora import LoRALinear, merge_lora
from ptmzoo.finetune.strategies import (
    LayerMixHead,
    Strategy,
    StrategyConfig,
    export_merged,
    layer_groups,
)
from ptmzoo.loading import load
from ptmzoo.models.model import PtmModel
from ptmzoo.train.optim import build_optimizer, lr_factor, slanted_triangular

SMALL = {"vocab_size": 120, "hidden_size": 32, "num_layers": 3, "num_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 64}


def tiny_model(family="bert", seed=0) -> PtmModel:
    torch.manual_seed(seed)
    model = PtmModel(family, build_backbone(family, SMALL))
    model.add_head("classification", HEADS["classification"], num_labels=3,
                   pooling="last" if family == "gpt2" else "cls")
    return model


def apply(model, **options) -> Strategy:
    return Strategy(model, StrategyConfig.from_dict(options))


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}


def train_steps(model, steps=3, **train):
    """A few AdamW steps as the Trainer takes them (weight decay on, so frozen means not in the optimizer)."""
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1, **train), torch.device("cpu"))
    model.train()
    for _ in range(steps):
        b = batch()
        model(b["input_ids"], b["attention_mask"], targets=b).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def logits(model, b=None):
    model.eval()
    b = b or batch()
    with torch.no_grad():
        return model(b["input_ids"], b["attention_mask"]).logits


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize("method", ["full", "frozen", "adapters", "lora"])
def test_trainable_set_and_frozen_really_frozen(family, method):
    model = tiny_model(family)
    strategy = apply(model, method=method, lora_targets=["qkv", "out", "up", "down"])
    names = set(strategy.trainable)
    heads = {n for n, _ in model.named_parameters() if n.startswith("heads.")}
    backbone = {n for n, _ in model.named_parameters() if n.startswith("backbone.")}
    assert heads <= names
    if method == "full":
        assert names == heads | backbone
    elif method == "frozen":
        assert names == heads
    elif method == "adapters":
        assert {n for n in names - heads if ".adapter." not in n} == {
            n for n in backbone if "norm" in n.split(".")[-2]}
        assert any(".adapter." in n for n in names)
    else:
        assert names - heads == {n for n in backbone if n.endswith(("lora_a", "lora_b"))}
        assert len(names - heads) == 2 * 4 * SMALL["num_layers"]
    assert strategy.counts()["trainable_parameters"] == sum(
        p.numel() for n, p in model.named_parameters() if n in names)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model)
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param)
        if name not in names:
            assert not changed, f"{name} is frozen but changed"
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in heads)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_lora_and_adapters_start_as_the_base_model(family):
    reference = logits(tiny_model(family))
    for method in ("lora", "adapters"):
        model = tiny_model(family)
        apply(model, method=method, lora_dropout=0.1)
        torch.testing.assert_close(logits(model), reference, atol=0, rtol=0)


def test_lora_merge_equals_unmerged_output():
    model = tiny_model("bert")
    base_keys = set(model.state_dict())
    apply(model, method="lora", lora_rank=4, lora_alpha=8, lora_targets=["qkv", "out", "up", "down"])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(std=0.05)  # as if trained
    unmerged = logits(model)
    b = batch()
    hidden = model(b["input_ids"], b["attention_mask"]).last_hidden_state
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == base_keys  # a normal checkpoint again
    torch.testing.assert_close(logits(model), unmerged, atol=1e-5, rtol=1e-5)
    merged_hidden = model(b["input_ids"], b["attention_mask"]).last_hidden_state
    torch.testing.assert_close(merged_hidden, hidden, atol=1e-5, rtol=1e-5)
    base_hidden = tiny_model("bert").eval()(b["input_ids"], b["attention_mask"]).last_hidden_state
    assert (hidden - base_hidden).abs().max() > 1e-2  # the update did something


@pytest.mark.parametrize("layers", ["sum", "concat", "scalar_mix"])
def test_layer_mix_head(layers):
    model = tiny_model("bert")
    strategy = apply(model, method="frozen", layers=layers, top_k=2)
    head = model.heads["classification"]
    assert isinstance(head, LayerMixHead) and head.pooling == "cls"
    hidden = SMALL["hidden_size"]
    assert head.inner.classifier.in_features == (2 * hidden if layers == "concat" else hidden)
    b = batch()
    states = model.backbone(b["input_ids"], b["attention_mask"], output_hidden_states=True).hidden_states
    from ptmzoo.models.base import BackboneOutput

    features = head.features(BackboneOutput(states[-1], None, states))
    if layers == "sum":
        torch.testing.assert_close(features, states[-1] + states[-2])
    elif layers == "concat":
        torch.testing.assert_close(features, torch.cat([states[-2], states[-1]], -1))
    else:
        assert head.count == SMALL["num_layers"] + 1  # embeddings + every layer
        with torch.no_grad():
            head.mix_logits.copy_(torch.randn(head.count))
        weights = head.mix_weights()
        assert float(weights.detach().sum()) == pytest.approx(1.0, abs=1e-6) and (weights > 0).all()
        assert {"heads.classification.mix_logits", "heads.classification.gamma"} <= set(strategy.trainable)
        mixed = head.gamma * sum(w * s for w, s in zip(weights, states))
        torch.testing.assert_close(head.features(BackboneOutput(states[-1], None, states)), mixed)
    train_steps(model, steps=1)  # trains end to end through the mixed features


def test_frozen_backbone_runs_without_dropout_while_the_head_trains():
    model = tiny_model("bert")
    assert model.backbone.config.hidden_dropout > 0
    apply(model, method="frozen")
    model.train()
    assert not any(m.training for m in model.backbone.modules())
    assert model.heads["classification"].training
    b = batch()
    first, second = (model.backbone(b["input_ids"], b["attention_mask"]).last_hidden_state for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # the same features every time
    full = tiny_model("bert")
    apply(full, method="full")
    full.train()
    assert full.backbone.training  # fine-tuning the backbone keeps its dropout


def test_discriminative_learning_rates_per_layer_group():
    model = tiny_model("bert")
    groups = layer_groups(model)
    assert len(groups) == SMALL["num_layers"] + 2  # embeddings, 3 layers, top (pooler + head)
    assert {id(p) for p in groups[0]} == {id(p) for p in model.backbone.embeddings.parameters()}
    assert {id(p) for p in model.heads.parameters()} <= {id(p) for p in groups[-1]}
    strategy = apply(model, discriminative_decay=2.6)
    kwargs = strategy.trainer_kwargs(lr=1e-3, weight_decay=0.01, steps_per_epoch=10)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"), kwargs["optimizer_groups"])
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())
    for depth, group in enumerate(reversed(groups)):
        assert [lr_of[id(p)] for p in group] == pytest.approx([1e-3 / 2.6 ** depth] * len(group))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # the logged rate is the top one
    decays = {g["weight_decay"] for g in optimizer.param_groups}
    assert decays == {0.0, 0.01}


def test_slanted_triangular_schedule():
    # ULMFiT, T = 100 steps, cut_frac 0.1, ratio 32: rise over 10 steps, decay over 90
    values = [slanted_triangular(t, 100, 0.1, 32) for t in (0, 5, 10, 55, 100)]
    assert values == pytest.approx([1 / 32, (1 + 0.5 * 31) / 32, 1.0, (1 + 0.5 * 31) / 32, 1 / 32])
    cfg = TrainConfig(max_steps=100, schedule="slanted_triangular", stlr_cut_frac=0.2, stlr_ratio=10,
                      warmup_steps=50)  # warmup is STLR's own rise
    assert lr_factor(20, cfg) == pytest.approx(1.0)
    assert lr_factor(0, cfg) == pytest.approx(0.1)


def test_gradual_unfreezing_opens_one_group_per_epoch_from_the_top():
    model = tiny_model("bert")
    strategy = apply(model, gradual_unfreezing=True)
    groups = layer_groups(model)
    hook = strategy.trainer_kwargs(lr=1e-3, weight_decay=0.0, steps_per_epoch=5)["before_step"]
    for epoch in range(len(groups) + 1):
        for step in (5 * epoch, 5 * epoch + 4):
            hook(step)
            open_ = [all(p.requires_grad for p in g) for g in groups]
            closed = [not any(p.requires_grad for p in g) for g in groups]
            n_open = min(epoch + 1, len(groups))
            assert open_[len(groups) - n_open:] == [True] * n_open
            assert closed[: len(groups) - n_open] == [True] * (len(groups) - n_open)


def test_gradual_unfreezing_keeps_frozen_params_fixed_and_adapter_method_in_force():
    model = tiny_model("bert")
    strategy = apply(model, method="adapters", gradual_unfreezing=True)
    kwargs = strategy.trainer_kwargs(lr=1e-2, weight_decay=0.1, steps_per_epoch=100)
    kwargs["before_step"](0)  # epoch 0: only the top group (pooler is frozen by the method; the head)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-2), torch.device("cpu"), kwargs["optimizer_groups"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    b = batch()
    model(b["input_ids"], b["attention_mask"], targets=b).loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(n.startswith("heads.") for n in changed)


def test_adapter_and_lora_runs_save_only_their_parameters_and_load_on_the_base(tmp_path):
    base_dir = str(tmp_path / "base")
    base = tiny_model("bert")
    save_pretrained(base_dir, base, None)
    for method, layers in (("adapters", "last"), ("lora", "last"), ("frozen", "scalar_mix")):
        model = tiny_model("bert", seed=3)  # a fresh head; the backbone comes from the base
        model.backbone.load_state_dict(base.backbone.state_dict())
        strategy = Strategy(model, StrategyConfig(method=method, layers=layers), base_dir)
        train_steps(model)
        out = str(tmp_path / method)
        strategy.trainer_kwargs(1e-3, 0.0, 10)["write_model"](out, model, None, {"task": {"name": "x"}})
        from safetensors.torch import load_file

        saved = load_file(f"{out}/adapter.safetensors")
        assert set(saved) == set(strategy.trainable)
        assert sum(t.numel() for t in saved.values()) == strategy.counts()["trainable_parameters"]
        loaded = load(out)
        assert loaded.task == {"name": "x"} and loaded.meta["delta"]["strategy"]["method"] == method
        torch.testing.assert_close(logits(loaded.model), logits(model), atol=0, rtol=0)
        if method == "lora":
            export_merged(loaded, str(tmp_path / "merged"))
            merged = load(str(tmp_path / "merged"))
            assert "delta" not in merged.meta
            assert not any(isinstance(m, LoRALinear) for m in merged.model.modules())
            torch.testing.assert_close(logits(merged.model), logits(model), atol=1e-5, rtol=1e-5)


def test_delta_checkpoint_without_its_base_is_a_clear_error(tmp_path):
    from ptmzoo.errors import UserError

    base_dir = str(tmp_path / "base")
    model = tiny_model("bert")
    save_pretrained(base_dir, model, None)
    strategy = Strategy(model, StrategyConfig(method="frozen"), base_dir)
    strategy.write_delta(str(tmp_path / "run"), model, None)
    import shutil

    shutil.rmtree(base_dir)
    with pytest.raises(UserError, match="not there"):
        load(str(tmp_path / "run"))


def test_strategy_config_errors():
    from ptmzoo.errors import UserError

    with pytest.raises(UserError):
        StrategyConfig.from_dict({"method": "prefix"})
    with pytest.raises(UserError, match="merge"):
        StrategyConfig.from_dict({"method": "adapters", "merge_lora": True})
    with pytest.raises(UserError, match="top_k"):
        apply(tiny_model("bert"), layers="sum", top_k=9)
    with pytest.raises(UserError, match="LoRA targets"):
        apply(tiny_model("bert"), method="lora", lora_targets=["query"])
