"""Pruning: magnitude masks are really zero and stay zero through training, head pruning changes
the shapes and equals gating those heads off, layers removed as whole; LayerDrop drops whole layers
and only in training; BERT-of-Theseus's replacement-rate schedule."""

import pytest
import torch

from ptmzoo.catalog import build_backbone, build_model
from ptmzoo.compress import prune as P
from ptmzoo.compress.masks import SparsityMasks
from ptmzoo.compress.theseus import ModuleReplacing, replacement_rate
from ptmzoo.config import TrainConfig
from ptmzoo.errors import UserError
from ptmzoo.tasks.classification import ClassificationHead

SMALL = {"vocab_size": 60, "hidden_size": 32, "num_layers": 4, "num_heads": 4, "intermediate_size": 64,
         "max_position_embeddings": 32, "hidden_dropout": 0.0, "attention_dropout": 0.0}


def classifier(seed=0, **config):
    torch.manual_seed(seed)
    model = build_model("bert", {**SMALL, **config})
    model.add_head("classification", ClassificationHead, num_labels=2, dropout=0.0)
    return model


def batch(seed=0, rows=8, length=10):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.randint(0, 2, (rows,), generator=g)}


def test_magnitude_masks_zero_the_smallest_weights_globally_or_per_matrix():
    model = classifier()
    names = P.prunable_weights(model)
    assert len(names) == 4 * 4 and all(n.startswith("backbone.layers.") for n in names)
    original = torch.cat([dict(model.named_parameters())[n].detach().abs().flatten() for n in names])
    entry = P.prune_magnitude(model, 0.5, "global")
    assert entry["sparsity"] == pytest.approx(0.5, abs=1e-3) and entry["parameters"] == names
    after = torch.cat([dict(model.named_parameters())[n].detach().flatten() for n in names])
    pruned = after == 0
    assert float(original[pruned].max()) <= float(original[~pruned].min())  # the smallest went
    model = classifier()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    P.prune_magnitude(model, 0.3, "layer")
    for name in names:
        after = dict(model.named_parameters())[name].detach()
        assert (after == 0).float().mean() == pytest.approx(0.3, abs=0.01)  # every matrix at 30%
        pruned = after == 0
        assert float(before[name][pruned].abs().max()) <= float(before[name][~pruned].abs().min())
        assert torch.equal(after[~pruned], before[name][~pruned])  # the rest untouched
    assert torch.equal(dict(model.named_parameters())["backbone.embeddings.word.weight"],
                       before["backbone.embeddings.word.weight"])


def test_global_pruning_takes_the_smallest_over_all_matrices():
    model = classifier()
    with torch.no_grad():
        model.backbone.layers[0].ffn.up.weight.mul_(0.001)  # this matrix is the smallest of all
    P.prune_magnitude(model, 0.05, "global")
    up = model.backbone.layers[0].ffn.up.weight
    assert float((up == 0).float().mean()) > 0.5


def test_masks_stay_zero_through_training():
    model = classifier()
    entry = P.prune_magnitude(model, 0.5)
    masks = SparsityMasks.from_zeros(model, entry["parameters"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(5):
        model(**{k: v for k, v in batch(step).items() if k != "labels"}, targets=batch(step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        masks.apply(step)
        assert masks.sparsity() == pytest.approx(0.5, abs=1e-3)
        for name, mask in masks.masks.items():
            assert bool((dict(model.named_parameters())[name][~mask] == 0).all())


def test_cubic_schedule_and_gradual_pruning():
    assert P.cubic_sparsity(0, 0.8, 100) == 0.0
    assert P.cubic_sparsity(50, 0.8, 100) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert P.cubic_sparsity(100, 0.8, 100) == P.cubic_sparsity(300, 0.8, 100) == pytest.approx(0.8)
    model = classifier()
    names = P.prunable_weights(model)
    gradual = P.GradualPruning(model, names, 0.6, end_step=10, frequency=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seen = []
    for step in range(1, 16):
        model(**{k: v for k, v in batch(step).items() if k != "labels"}, targets=batch(step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        gradual(step)
        seen.append(P.sparsity_of(model, names))
    assert seen == sorted(seen) and seen[0] < 0.3  # rises with the schedule
    assert seen[-1] == pytest.approx(0.6, abs=1e-3) and seen[9] == seen[-1]  # reached at step 10, then held


def test_head_pruning_changes_shapes_and_equals_gating_the_heads_off():
    model = classifier().eval()
    data = [batch(0), batch(1)]
    importance = P.head_importance(model, data, "classification")
    assert importance.shape == (4, 4) and bool((importance > 0).all())
    assert all(p.grad is None for p in model.parameters())  # the model is left as it was
    prune = {0: [1, 3], 2: [0, 1, 2, 3]}  # a whole layer's attention too
    pruned = P.remove_heads(model, prune).eval()
    assert pruned.config.layer_heads == [2, 4, 0, 4]
    assert pruned.backbone.layers[0].attention.qkv.weight.shape == (3 * 2 * 8, 32)
    assert pruned.backbone.layers[0].attention.out.weight.shape == (32, 16)
    assert pruned.backbone.layers[2].attention.qkv.weight.shape == (0, 32)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    # the same function as the full model with those heads' outputs multiplied by 0
    hooks = []
    for layer, heads in prune.items():
        attention = model.backbone.layers[layer].attention
        gate = torch.ones(4)
        gate[heads] = 0

        def hook(_, args, gate=gate):
            x = args[0]
            return ((x.view(*x.shape[:-1], 4, 8) * gate[:, None]).reshape(x.shape),)
        hooks.append(attention.out.register_forward_pre_hook(hook))
    inputs = {k: v for k, v in batch(3).items() if k != "labels"}
    gated = model(**inputs).logits
    for h in hooks:
        h.remove()
    torch.testing.assert_close(pruned(**inputs).logits, gated, atol=1e-5, rtol=1e-5)
    # by importance: the lowest normalised importance goes first
    choice = P.heads_to_prune(torch.tensor([[0.9, 0.1], [0.5, 0.4]]), [2, 2], 2)
    assert choice == {0: [1], 1: [1]}


def test_prune_heads_by_share_and_rounds():
    model = classifier().eval()
    pruned, entry = P.prune_heads(model, [batch(0)], "classification", 0.5, steps=2)
    assert sum(pruned.config.layer_heads) == 8 and len(entry["removed_heads"]) == 8
    assert len({tuple(h) for h in entry["removed_heads"]}) == 8  # original head ids, no repeats
    with pytest.raises(UserError):
        P.prune_heads(model, [batch(0)], "classification", 1.0)


def test_removing_layers_keeps_the_function_of_the_kept_layers():
    model = classifier().eval()
    assert P.every_other(4) == [0, 2] and P.parse_layers("every-other", 5) == [0, 2, 4]
    pruned, entry = P.remove_layers(model, [0, 2])
    assert pruned.family == "bert" and pruned.config.num_layers == 2 and "classification" in pruned.heads
    assert entry["removed_layers"] == [1, 3]
    inputs = {k: v for k, v in batch(4).items() if k != "labels"}
    kept = [model.backbone.layers[0], model.backbone.layers[2]]
    torch.testing.assert_close(pruned.eval()(**inputs).logits, model(**inputs, layers=kept).logits)
    with pytest.raises(UserError, match="distinct numbers"):
        P.remove_layers(model, [0, 4])


def test_layerdrop_drops_whole_layers_only_in_training():
    torch.manual_seed(0)
    bert = build_backbone("bert", SMALL)
    calls = []
    for i, layer in enumerate(bert.layers):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    ids = torch.randint(5, 60, (2, 6))
    bert.layerdrop = 0.5
    bert.eval()
    out = bert(ids, output_hidden_states=True)
    assert calls == [0, 1, 2, 3]  # evaluation runs every layer
    bert.train()
    dropped_somewhere = False
    for _ in range(10):
        calls.clear()
        out = bert(ids, output_hidden_states=True)
        ran = set(calls)
        for i in range(4):
            if i not in ran:  # a skipped layer passes its input on unchanged: the whole layer is gone
                dropped_somewhere = True
                assert torch.equal(out.hidden_states[i + 1], out.hidden_states[i])
    assert dropped_somewhere


def test_trainer_applies_layerdrop_and_refuses_backbones_without_it(tmp_path):
    from ptmzoo.train.distributed import DistEnv
    from ptmzoo.train.trainer import Trainer

    model = classifier()
    config = TrainConfig(max_steps=1, layerdrop=0.2, batch_size=2)
    Trainer(model, [batch(0)], lambda s: s[0], config, str(tmp_path), DistEnv(), progress=False)
    assert model.backbone.layerdrop == 0.2
    with pytest.raises(UserError, match="layerdrop"):
        TrainConfig.from_dict({"layerdrop": 1.0})
    t5 = build_model("t5", {"vocab_size": 60, "hidden_size": 16, "num_layers": 1, "num_heads": 2,
                            "intermediate_size": 32})
    with pytest.raises(UserError, match="no LayerDrop"):
        Trainer(t5, [batch(0)], lambda s: s[0], config, str(tmp_path / "t5"), DistEnv(), progress=False)


def test_mobilebert_stages_fix_the_layers_below():
    from ptmzoo.compress.distill import frozen_below, intermediate_stages

    assert intermediate_stages("mobilebert", 3) == [("layer1", 1), ("layer2", 2), ("layer3", 3)]
    assert intermediate_stages("tinybert", 3) == [("intermediate", None)] and intermediate_stages("kd", 3) == []
    assert not frozen_below("backbone.embeddings.word.weight", 1) and frozen_below("backbone.embeddings.norm.bias", 2)
    assert frozen_below("backbone.layers.0.ffn.up.weight", 2) and not frozen_below("backbone.layers.1.ffn.up.weight", 2)
    assert not frozen_below("heads.classification.classifier.weight", 3)


def test_theseus_replacement_rate_schedule():
    assert replacement_rate(0, 100, 0.5) == replacement_rate(99, 100, 0.5) == 0.5
    assert replacement_rate(0, 100, 0.3, "linear") == pytest.approx(0.3)
    assert replacement_rate(50, 100, 0.3, "linear") == pytest.approx(0.65)
    assert replacement_rate(100, 100, 0.3, "linear") == replacement_rate(150, 100, 0.3, "linear") == 1.0
    predecessor = classifier(seed=1).eval()
    successor = classifier(seed=2, num_layers=2).eval()
    replacing = ModuleReplacing(predecessor, 2, total_steps=10, rate=0.5, schedule="constant")
    assert [len(m) for m in replacing.modules] == [2, 2]
    torch.manual_seed(0)
    chosen = [block is successor.backbone.layers[i] for _ in range(400)
              for i, block in enumerate(replacing.mixed_layers(successor))]
    assert sum(chosen) / len(chosen) == pytest.approx(0.5, abs=0.06)
    inputs = {k: v for k, v in batch(5).items() if k != "labels"}
    replacing.rate = 1.0  # every module the successor's: the successor itself
    torch.testing.assert_close(successor(**inputs, layers=replacing.mixed_layers(successor)).logits,
                               successor(**inputs).logits)
    replacing.rate = 0.0  # none: the predecessor's layers inside the successor's embeddings and head
    mixed = successor(**inputs, layers=replacing.mixed_layers(successor)).logits
    expected = successor(**inputs, layers=list(predecessor.backbone.layers)).logits
    torch.testing.assert_close(mixed, expected)
    linear = ModuleReplacing(predecessor, 2, total_steps=10, rate=0.2, schedule="linear")
    linear.before_step(5)
    assert linear.current_rate() == pytest.approx(0.6)
    with pytest.raises(UserError, match="equal modules"):
        ModuleReplacing(predecessor, 3, 10, 0.5, "constant")


def test_pre_training_a_pruned_model_keeps_its_zeros(wiki_shards, tmp_path):
    """Gordon et al.'s setting: prune the pre-trained model, then go on pre-training (and fine-tuning)."""
    import ptmzoo
    from ptmzoo.compress.jobs import prune_checkpoint
    from ptmzoo.train.pretrain import PretrainRecipe, run_pretrain

    def recipe(out_steps, init_from=None):
        return PretrainRecipe.from_dict({
            "preset": "bert-tiny", "data": {"shards": wiki_shards, "seq_len": 32}, "init_from": init_from,
            "model": {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
            "objectives": {"mlm": {}},
            "train": {"batch_size": 4, "max_steps": out_steps, "lr": 1e-2, "log_every": 1, "eval_every": 100,
                      "save_every": 100}})

    run_pretrain(recipe(1), str(tmp_path / "base"), progress=False)
    entry = prune_checkpoint(str(tmp_path / "base" / "final"), str(tmp_path / "pruned"), "magnitude", sparsity=0.4)
    run_pretrain(recipe(3, str(tmp_path / "pruned")), str(tmp_path / "more"), progress=False)
    more = ptmzoo.load(str(tmp_path / "more" / "final"))
    assert more.meta["pruning"]["parameters"] == entry["parameters"]
    assert P.sparsity_of(more.model, entry["parameters"]) == pytest.approx(0.4, abs=1e-3)
