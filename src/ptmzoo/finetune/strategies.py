"""Transfer strategies: what a fine-tuning run trains, at which learning rates, and what the head reads.

* ``method``: ``full`` fine-tuning; ``frozen`` backbone (feature extraction: only the head learns);
  ``adapters`` (Houlsby: adapters + LayerNorms + head); ``lora`` (low-rank updates + head).
* ``layers``: the hidden states the head reads -- the ``last`` layer, the ``sum`` or ``concat`` of
  the top ``top_k`` layers, or ELMo's ``scalar_mix`` of all layers (embeddings included):
  ``gamma * sum_j softmax(w)_j h_j`` with learned ``w`` and ``gamma``; ``mix_layer_norm``
  normalises each layer's state of every token (zero mean, unit variance over the hidden size, no
  parameters) before mixing, for layers of very different scales (ELMo's token layer and LSTMs).
* ULMFiT: ``discriminative_decay`` gives layer group g the rate ``lr / decay ** (top - g)``;
  ``gradual_unfreezing`` trains only the top group in the first epoch and opens one more group
  per epoch; the slanted triangular schedule is ``train.schedule=slanted_triangular``.
* SiATL: ``sequential_unfreezing: [n, k]`` trains only the top group (the new head) before epoch n,
  opens the layers at epoch n and the embeddings at epoch k (Chronopoulou et al., 2019, sec. 3.3).

Layer groups, bottom up: the embeddings (everything before the layer list), one group per layer,
and the top (what follows the layers -- pooler, final norm -- plus the heads).

Runs that leave the base weights untouched (frozen, adapters, LoRA) save only the parameters they
train, with the path of the base checkpoint; ``ptmzoo.load`` rebuilds the model on top of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import save_pretrained, write_delta_files
from ..config import Config, setting
from ..errors import UserError
from ..models.base import BackboneOutput
from ..models.model import Head, PtmModel
from .adapters import Adapter, add_adapters
from .lora import add_lora, merge_lora


@dataclass
class StrategyConfig(Config):
    method: Literal["full", "frozen", "adapters", "lora"] = setting(
        "full", flag="--strategy", help="what is trained: everything (full), only the head (frozen: feature "
                                        "extraction), adapters + LayerNorms + head, or LoRA + head")
    layers: Literal["last", "sum", "concat", "scalar_mix"] = setting(
        "last", help="hidden states the head reads: the last layer, sum or concat of the top --top-k layers, or "
                     "ELMo's learned scalar_mix of all layers")
    top_k: int = setting(4, help="layers summed or concatenated (sum, concat)")
    mix_layer_norm: bool = setting(False, help="normalise each layer's token states (zero mean, unit variance) "
                                               "before --layers sum/concat/scalar_mix combines them")
    discriminative_decay: float = setting(1.0, flag="--discriminative-lr", metavar="DECAY",
                                          help="ULMFiT: each lower layer learns DECAY times slower (2.6 in the "
                                               "paper; 1: one learning rate for all layers)")
    gradual_unfreezing: bool = setting(False, help="ULMFiT: train the top layer group first, unfreeze one more "
                                                   "per epoch")
    sequential_unfreezing: list[int] | None = setting(
        None, metavar="N,K", help="SiATL: only the head learns before epoch N, the layers from epoch N, the "
                                  "embeddings from epoch K")
    adapter_size: int = setting(64, help="adapter bottleneck width")
    lora_rank: int = setting(8, help="LoRA rank")
    lora_alpha: float = setting(16.0, help="LoRA scale alpha; the update is scaled by alpha/rank")
    lora_dropout: float = setting(0.0, help="dropout on the LoRA input")
    lora_targets: list[str] = setting(default_factory=lambda: ["qkv", "out"],
                                      help="comma-separated linear layers to adapt (also up, down)")
    merge_lora: bool = setting(False, help="also write OUT/merged: a normal checkpoint with the updates folded in")

    def validate(self) -> None:
        if self.top_k < 1:
            raise UserError("strategy.top_k must be at least 1")
        if self.discriminative_decay <= 0:
            raise UserError("strategy.discriminative_decay must be positive (ULMFiT: 2.6)")
        if self.merge_lora and self.method != "lora":
            raise UserError("--merge-lora needs --strategy lora")
        if self.mix_layer_norm and self.layers == "last":
            raise UserError("--mix-layer-norm normalises the layers that --layers sum, concat or scalar_mix combines")
        if self.sequential_unfreezing is not None:
            n_k = self.sequential_unfreezing
            if len(n_k) != 2 or not 1 <= n_k[0] <= n_k[1]:
                raise UserError(f"--sequential-unfreezing takes two epochs N,K with 1 <= N <= K (layers open at "
                                f"epoch N, embeddings at K), got {n_k}")
            if self.gradual_unfreezing:
                raise UserError("--sequential-unfreezing and --gradual-unfreezing are two schedules; choose one")

    @property
    def saves_delta(self) -> bool:
        """Whether the base weights stay as they are, so that a checkpoint needs only the rest."""
        return self.method != "full"


# ---------------------------------------------------------------------------------- layer choice
class _FeatureView:
    """What a head sees of the backbone when it reads mixed layers: their width and no pooler."""

    has_pooler = False

    def __init__(self, backbone: nn.Module, width: int):
        self.config = dataclasses.replace(backbone.config, hidden_size=width)
        self.causal = backbone.causal


class LayerMixHead(Head):
    """Any head, reading a combination of layers instead of the last one."""

    kind = "layer_mix"
    needs_hidden_states = True  # PtmModel then asks the backbone for every layer's output

    def __init__(self, backbone, inner_class: type[Head], inner_options: dict[str, Any], layers: str = "scalar_mix",
                 top_k: int = 4, layer_norm: bool = False):
        if backbone.is_encoder_decoder:
            raise UserError(f"strategy.layers={layers} mixes the hidden states of every layer, which encoder-decoder "
                            "models do not return; use strategy.layers=last")
        inner = {"kind": inner_class.kind, "options": inner_options}
        super().__init__(backbone, inner=inner, layers=layers, top_k=top_k, layer_norm=layer_norm)
        self.layer_norm = layer_norm
        states = backbone.config.num_layers + 1  # embeddings + every layer
        self.layers = layers
        self.count = states if layers == "scalar_mix" else top_k
        if self.count > states:
            raise UserError(f"strategy.top_k ({top_k}) is larger than the model's {states} hidden states "
                            f"(embeddings + {states - 1} layers)")
        width = backbone.config.hidden_size * (self.count if layers == "concat" else 1)
        self.inner = inner_class(_FeatureView(backbone, width), **inner_options)
        self.target_key = self.inner.target_key
        if layers == "scalar_mix":
            self.mix_logits = nn.Parameter(torch.zeros(self.count))  # softmax: equal weights at first
            self.gamma = nn.Parameter(torch.ones(()))

    @classmethod
    def from_spec(cls, backbone, options, head_class):
        inner = options["inner"]
        return cls(backbone, head_class(inner["kind"]), inner.get("options") or {}, options.get("layers", "scalar_mix"),
                   options.get("top_k", 4), options.get("layer_norm", False))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # behave as the wrapped head (pooling, labels ...)
            return getattr(super().__getattr__("inner"), name)

    def mix_weights(self) -> torch.Tensor:
        return torch.softmax(self.mix_logits, dim=0)

    def features(self, out: BackboneOutput) -> torch.Tensor:
        states = out.hidden_states[-self.count:]
        if self.layer_norm:
            states = tuple(F.layer_norm(state, state.shape[-1:]) for state in states)
        if self.layers == "concat":
            return torch.cat(states, dim=-1)
        if self.layers == "sum":
            return torch.stack(states).sum(0)
        weights = self.mix_weights().to(states[0].dtype)
        return self.gamma * torch.einsum("l,l...->...", weights, torch.stack(states))

    def _view(self, out: BackboneOutput) -> BackboneOutput:
        return BackboneOutput(self.features(out), None, out.hidden_states)

    def logits(self, out, batch):
        return self.inner.logits(self._view(out), batch)

    def loss_sum(self, out, batch):
        return self.inner.loss_sum(self._view(out), batch)

    def count_targets(self, batch):
        return self.inner.count_targets(batch)


def mix_layers(model: PtmModel, layers: str, top_k: int, layer_norm: bool = False) -> None:
    """Make every head read ``layers`` (sum/concat of the top k, or scalar mix) instead of the last."""
    for name, head in list(model.heads.items()):
        model.heads[name] = LayerMixHead(model.backbone, type(head), head.options, layers, top_k, layer_norm)


# ---------------------------------------------------------------------------------- trainable sets
def add_structure(model: PtmModel, cfg: StrategyConfig) -> None:
    """The modules a method adds to the backbone (also rebuilt when a saved run is loaded)."""
    if cfg.method == "adapters":
        add_adapters(model.backbone, cfg.adapter_size)
    elif cfg.method == "lora":
        add_lora(model.backbone, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)


def trainable_names(model: PtmModel, method: str) -> list[str]:
    """Names of the parameters a method trains: the heads always; in the backbone all (full),
    none (frozen), adapters and LayerNorms (adapters), or the low-rank factors (lora)."""
    keep: set[str] = set()
    if method == "adapters":
        for name, module in model.backbone.named_modules(prefix="backbone"):
            if isinstance(module, (Adapter, nn.LayerNorm, nn.RMSNorm)):  # RMSNorm: T5's LayerNorm
                keep.update(n for n, _ in module.named_parameters(prefix=name))
    names = []
    for name, _ in model.named_parameters():
        in_head = name.startswith("heads.")
        if (method == "full" or in_head or name in keep
                or (method == "lora" and name.rsplit(".", 1)[-1] in ("lora_a", "lora_b"))):
            names.append(name)
    return names


def layer_groups(model: PtmModel) -> list[list[nn.Parameter]]:
    """Parameters from the bottom up: [embeddings, layer 1 .. layer L, top (after the layers + heads)].
    A parameter shared between places (tied embeddings, ALBERT's layers) counts in its lowest group."""
    groups: list[list[nn.Parameter]] = [list(model.backbone.parameters(recurse=False))]
    for child in model.backbone.children():
        if isinstance(child, nn.ModuleList):
            groups += [list(layer.parameters()) for layer in child]
            groups.append([])
        else:
            groups[-1] += child.parameters()
    groups[-1] += model.heads.parameters()
    seen: set[int] = set()
    unique = []
    for group in groups:
        unique.append([p for p in group if not (id(p) in seen or seen.add(id(p)))])
    return unique


def discriminative_groups(model: PtmModel, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """Optimizer groups over the trainable parameters, top group first (its rate is the logged one),
    group g at ``lr / decay ** (top - g)``, each split by weight decay."""
    from ..train.optim import split_decay

    result = []
    for depth, group in enumerate(reversed(layer_groups(model))):
        result += split_decay([p for p in group if p.requires_grad], weight_decay, lr=lr / decay ** depth)
    return result


def gradual_unfreezing(model: PtmModel, steps_per_epoch: int) -> Callable[[int], None]:
    """A before-step hook: in epoch e only the top e + 1 groups (of those the method trains) learn."""
    groups = [[p for p in group if p.requires_grad] for group in layer_groups(model)]

    def before_step(step: int) -> None:
        lowest_open = len(groups) - 1 - step // max(1, steps_per_epoch)
        for index, group in enumerate(groups):
            for param in group:
                param.requires_grad_(index >= lowest_open)

    return before_step


def sequential_unfreezing(model: PtmModel, steps_per_epoch: int, layers_from: int,
                          embeddings_from: int) -> Callable[[int], None]:
    """SiATL's schedule as a before-step hook: in epoch e (from 1) the top group always learns, the
    layer groups from epoch ``layers_from`` on, the embeddings from epoch ``embeddings_from`` on."""
    groups = [[p for p in group if p.requires_grad] for group in layer_groups(model)]

    def before_step(step: int) -> None:
        epoch = step // max(1, steps_per_epoch) + 1
        for index, group in enumerate(groups):
            if index == len(groups) - 1:
                learns = True
            else:
                learns = epoch >= (embeddings_from if index == 0 else layers_from)
            for param in group:
                param.requires_grad_(learns)

    return before_step


def keep_in_eval_mode(module: nn.Module) -> None:
    """Feature extraction: the frozen backbone gives the same features every epoch, so its dropout
    stays off even while the head trains (``model.train()`` no longer reaches it)."""
    switch = module.train
    module.train = lambda mode=True: switch(False)
    module.eval()


# ---------------------------------------------------------------------------------- the strategy
class Strategy:
    """A strategy applied to a model: its trainable set and what the Trainer needs from it."""

    def __init__(self, model: PtmModel, cfg: StrategyConfig, base_path: str | None = None):
        if cfg.layers != "last":
            mix_layers(model, cfg.layers, cfg.top_k, cfg.mix_layer_norm)
        add_structure(model, cfg)
        self.model, self.cfg, self.base_path = model, cfg, base_path
        self.trainable = trainable_names(model, cfg.method)
        if not self.trainable:  # e.g. frozen, and the only head is tied to the (frozen) input embeddings
            raise UserError(f"strategy {cfg.method} leaves nothing to train: the heads of this {model.family} model "
                            f"({', '.join(model.heads) or 'none'}) have no weights of their own; use adapters or lora")
        wanted = set(self.trainable)
        for name, param in model.named_parameters():
            param.requires_grad_(name in wanted)
        if cfg.method == "frozen":
            keep_in_eval_mode(model.backbone)

    def counts(self) -> dict[str, Any]:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"method": self.cfg.method, "trainable_parameters": trainable, "total_parameters": total,
                "trainable_percent": round(100 * trainable / max(total, 1), 3)}

    def trainer_kwargs(self, lr: float, weight_decay: float, steps_per_epoch: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        unfreezing = self.cfg.gradual_unfreezing or self.cfg.sequential_unfreezing is not None
        if self.cfg.discriminative_decay != 1.0 or unfreezing:
            # explicit groups: also keeps parameters that gradual unfreezing has not opened yet
            kwargs["optimizer_groups"] = discriminative_groups(self.model, lr, self.cfg.discriminative_decay,
                                                               weight_decay)
        if self.cfg.gradual_unfreezing:
            kwargs["before_step"] = gradual_unfreezing(self.model, steps_per_epoch)
        if self.cfg.sequential_unfreezing is not None:
            kwargs["before_step"] = sequential_unfreezing(self.model, steps_per_epoch, *self.cfg.sequential_unfreezing)
        if self.cfg.saves_delta and self.base_path:
            kwargs["write_model"] = self.write_delta
        return kwargs

    def write_delta(self, directory: str, model: nn.Module, tokenizer, extra: dict[str, Any] | None = None) -> None:
        """The Trainer's model writer for delta runs: the trained parameters and the base's path."""
        write_delta_files(directory, model, tokenizer, self.trainable, self.base_path, self.cfg.to_dict(), extra)


def export_merged(source, directory: str) -> None:
    """Write a loaded LoRA (or frozen) run as a normal, self-contained checkpoint."""
    method = (source.meta.get("delta") or {}).get("strategy", {}).get("method")
    if method == "adapters":
        raise UserError("adapters cannot be folded into the weights; keep the adapter checkpoint and its base")
    model = merge_lora(source.model)
    extra = {k: v for k, v in source.meta.items() if k in ("task", "step", "metrics")}
    save_pretrained(directory, model, source.tokenizer, extra)
