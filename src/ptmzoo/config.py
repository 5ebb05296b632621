"""Typed dataclass configs.

Every config (model architectures, trainer settings, recipes) is a dataclass deriving from
``Config``. ``from_dict`` rejects unknown keys and coerces values to the declared types, so a
typo in a recipe or an override fails at once with the list of valid keys instead of being
silently ignored. Overrides use dotted paths: ``train.lr=3e-4``, ``model.num_layers=4``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

import yaml

from .errors import UserError


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML/JSON/CLI) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise UserError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return tp.from_dict(value, where=where + ".")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-4" as a string
            except ValueError:
                pass
        raise UserError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: expected a string, got {value!r}")
    return value


def setting(default: Any = dataclasses.MISSING, *, help: str, flag: str | bool = True,
            choices: tuple[str, ...] | None = None, metavar: str | None = None, required: bool = False,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with what its command-line flag needs, in the field's metadata (read by
    ``ptmzoo.config_flags``): ``help``; ``flag``: a name other than ``--field-name`` (``"--train"``),
    or False for a setting that has no flag (recipes and ``key=value`` overrides only);
    ``choices`` of a text field (its ``validate`` checks them too); ``metavar``; ``required``."""
    metadata: dict[str, Any] = {"help": help, "flag": flag}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if metavar is not None:
        metadata["metavar"] = metavar
    if required:
        metadata["required"] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def check_choice(value: Any, choices: tuple[str, ...], what: str) -> None:
    """The one message for a text setting outside its choices."""
    if value not in choices:
        raise UserError(f"unknown {what} '{value}' (choose from {', '.join(choices)})")


@dataclasses.dataclass
class Config:
    """Base class: strict construction from dicts, round trip to dicts, dotted overrides."""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str = ""):
        data = dict(data or {})
        types_ = cls.field_types()
        unknown = [k for k in data if k not in types_]
        if unknown:
            key = unknown[0]
            raise UserError(
                f"unknown key '{where}{key}' for {cls.__name__}; {_suggest(key, list(types_))}"
                f"valid keys: {', '.join(types_)}"
            )
        values = {k: _coerce(v, types_[k], where + k) for k, v in data.items()}
        obj = cls(**values)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Check cross-field constraints; raise UserError with the fix."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        merged = self.to_dict()
        merged.update(changes)
        return type(self).from_dict(merged)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into (["a", "b"], parsed value); values are parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override '{text}' must look like key=value, e.g. train.lr=3e-4")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise UserError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with each ``a.b=value`` override set."""
    result = _deepcopy_dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UserError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _deepcopy_dict(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_yaml(path: str) -> dict[str, Any]:
    from .errors import require_file
    from .textio import read_text

    text = read_text(require_file(path, "recipe"), encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}")
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a YAML mapping (key: value lines)")
    return data


# --------------------------------------------------------------------------------------------
# Trainer settings, shared by pre-training and fine-tuning.


DEFAULT_WARMUP_RATIO = 0.06  # the warmup of a run that sets neither warmup_steps nor warmup_ratio


@dataclasses.dataclass
class TrainConfig(Config):
    # Batch: `batch_size` is the global number of sequences per optimizer step, the same for any
    # number of processes; `micro_batch_size` is what one process runs in one forward pass
    # (default: batch_size / world size); gradient accumulation makes up the difference.
    batch_size: int = 32
    micro_batch_size: int | None = None
    max_steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    warmup_ratio: float | None = None  # default: DEFAULT_WARMUP_RATIO of the steps (when warmup_steps is 0)
    schedule: typing.Literal["linear", "cosine", "constant", "slanted_triangular"] = "linear"
    min_lr_ratio: float = 0.0
    stlr_cut_frac: float = 0.1  # slanted_triangular (ULMFiT): fraction of steps rising, and
    stlr_ratio: float = 32.0  # how much smaller the lowest rate is than the peak (no warmup then)
    max_grad_norm: float = 1.0
    precision: typing.Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    seed: int = 42
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 20
    save_every: int = 500
    keep_checkpoints: int = 2
    num_workers: int = 0
    device: str = "auto"
    # a time budget: the steps that fit it are estimated from the first steps' speed (max_steps
    # stays the upper bound) and the LR schedule follows them; the run stops cleanly at the end
    max_minutes: float | None = None
    threads: int | None = None  # CPU threads (--threads wins); default: physical cores / processes on the machine
    # none | ddp | fsdp (FSDP2: sharded weights, gradients and optimizer state); auto: ddp under torchrun
    parallel: typing.Literal["auto", "none", "ddp", "fsdp"] = "auto"
    activation_checkpointing: bool = False  # recompute each layer's activations in the backward pass
    layerdrop: float = 0.0  # LayerDrop: the probability that a training pass skips each backbone layer
    # TensorBoard event files in RUN/tensorboard/ beside metrics.jsonl (train.runlog); None: when the
    # tensorboard package is importable
    tensorboard: bool | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"train.batch_size (--batch-size) must be at least 1, not {self.batch_size}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise UserError("train.micro_batch_size must be at least 1")
        if self.max_steps < 1:
            raise UserError(f"train.max_steps (--steps) must be at least 1, not {self.max_steps}")
        if self.lr <= 0:
            raise UserError(f"train.lr (--lr) must be positive, not {self.lr}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise UserError("train.warmup_ratio must be in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"train.threads must be at least 1, not {self.threads}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UserError(f"train.max_minutes must be positive, not {self.max_minutes:g}")
        if not 0 < self.stlr_cut_frac < 1 or self.stlr_ratio < 1:
            raise UserError("train.stlr_cut_frac must be in (0, 1) and train.stlr_ratio at least 1")
        for name in ("log_every", "eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name} must be at least 1")
        if not 0 <= self.layerdrop < 1:
            raise UserError("train.layerdrop must be in [0, 1) (the probability of skipping a layer; 0.2 in the paper)")
        if self.tensorboard:
            from .train.runlog import use_tensorboard

            use_tensorboard(self.tensorboard)  # true without the package: said before any work

    def warmup(self, total: int | None = None) -> int:
        """Warmup steps of a run of ``total`` steps (default: max_steps)."""
        if self.warmup_steps > 0:
            return self.warmup_steps
        ratio = DEFAULT_WARMUP_RATIO if self.warmup_ratio is None else self.warmup_ratio
        return int(ratio * (total or self.max_steps))
