"""Pruning (``ptmzoo prune``): weights, attention heads, whole layers.

* ``magnitude`` -- unstructured: the weights of smallest |w| in the layers' weight matrices (the
  Linear layers of the backbone's layers; ``include_embeddings`` adds the token embeddings) are
  set to zero, to a sparsity over all of them (``global``) or in each matrix (``layer``), as in
  Gordon et al. (2020), "Compressing BERT". One-shot on a checkpoint, or gradually while
  fine-tuning (``GradualPruning``: Zhu & Gupta's cubic schedule s_t = s (1 - (1 - t / T)^3), masks
  recomputed every few steps until T, then fixed). The checkpoint stays dense (zeros stored), and
  its ``ptmzoo.json`` lists the pruned parameters, so that fine-tuning it later keeps them zero
  (``masks.SparsityMasks``).
* ``heads`` -- Michel et al. (2019), "Are Sixteen Heads Really Better than One?": the importance of
  head h is I_h = sum over batches of |dL / d xi_h|, xi_h a gate (1) on the head's output, on
  labelled data of the model's task; importance normalised per layer (L2), and the least important
  heads removed, a share of all heads at once or in ``steps`` rounds (re-estimated after each).
  Removing is structural: the query/key/value rows and output-projection columns of a head go,
  ``model.layer_heads`` records what each layer kept, and the model is smaller and faster.
* ``layers`` -- whole layers removed (a model trained with LayerDrop, ``train.layerdrop``, loses
  less: every other layer dropped, as in Fan et al., 2020).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..catalog import build_model
from ..errors import UserError
from ..models.model import PtmModel, unwrap
from ..nn.attention import Attention
from .masks import SparsityMasks
from .student import init_student

SCOPES = ("global", "layer")


# ---------------------------------------------------------------------------------- magnitude
def prunable_weights(model: PtmModel, include_embeddings: bool = False) -> list[str]:
    """The weight matrices magnitude pruning considers: the Linear layers inside the backbone's
    layers (attention and feed-forward), and optionally the token embeddings."""
    layers = getattr(model.backbone, "layers", None) or getattr(model.backbone, "blocks", None)
    if layers is None:
        raise UserError(f"a {model.family} backbone has no list of layers to prune")
    names = []
    seen: set[int] = set()
    for index, layer in enumerate(layers):
        prefix = "backbone.layers" if hasattr(model.backbone, "layers") else "backbone.blocks"
        for name, module in layer.named_modules(prefix=f"{prefix}.{index}"):
            if isinstance(module, nn.Linear) and id(module.weight) not in seen:  # ALBERT: a shared layer once
                seen.add(id(module.weight))
                names.append(f"{name}.weight")
    if include_embeddings:
        embedding = model.backbone.input_embeddings
        names += [n for n, p in model.named_parameters() if p is embedding.weight]
    return names


def magnitude_masks(model: PtmModel, names: list[str], sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Keep-masks (True = kept) that zero the ``sparsity`` share of smallest-magnitude weights,
    over all ``names`` together (global) or in each (layer). Ties at the threshold are kept, so the
    sparsity is at most the target."""
    if not 0 <= sparsity < 1:
        raise UserError("--sparsity must be in [0, 1)")
    if scope not in SCOPES:
        raise UserError(f"--scope must be one of {', '.join(SCOPES)}")
    params = dict(model.named_parameters())
    weights = {name: params[name].detach().abs().float() for name in names}

    def threshold(values: torch.Tensor) -> float:
        k = int(sparsity * values.numel())
        return -1.0 if k == 0 else float(values.flatten().kthvalue(k).values)

    if scope == "global":
        cut = threshold(torch.cat([w.flatten() for w in weights.values()]))
        return {name: w > cut for name, w in weights.items()}
    return {name: w > threshold(w) for name, w in weights.items()}


def prune_magnitude(model: PtmModel, sparsity: float, scope: str = "global",
                    include_embeddings: bool = False) -> dict[str, Any]:
    """One-shot magnitude pruning in place; returns the ``pruning`` entry of ``ptmzoo.json``."""
    names = prunable_weights(model, include_embeddings)
    masks = SparsityMasks(model, magnitude_masks(model, names, sparsity, scope))
    masks.apply()
    return {"method": "magnitude", "sparsity": round(masks.sparsity(), 6), "target": sparsity, "scope": scope,
            "parameters": names}


def cubic_sparsity(step: int, final: float, end_step: int, initial: float = 0.0) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f) (1 - t / T)^3 for t <= T, then s_f."""
    progress = min(1.0, step / max(1, end_step))
    return final + (initial - final) * (1 - progress) ** 3


class GradualPruning:
    """Magnitude pruning during fine-tuning: after optimizer step t the masks are recomputed at the
    cubic schedule's sparsity every ``frequency`` steps until ``end_step``, and applied after every
    step (the Trainer's ``after_step``), so pruned weights stay zero and the last masks hold."""

    def __init__(self, model: PtmModel, names: list[str], final: float, end_step: int, scope: str = "global",
                 frequency: int | None = None):
        self.model, self.names, self.final, self.end_step, self.scope = model, names, final, end_step, scope
        self.frequency = frequency or max(1, end_step // 10)
        self.masks = SparsityMasks(model, {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()
                                           if n in set(names)})

    def __call__(self, step: int) -> None:
        if step <= self.end_step and (step % self.frequency == 0 or step == self.end_step):
            target = cubic_sparsity(step, self.final, self.end_step)
            self.masks = SparsityMasks(self.model, magnitude_masks(self.model, self.names, target, self.scope))
        self.masks.apply()

    def entry(self) -> dict[str, Any]:
        return {"method": "magnitude", "sparsity": round(self.masks.sparsity(), 6), "target": self.final,
                "scope": self.scope, "schedule": "gradual (cubic)", "parameters": self.names}


def sparsity_of(model: nn.Module, names: list[str]) -> float:
    params = dict(model.named_parameters())
    total = sum(params[n].numel() for n in names)
    return sum(int((params[n] == 0).sum()) for n in names) / max(1, total)


# ---------------------------------------------------------------------------------- heads
def attentions(model: PtmModel) -> list[Attention]:
    layers = getattr(model.backbone, "layers", None)
    if layers is None or not hasattr(model.config, "layer_heads"):
        raise UserError(f"head pruning works on BERT-family encoders, not on a {model.family} model")
    if model.config.share_layers != "none":
        raise UserError("head pruning needs one attention per layer; this model shares its layers (ALBERT)")
    return [layer.attention for layer in layers]


def head_importance(model: PtmModel, batches, head_name: str) -> torch.Tensor:
    """Michel et al.'s I_h: sum over the batches of |dL/d xi_h| (xi: a gate of 1 on each head's
    output), [layers, max heads] with 0 where a layer has fewer heads; the model is unchanged."""
    modules = attentions(model)
    width = max(m.num_heads for m in modules)
    gates = [torch.ones(m.num_heads, requires_grad=True) for m in modules]
    hooks = []
    for module, gate in zip(modules, gates):
        def gated(_, args, gate=gate, module=module):
            (x,) = args  # the heads' outputs, concatenated, before the output projection
            shape = x.shape
            heads = x.view(*shape[:-1], module.num_heads, module.head_dim) * gate.to(x.dtype)[:, None]
            return (heads.reshape(shape),)
        hooks.append(module.out.register_forward_pre_hook(gated))
    importance = torch.zeros(len(modules), width)
    was_training = model.training
    model.eval()  # no dropout: the gradient of the model as it predicts
    try:
        for batch in batches:
            out = model(**model.select_inputs(batch), targets=batch)
            loss = out.loss_sums[head_name]
            grads = torch.autograd.grad(loss, gates, allow_unused=True)
            for i, grad in enumerate(grads):
                if grad is not None:
                    importance[i, : grad.numel()] += grad.abs().detach().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return importance


def normalise_importance(importance: torch.Tensor) -> torch.Tensor:
    """Per layer divided by its L2 norm (Michel et al.'s code), so layers compare."""
    return importance / importance.norm(dim=1, keepdim=True).clamp(min=1e-20)


def heads_to_prune(importance: torch.Tensor, heads_per_layer: list[int], count: int) -> dict[int, list[int]]:
    """The ``count`` heads of lowest importance over all layers ({layer: [heads]}, existing heads only)."""
    candidates = [(float(importance[layer, head]), layer, head)
                  for layer, heads in enumerate(heads_per_layer) for head in range(heads)]
    chosen: dict[int, list[int]] = {}
    for _, layer, head in sorted(candidates)[:count]:
        chosen.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def remove_heads(model: PtmModel, prune: dict[int, list[int]]) -> PtmModel:
    """A copy of ``model`` without the given heads: each layer's q, k, v rows and output columns of
    the removed heads are dropped, ``config.layer_heads`` says how many are left."""
    modules = attentions(model)
    config = model.config.to_dict()
    kept_heads = []
    for index, module in enumerate(modules):
        gone = set(prune.get(index, []))
        if any(not 0 <= h < module.num_heads for h in gone):
            raise UserError(f"layer {index} has {module.num_heads} heads; cannot prune {sorted(gone)}")
        kept_heads.append([h for h in range(module.num_heads) if h not in gone])
    config["layer_heads"] = [len(k) for k in kept_heads]
    pruned = build_model(model.family, config, heads=model.heads_spec(), helpers=model.helpers_spec())
    state = model.state_dict()
    for index, (module, kept) in enumerate(zip(modules, kept_heads)):
        d = module.head_dim
        rows = torch.tensor([h * d + i for h in kept for i in range(d)], dtype=torch.long)
        inner = module.num_heads * d
        prefix = f"backbone.layers.{index}.attention"
        qkv_rows = torch.cat([rows, rows + inner, rows + 2 * inner])
        state[f"{prefix}.qkv.weight"] = state[f"{prefix}.qkv.weight"][qkv_rows]
        state[f"{prefix}.qkv.bias"] = state[f"{prefix}.qkv.bias"][qkv_rows]
        state[f"{prefix}.out.weight"] = state[f"{prefix}.out.weight"][:, rows]
    pruned.load_state_dict(state)
    return pruned.to(next(model.parameters()).device).train(model.training)


def prune_heads(model: PtmModel, batches: list[dict], head_name: str, fraction: float, steps: int = 1,
                ) -> tuple[PtmModel, dict[str, Any]]:
    """Remove ``fraction`` of all heads by importance, in ``steps`` equal rounds."""
    if not 0 < fraction < 1:
        raise UserError("--fraction (the share of heads to remove) must be in (0, 1)")
    total = sum(m.num_heads for m in attentions(model))
    target = round(fraction * total)
    removed: list[list[int]] = []
    original = [list(range(m.num_heads)) for m in attentions(model)]  # original head ids still present
    for round_ in range(steps):
        count = target * (round_ + 1) // steps - target * round_ // steps
        if count == 0:
            continue
        importance = normalise_importance(head_importance(model, batches, head_name))
        choice = heads_to_prune(importance, [m.num_heads for m in attentions(model)], count)
        for layer, heads in choice.items():
            removed += [[layer, original[layer][h]] for h in heads]
            original[layer] = [h for i, h in enumerate(original[layer]) if i not in set(heads)]
        model = remove_heads(model, choice)
    entry = {"method": "heads", "removed_heads": sorted(removed), "fraction": round(len(removed) / total, 6),
             "layer_heads": model.config.layer_heads, "steps": steps}
    return model, entry


# ---------------------------------------------------------------------------------- layers
def every_other(num_layers: int) -> list[int]:
    """Layers kept when every other one is dropped (Fan et al.: 0, 2, 4, ...)."""
    return list(range(0, num_layers, 2))


def remove_layers(model: PtmModel, keep: list[int]) -> tuple[PtmModel, dict[str, Any]]:
    """The model with only the ``keep`` layers (same family, every head)."""
    total = unwrap(model).config.num_layers
    if not keep or any(not 0 <= i < total for i in keep) or len(set(keep)) != len(keep):
        raise UserError(f"layers to keep must be distinct numbers from 0 to {total - 1}, not {keep}")
    pruned = init_student(model, sorted(keep), same_family=True)
    return pruned, {"method": "layers", "kept_layers": sorted(keep), "removed_layers":
                    [i for i in range(total) if i not in keep], "of": total}


def parse_layers(text: str, total: int) -> list[int]:
    """``every-other`` or comma-separated layer numbers."""
    if text == "every-other":
        return every_other(total)
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{text!r} must be 'every-other' or comma-separated layer numbers, e.g. 0,2") from None


def final_step(steps: int, end_fraction: float) -> int:
    return max(1, math.ceil(steps * end_fraction))
