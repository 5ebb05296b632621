"""Knowledge distillation: a student trained on what frozen teachers compute (``ptmzoo distill``).

A teacher is a helper network of the training step (``Objective.networks``: moved with the
student, never saved with it); the distiller is an objective with a step of its own, run by the
one Trainer around the student and an ordinary task batch, so that ``distill`` reuses the whole of
``finetune`` (reading, encoding, heads, metrics, best-checkpoint selection, ``metrics.json``).
Every loss of a step is a sum with its own count, as the heads' losses are (``losses``).

Methods (``--method``), on a fine-tuning task unless said otherwise:

* ``kd`` (Hinton et al., 2015): alpha * T^2 * KL(teacher || student) at temperature T, plus
  (1 - alpha) * the task's own loss on the gold labels. Several ``--teacher``s are an ensemble
  (MT-DNN-KD, EnsembleBERT): the soft targets are the mean of their distributions.
* ``distilbert`` (Sanh et al., 2019): the student is initialised from every other teacher layer
  (``student.init_student``) unless ``--student`` is given. On shards (``--data``, general
  distillation with an MLM teacher): 5 * L_ce (soft MLM targets at the masked positions) +
  2 * L_mlm + 1 * L_cos (last hidden states); on a task: kd + L_cos.
* ``tinybert`` (Jiao et al., 2020): stage 1 (intermediate layers) -- MSE of the embeddings, of the
  hidden states of mapped layers (``losses.layer_map``, uniform) through a learned projection when
  the widths differ, and of the unnormalised attention scores; stage 2 -- prediction-layer
  distillation (soft cross-entropy, alpha 1, T 1). On shards (general distillation): stage 1 only.
  ``--augment N``: its data augmentation (masked-LM word replacement, ``augment.mlm_replacements``).
* ``pkd`` (Sun et al., 2019): kd + beta * the patient loss on normalised [CLS] states of the
  intermediate layers, mapped ``skip`` (PKD-Skip) or ``last`` (PKD-Last).
* ``minilm`` (Wang et al., 2020): KL of the last layer's self-attention distributions and value
  relations (relation heads: any student width), then fine-tuning on the labels (alpha 0).
* ``mobilebert`` (Sun et al., 2020), progressive layer-wise transfer: one stage per student layer l
  (``intermediate_epochs`` each), in which layer l learns the mapped teacher layer's feature map
  (MSE, through the projection when the widths differ) and attention distributions (KL), the
  embeddings and the layers below fixed; then prediction-layer distillation (alpha 0.5, T 1).
* ``bilstm`` (Tang et al., 2019): a BiLSTM student (``models.bilstm``), MSE between logits;
  ``--augment N``: masking, POS-guided replacement and n-gram sampling (``augment.tang_augment``).
* ``theseus`` (BERT-of-Theseus, ``compress.theseus``): progressive module replacing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..catalog import build_model, family
from ..checkpoint import Pretrained, write_model_files
from ..config import Config, TrainConfig, apply_overrides
from ..errors import UserError
from ..finetune.run import FinetuneConfig, FinetuneRun, run_finetune
from ..io import atomic_write_json
from ..loading import load
from ..models.base import ModelOutput, special_token_ids
from ..models.model import PtmModel, unwrap
from ..nn.attention import capture_attention
from ..objectives.base import Objective
from ..presets import PRESETS, get_preset
from . import losses as L
from .student import init_student
from .teachers import (
    as_source,
    check_labels,
    check_teachers,
    freeze,
    load_teachers,
    parameters,
)

METHODS = ("kd", "distilbert", "tinybert", "pkd", "minilm", "mobilebert", "bilstm", "theseus")
GENERAL_METHODS = ("distilbert", "tinybert", "minilm")  # also on shards (--data)
TWO_STAGES = ("tinybert", "minilm", "mobilebert")  # intermediate layers first, then the prediction layer
PROJECTION = "distill_projection"  # the helper network holding TinyBERT's projection while training


@dataclass
class DistillOptions(Config):
    """What the distillation losses weigh; None: the method's own default (``defaults``)."""

    method: str = "kd"
    temperature: float | None = None  # T of the soft targets
    alpha: float | None = None  # weight of the soft loss; 1 - alpha: the gold labels' loss
    beta: float = 100.0  # pkd: weight of the patient loss
    cos_weight: float = 1.0  # distilbert: weight of L_cos
    ce_weight: float = 5.0  # distilbert on shards: L_ce (soft MLM targets)
    mlm_weight: float = 2.0  # distilbert on shards: L_mlm
    layer_map: str | None = None  # uniform (tinybert) | skip | last (pkd)
    relation_heads: int | None = None  # minilm: relation heads (default: the teacher's heads)
    intermediate_epochs: float | None = None  # tinybert/minilm: epochs of stage 1, mobilebert: of each layer's
    replace_rate: float = 0.5  # theseus: probability of a successor module (linear: the start)
    replace_schedule: str = "constant"  # theseus: constant | linear (reaches 1 at the end of replacing)
    successor_epochs: float | None = None  # theseus: epochs of the successor alone (default: --epochs)
    augment: int = 0  # augmented copies per training example (tinybert, bilstm)
    augment_model: str | None = None  # tinybert: the MLM model proposing words (default: the teacher)
    augment_prob: float | None = None  # per word: 0.4 (tinybert); bilstm: masking/POS probability 0.1
    ngram_prob: float = 0.25  # bilstm: n-gram sampling
    pos_lexicon: str | None = None  # bilstm: a POS-tagged corpus (CoNLL columns or word/TAG text)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown distillation method '{self.method}' (choose from {', '.join(METHODS)})")
        if self.temperature is not None and self.temperature <= 0:
            raise UserError("--temperature must be positive")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise UserError("--alpha must be in [0, 1]")
        if not 0 <= self.replace_rate <= 1 or self.replace_schedule not in ("constant", "linear"):
            raise UserError("--replace-rate must be in [0, 1] and --replace-schedule constant or linear")
        if self.layer_map is not None and self.layer_map not in L.LAYER_MAPS:
            raise UserError(f"--layer-map must be one of {', '.join(L.LAYER_MAPS)}")
        if self.augment < 0:
            raise UserError("--augment must not be negative")
        if self.augment and self.method not in ("tinybert", "bilstm"):
            raise UserError("--augment is the data augmentation of tinybert and bilstm")

    def defaults(self) -> dict[str, Any]:
        """alpha, temperature and layer map after the method's defaults."""
        alpha, temperature = {"tinybert": (1.0, 1.0), "minilm": (0.0, 1.0), "bilstm": (1.0, 1.0),
                              "pkd": (0.5, 5.0), "mobilebert": (0.5, 1.0)}.get(self.method, (0.5, 2.0))
        layer_map = "skip" if self.method == "pkd" else "uniform"
        return {"alpha": alpha if self.alpha is None else self.alpha,
                "temperature": temperature if self.temperature is None else self.temperature,
                "layer_map": self.layer_map or layer_map}


@dataclass
class DistillConfig(Config):
    teachers: list[str] = field(default_factory=list)
    student: str | None = None  # a preset, a checkpoint, or None: every other teacher layer
    student_layers: list[int] | None = None  # with no --student: these teacher layers (default every other)
    student_num_layers: int | None = None  # ... or this many, evenly strided (theseus: the modules)
    student_config: dict[str, Any] = field(default_factory=dict)  # model settings of a preset student
    data: str | None = None  # shards: general (pre-training) distillation instead of a task
    seq_len: int | None = None  # general distillation
    distill: DistillOptions = field(default_factory=DistillOptions)
    finetune: FinetuneConfig | None = None  # the task (files, options, epochs, train settings)
    train: TrainConfig = field(default_factory=TrainConfig)  # general distillation's trainer

    def validate(self) -> None:
        if not self.teachers:
            raise UserError("distill needs --teacher (a fine-tuned model, or an MLM model with --data)")
        if self.data:
            if self.distill.method not in GENERAL_METHODS:
                raise UserError(f"--data (general distillation) works with {', '.join(GENERAL_METHODS)}, not "
                                f"{self.distill.method}; distil on a task with --train/--dev")
        elif self.finetune is None:
            raise UserError("distill needs a task (--train and --dev) or shards (--data)")
        elif self.finetune.strategy.method != "full":
            raise UserError(f"a distilled student is trained whole; --strategy {self.finetune.strategy.method} "
                            "cannot be used with distill")
        if len(self.teachers) > 1 and self.distill.method in ("distilbert", "theseus"):
            raise UserError(f"--method {self.distill.method} learns from one teacher's layers; give one --teacher")


# ---------------------------------------------------------------------------------- the students
def student_model(cfg: DistillConfig, teacher: Pretrained) -> PtmModel:
    """The student: a preset (random weights, the teacher's vocabulary), a checkpoint, or teacher
    layers (DistilBERT's initialisation: every other one unless ``student_layers``)."""
    spec = cfg.student
    if spec is None:
        if cfg.distill.method == "bilstm":
            spec = "bilstm"
        else:
            return init_student(teacher.model, cfg.student_layers, cfg.student_num_layers)
    if spec in PRESETS and not os.path.exists(spec):
        preset = get_preset(spec)
        config_class = family(preset.family).config_class
        config = {**preset.model, "vocab_size": teacher.tokenizer.vocab_size,
                  **special_token_ids(config_class, teacher.tokenizer), **cfg.student_config}
        torch.manual_seed(cfg.train.seed if cfg.finetune is None else cfg.finetune.train.seed)
        return build_model(preset.family, config)
    source = load(spec)
    if source.tokenizer is not None and source.tokenizer.fingerprint() != teacher.tokenizer.fingerprint():
        raise UserError(f"the student {spec} has another tokenizer than the teacher {teacher.path}; a student "
                        "reads the teacher's token ids (use `ptmzoo init --tokenizer TEACHER` or a preset)")
    return source.model


class DistillProjection(nn.Module):
    """TinyBERT's W: student states mapped to the teacher's width (one matrix for embeddings and
    every layer, as in its code). A helper of the student while it trains; not saved in best/."""

    kind = PROJECTION

    def __init__(self, student_width: int, teacher_width: int):
        super().__init__()
        self.options: dict[str, Any] = {}
        self.dense = nn.Linear(student_width, teacher_width)

    def forward(self, x):
        return self.dense(x)


def without_helpers(names: tuple[str, ...]):
    """A Trainer ``write_model`` that leaves the named helper networks out of saved models."""

    def write(directory: str, model: nn.Module, tokenizer, extra: dict[str, Any] | None = None) -> None:
        model = unwrap(model)
        kept = {name: model.helpers[name] for name in names if name in model.helpers}
        for name in kept:
            del model.helpers[name]
        try:
            write_model_files(directory, model, tokenizer, extra)
        finally:
            for name, helper in kept.items():
                model.helpers[name] = helper

    return write


# ---------------------------------------------------------------------------------- the steps
def rows_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ids = batch["input_ids"]
    return torch.tensor(ids.shape[0], device=ids.device)


def flat_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The attention mask as the backbone saw it: groups of sequences flattened into rows."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 3:
        mask = mask.flatten(0, 1)
    return mask


class Distiller(Objective):
    """A distillation step: the student's forward and the frozen teachers' (``networks``), and the
    losses between them. Subclasses name their losses (``components``) and compute them."""

    name = "distill"
    has_step = True
    named_in_recipes = False  # the distill verb builds it with its teachers
    shardable = False  # the teachers run outside the student's forward
    head = None
    needs_states: ClassVar[bool] = False
    needs_attention: ClassVar[bool] = False

    def __init__(self, options: DistillOptions, teachers: list[PtmModel], components: tuple[str, ...]):
        super().__init__(options, None, 0)
        self.teachers = [freeze(t) for t in teachers]
        self.extra_losses = components
        settings = options.defaults()
        self.alpha, self.temperature, self.layer_map_kind = settings["alpha"], settings["temperature"], settings["layer_map"]

    def networks(self) -> dict[str, nn.Module]:
        return {f"teacher{i}": teacher for i, teacher in enumerate(self.teachers)}

    def attach(self, model: PtmModel) -> None:
        pass

    def count_targets(self, batch):
        rows = rows_of(batch)
        return {name: rows for name in self.extra_losses}

    def run(self, network: PtmModel, batch: dict[str, torch.Tensor], states: bool, attention: bool):
        """A network's output on the batch (hidden states and attention internals on request)."""
        inputs = network.select_inputs(batch)
        with capture_attention(network.backbone) if attention else contextlib.nullcontext() as records:
            out = network(**inputs, output_hidden_states=states)
        return out, records or []

    # ---- the intermediate-layer losses, shared by the task and the general distillers -----------
    def intermediate(self, model: PtmModel, student, s_attention, teacher, t_attention, mask) -> dict[str, torch.Tensor]:
        losses = {}
        if "embedding" in self.extra_losses or "hidden" in self.extra_losses:
            project = model.helpers[PROJECTION] if PROJECTION in model.helpers else nn.Identity()
            s_states, t_states = student.hidden_states, teacher.hidden_states
            if s_states[0].shape[-1] != t_states[0].shape[-1] and PROJECTION not in model.helpers:
                raise UserError("student and teacher widths differ and no projection was set up")
            mapping = L.layer_map(len(s_states) - 1, len(t_states) - 1, self.layer_map_kind)
            losses["embedding"] = L.hidden_mse(project(s_states[0]), t_states[0], mask)
            losses["hidden"] = sum(L.hidden_mse(project(s_states[m + 1]), t_states[g], mask)
                                   for m, g in enumerate(mapping))
            s_scores = [r.scores() for r in s_attention]
            losses["attention"] = sum(L.attention_score_mse(s_scores[m], t_attention[g - 1].scores(),
                                                            t_attention[g - 1].visible(), mask)
                                      for m, g in enumerate(mapping))
        if "feature" in self.extra_losses:  # MobileBERT: one layer's feature map and attention
            project = model.helpers[PROJECTION] if PROJECTION in model.helpers else nn.Identity()
            s_states, t_states = student.hidden_states, teacher.hidden_states
            m = self.layer
            g = L.layer_map(len(s_states) - 1, len(t_states) - 1, self.layer_map_kind)[m - 1]
            losses["feature"] = L.hidden_mse(project(s_states[m]), t_states[g], mask)
            s_att, t_att = s_attention[m - 1], t_attention[g - 1]
            heads, visible = t_att.q.shape[1], t_att.visible()
            losses["attention_transfer"] = L.relation_kl(L.relation(s_att.q, s_att.k, heads, visible),
                                                         L.relation(t_att.q, t_att.k, heads, visible), mask)
        if "attention_kl" in self.extra_losses:
            s_last, t_last = s_attention[-1], t_attention[-1]
            heads = self.options.relation_heads or t_last.q.shape[1]
            visible = t_last.visible()
            losses["attention_kl"] = L.relation_kl(L.relation(s_last.q, s_last.k, heads, visible),
                                                   L.relation(t_last.q, t_last.k, heads, visible), mask)
            losses["value_kl"] = L.relation_kl(L.relation(s_last.v, s_last.v, heads, visible),
                                               L.relation(t_last.v, t_last.v, heads, visible), mask)
        return losses


class TaskDistiller(Distiller):
    """Distillation on a fine-tuning task: ``components`` among kd (or mse for bilstm), cos, pt
    (patient), embedding/hidden/attention (TinyBERT stage 1), attention_kl/value_kl (MiniLM);
    the task head's own loss on the gold labels weighs 1 - alpha (0 in an intermediate stage)."""

    def __init__(self, options, teachers, components, head_name: str, task_name: str, layer: int | None = None):
        super().__init__(options, teachers, components)
        self.head_name, self.task_name, self.layer = head_name, task_name, layer
        self.intermediate_stage = any(c in components for c in ("embedding", "attention_kl", "feature"))
        self.needs_states = any(c in components for c in ("cos", "pt", "embedding", "feature"))
        self.needs_attention = any(c in components for c in ("embedding", "attention_kl", "feature"))

    def soft_loss(self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        if "mse" in self.extra_losses or self.task_name == "regression":
            return L.logit_mse(student_logits, torch.stack([t.float() for t in teacher_logits]).mean(0))
        if self.task_name == "multilabel":
            return L.binary_soft_target_loss(student_logits, L.binary_soft_targets(teacher_logits, self.temperature),
                                             self.temperature)
        return L.soft_target_kl(student_logits, L.soft_targets(teacher_logits, self.temperature), self.temperature)

    def step(self, model: PtmModel, batch) -> ModelOutput:
        student, s_attention = self.run(model, batch, self.needs_states, self.needs_attention)
        with torch.no_grad():
            outputs = [self.run(t, batch, self.needs_states and i == 0, self.needs_attention and i == 0)
                       for i, t in enumerate(self.teachers)]
        teacher, t_attention = outputs[0]
        mask = flat_mask(batch)
        sums: dict[str, torch.Tensor] = {}
        soft = "kd" if "kd" in self.extra_losses else "mse" if "mse" in self.extra_losses else None
        if soft:
            logits = student.head_logits[self.head_name]
            sums[soft] = self.alpha * self.soft_loss(logits, [out.head_logits[self.head_name] for out, _ in outputs])
        if "cos" in self.extra_losses:
            sums["cos"] = self.options.cos_weight * L.cosine_loss(student.last_hidden_state, teacher.last_hidden_state,
                                                                  L.token_weights(mask, student.last_hidden_state))
        if "pt" in self.extra_losses:
            layers = L.layer_map(len(student.hidden_states) - 1, len(teacher.hidden_states) - 1, self.layer_map_kind)
            pairs = list(enumerate(layers, start=1))[:-1]  # the last layer is distilled through the logits
            sums["pt"] = self.options.beta * L.patient_loss([student.hidden_states[m][:, 0] for m, _ in pairs],
                                                            [teacher.hidden_states[g][:, 0] for _, g in pairs])
        sums.update(self.intermediate(model, student, s_attention, teacher, t_attention, mask))
        hard_weight = 0.0 if self.intermediate_stage else 1 - self.alpha
        sums[self.head_name] = hard_weight * model.heads[self.head_name].loss_sum(student, batch)
        student.loss_sums = sums
        return student


class GeneralDistiller(Distiller):
    """Distillation on pre-training shards: DistilBERT's triple loss (the MLM objective masks the
    batch; L_mlm is the student's own MLM head), TinyBERT's intermediate layers, MiniLM's relations
    (both on the unmasked text)."""

    def __init__(self, options, teachers, components):
        super().__init__(options, teachers, components)
        self.needs_states = True
        self.needs_attention = options.method != "distilbert"

    def count_targets(self, batch):
        if self.options.method != "distilbert":
            return super().count_targets(batch)
        return {"ce": (batch["mlm_labels"] != -100).sum(), "cos": batch["attention_mask"].sum()}

    def step(self, model: PtmModel, batch) -> ModelOutput:
        student, s_attention = self.run(model, batch, self.needs_states, self.needs_attention)
        with torch.no_grad():
            teacher, t_attention = self.run(self.teachers[0], batch, self.needs_states, self.needs_attention)
        mask = batch.get("attention_mask")
        if self.options.method != "distilbert":
            student.loss_sums = self.intermediate(model, student, s_attention, teacher, t_attention, mask)
            return student
        labels = batch["mlm_labels"]
        chosen = labels != -100
        s_head, t_head = model.heads["mlm"], self.teachers[0].heads["mlm"]
        s_logits = s_head.decoder(s_head._transform(student.last_hidden_state[chosen]))
        with torch.no_grad():
            t_logits = t_head.decoder(t_head._transform(teacher.last_hidden_state[chosen]))
        T = self.temperature
        student.loss_sums = {
            "ce": self.options.ce_weight * L.soft_target_kl(s_logits, L.soft_targets(t_logits, T), T),
            "cos": self.options.cos_weight * L.cosine_loss(student.last_hidden_state, teacher.last_hidden_state, mask),
            "mlm": self.options.mlm_weight * s_head.loss_sum(student, batch),
        }
        return student


def components_of(method: str, stage: str) -> tuple[str, ...]:
    """The losses of a method's stage ("intermediate", "prediction" or "general")."""
    if stage == "general":
        return {"distilbert": ("ce", "cos"), "tinybert": ("embedding", "hidden", "attention"),
                "minilm": ("attention_kl", "value_kl")}[method]
    if stage == "intermediate":
        return {"tinybert": ("embedding", "hidden", "attention"), "minilm": ("attention_kl", "value_kl"),
                "mobilebert": ("feature", "attention_transfer")}[method]
    return {"distilbert": ("kd", "cos"), "pkd": ("kd", "pt"), "bilstm": ("mse",)}.get(method, ("kd",))


def intermediate_stages(method: str, student_layers: int) -> list[tuple[str, int | None]]:
    """(name, layer) of the runs before the prediction-layer stage: one for TinyBERT and MiniLM
    (every layer at once), one per student layer for MobileBERT's progressive transfer."""
    if method == "mobilebert":
        return [(f"layer{layer}", layer) for layer in range(1, student_layers + 1)]
    return [("intermediate", None)] if method in TWO_STAGES else []


def frozen_below(name: str, layer: int) -> bool:
    """Whether parameter ``name`` is fixed while MobileBERT trains student layer ``layer`` (1-based):
    the embeddings after the first stage, and every layer below."""
    if name.startswith("backbone.embeddings."):
        return layer > 1
    if name.startswith("backbone.layers."):
        return int(name.split(".")[2]) < layer - 1
    return False


def check_heads(student: PtmModel, teacher: PtmModel) -> None:
    """TinyBERT compares attention heads one to one: the student needs the teacher's head count."""
    heads = [getattr(m.config, "num_heads", None) for m in (student, teacher)]
    if heads[0] != heads[1]:
        raise UserError(f"TinyBERT's attention loss compares heads one to one, but the student has {heads[0]} heads "
                        f"and the teacher {heads[1]}; give the student as many heads (student.num_heads=...), or use "
                        "--method minilm (relation heads)")


def add_projection(model: PtmModel, teacher: PtmModel) -> None:
    """TinyBERT's projection when the student is narrower (or wider) than the teacher."""
    if model.config.hidden_size != teacher.config.hidden_size and PROJECTION not in model.helpers:
        model.add_helper(PROJECTION, DistillProjection(model.config.hidden_size, teacher.config.hidden_size))


# ---------------------------------------------------------------------------------- the runs
SEQUENCE_TASKS = ("classification", "regression", "multilabel", "multiple-choice")


def stage_config(cfg: FinetuneConfig, epochs: float | None) -> FinetuneConfig:
    return cfg if epochs is None else cfg.replace(epochs=epochs)


def run_distill(cfg: DistillConfig, out_dir: str, progress: bool = True) -> dict[str, Any]:
    """Distil ``cfg.teachers`` into a student; writes ``out_dir/best`` (or ``final`` on shards) and
    ``metrics.json`` with the sizes of teacher and student."""
    teachers = load_teachers(cfg.teachers)
    if cfg.data:
        return run_general_distill(cfg, teachers, out_dir, progress)
    ft, options = cfg.finetune, cfg.distill
    if ft.task not in SEQUENCE_TASKS:
        raise UserError(f"distill works with the sequence-level tasks ({', '.join(SEQUENCE_TASKS)}), not {ft.task}")
    check_teachers(teachers, ft.task)
    if options.method == "theseus":
        from .theseus import run_theseus

        return run_theseus(cfg, teachers[0], out_dir, progress)
    student = student_model(cfg, teachers[0])
    if options.method == "tinybert":
        check_heads(student, teachers[0].model)
    if options.method == "bilstm" and student.family != "bilstm":
        raise UserError(f"--method bilstm trains a BiLSTM student (--student bilstm), not a {student.family} model")
    augment = None
    if options.augment:
        from .augment import augmenter

        augment = augmenter(options, ft, teachers[0])
        if options.defaults()["alpha"] < 1:
            raise UserError("augmented examples have no gold labels; distil them with --alpha 1 (soft targets only)")
    networks = [t.model for t in teachers]
    meta = {"distillation": {"method": options.method, "teachers": [os.path.abspath(t.path) for t in teachers],
                             "teacher_parameters": parameters(teachers[0].model), **options.defaults()}}
    stages = {}
    source = as_source(student, teachers[0], cfg.student or "init-student")
    projection = None
    for stage, layer in intermediate_stages(options.method, student.config.num_layers):
        run = FinetuneRun(stage_config(ft, options.intermediate_epochs), source, augment)
        if projection is not None:  # the projection learnt in the previous stage goes on
            run.model.add_helper(PROJECTION, projection)
        add_projection(run.model, networks[0])
        if layer is not None:  # MobileBERT: the layers below (and the embeddings) are fixed already
            for name, param in run.model.named_parameters():
                param.requires_grad_(not frozen_below(name, layer))
        distiller = TaskDistiller(options, networks[:1], components_of(options.method, "intermediate"),
                                  run.task.head_name, ft.task, layer=layer)
        stage_dir = os.path.join(out_dir, stage)
        stages[stage] = run_finetune(run.cfg, stage_dir, progress=progress, run=run, objectives=[distiller],
                                     trainer_options={"write_model": without_helpers((PROJECTION,))}, meta=meta)
        intermediate = run.model
        intermediate.requires_grad_(True)
        projection = intermediate.helpers.pop(PROJECTION) if PROJECTION in intermediate.helpers else None
        source = as_source(intermediate, teachers[0], stage_dir)
    run = FinetuneRun(ft, source, augment)
    check_labels(run, teachers[0])
    components = components_of(options.method, "prediction")
    objectives = []
    if not (options.method in TWO_STAGES and options.defaults()["alpha"] == 0):  # MiniLM: plain fine-tuning
        objectives = [TaskDistiller(options, networks, components, run.task.head_name, ft.task)]
    report = run_finetune(ft, out_dir, progress=progress, run=run, objectives=objectives, meta=meta)
    report["distillation"]["student_parameters"] = parameters(run.model)
    if stages:
        report["stages"] = {name: {"dev": r.get("dev"), "steps": r["steps"]} for name, r in stages.items()}
    atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report


def run_general_distill(cfg: DistillConfig, teachers: list[Pretrained], out_dir: str, progress: bool) -> dict[str, Any]:
    """Distillation on pre-training shards (DistilBERT's, TinyBERT's and MiniLM's general stage):
    the student's final model in ``out_dir/final``, ready for ``ptmzoo finetune`` or ``distill``."""
    from ..data.shards import ShardedCorpus
    from ..objectives import PretrainCollator
    from ..objectives.mlm import MaskedLM, MLMOptions
    from ..train.distributed import setup
    from ..train.pretrain import build_pretrain_dataset
    from ..train.trainer import Trainer, evaluate_loss

    options, teacher = cfg.distill, teachers[0]
    env = setup(cfg.train.device)
    corpus = ShardedCorpus(cfg.data)
    tokenizer = corpus.tokenizer()
    if tokenizer.fingerprint() != teacher.tokenizer.fingerprint():
        raise UserError(f"{cfg.data} was tokenized with another tokenizer than the teacher {teacher.path}; prepare "
                        "the corpus with the teacher's tokenizer")
    student = student_model(cfg, teacher)
    objectives: list[Objective] = []
    if options.method == "distilbert":
        if "mlm" not in teacher.model.heads:
            raise UserError(f"DistilBERT's general distillation needs an MLM teacher; {teacher.path} has no mlm head")
        mlm = MaskedLM(MLMOptions(), tokenizer, cfg.train.seed)
        if "mlm" not in student.heads:
            mlm.attach(student)
        objectives.append(mlm)
    else:
        if options.method == "tinybert":
            check_heads(student, teacher.model)
        add_projection(student, teacher.model)
    distiller = GeneralDistiller(options, [teacher.model], components_of(options.method, "general"))
    objectives.append(distiller)
    seq_len = cfg.seq_len or min(128, teacher.model.backbone.max_length or 128)
    train = cfg.train

    def dataset(split: str, seed: int):
        return build_pretrain_dataset(corpus.split(split), objectives, tokenizer, seq_len, True, seed, train.batch_size)

    train_data = dataset("train", train.seed)
    valid = dataset("valid", train.seed + 1) if corpus.has_split("valid") else None
    collate = PretrainCollator(objectives, tokenizer.pad_id if tokenizer.pad_id is not None else 0)

    def evaluate(model):
        return evaluate_loss(model, valid, collate, env, train.batch_size, train.eval_batches, train.precision,
                             objectives)

    meta = {"distillation": {"method": options.method, "stage": "general", "teachers": [os.path.abspath(teacher.path)],
                             "teacher_parameters": parameters(teacher.model), "seq_len": seq_len}}
    trainer = Trainer(student, train_data, collate, train, out_dir, env, tokenizer=tokenizer, extra_meta=meta,
                      evaluate=evaluate if valid is not None and len(valid) else None, progress=progress,
                      objectives=objectives, write_model=without_helpers((PROJECTION,)))
    result = trainer.train()
    trainer.save_model(os.path.join(out_dir, "final"))
    report = {**meta, "steps": result.step, "stopped_early": result.stopped_early, "valid": result.final_metrics,
              "student_parameters": parameters(student) - sum(
                  p.numel() for p in (student.helpers[PROJECTION].parameters() if PROJECTION in student.helpers else []))}
    if env.is_main:
        atomic_write_json(os.path.join(out_dir, "metrics.json"), report)
    return report


def distill_config(data: dict[str, Any], overrides: list[str]) -> DistillConfig:
    """A DistillConfig from the CLI's settings and ``key=value`` overrides: ``student.KEY`` sets a
    preset student's model config, ``distill.KEY`` the losses, ``train.KEY`` the trainer (the
    task's when distilling on a task)."""
    student, rest = {}, []
    for text in overrides:
        if text.startswith("student."):
            student.update(apply_overrides({}, [text[len("student."):]]))
        elif text.startswith("train.") and data.get("finetune") is not None:
            rest.append("finetune." + text)
        else:
            rest.append(text)
    data = {**data, "student_config": {**data.get("student_config", {}), **student}}
    return DistillConfig.from_dict(apply_overrides(data, rest))
