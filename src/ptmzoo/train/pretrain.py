"""Pre-training: a recipe (preset + objectives + data + trainer settings) run end to end."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..catalog import build_model, family
from ..compress.recorded import training_constraints
from ..config import Config, TrainConfig
from ..data.samples import SampleSettings, build_samples
from ..data.shards import ShardedCorpus, ShardSplit
from ..errors import UserError
from ..io import atomic_write_text
from ..loading import load as load_checkpoint
from ..models.model import PtmModel
from ..objectives import (
    OBJECTIVES,
    Objective,
    PretrainCollator,
    build_objectives,
    sample_kind,
)
from ..presets import get_preset
from .diagnostics import pretraining_warnings, report_warnings
from .distributed import DistEnv, setup
from .trainer import Trainer, TrainResult, evaluate_loss, seed_everything

RECIPE_FILE = "recipe.yaml"


@dataclass
class DataConfig(Config):
    shards: str = ""  # directory written by `ptmzoo prepare`
    seq_len: int | None = None  # default: the preset's
    document_attention: bool = False  # packed documents attend only within themselves

    def validate(self) -> None:
        if self.seq_len is not None and self.seq_len < 4:  # room for [CLS], [SEP] and a token or two
            raise UserError(f"data.seq_len (--seq-len) must be at least 4, not {self.seq_len}")


@dataclass
class PretrainRecipe(Config):
    preset: str = ""
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's architecture
    objectives: dict[str, Any] | None = None  # default: the preset's objectives
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None  # continue pre-training from this checkpoint's weights

    def validate(self) -> None:
        if not self.preset:
            raise UserError("no preset given; use --preset (e.g. bert-tiny) or a recipe with 'preset:'")
        if not self.data.shards:
            raise UserError("no data given; use --data with a directory made by `ptmzoo prepare`")


def build_pretrain_dataset(split: ShardSplit, objectives: list[Objective], tokenizer, seq_len: int, framed: bool,
                           seed: int, batch_size: int, document_attention: bool = False,
                           segment_ids: tuple[int, ...] | None = None):
    """The samples the objectives declare (``Objective.samples``; ``data.samples`` builds them)."""
    kind = sample_kind(objectives)
    options = {}
    for objective in objectives:
        if objective.samples == kind:
            options.update(objective.sample_options())
    settings = SampleSettings(tokenizer, seq_len, framed, seed, batch_size, document_attention, segment_ids, options)
    return build_samples(kind, split, settings)


class PretrainJob:
    """Everything a pre-training run needs, built from a recipe. With ``model`` (a trained one,
    for ``evaluate --data``), the job's data, objectives and evaluation come with that model."""

    def __init__(self, recipe: PretrainRecipe, env: DistEnv | None = None, model: PtmModel | None = None):
        self.recipe = recipe
        self.env = env or setup(recipe.train.device)
        self.preset = get_preset(recipe.preset)
        self.corpus = ShardedCorpus(recipe.data.shards)
        self.tokenizer = self.corpus.tokenizer()
        self.corpus_meta: dict[str, Any] = {}
        seed = recipe.train.seed
        spec = family(self.preset.family)

        if not (recipe.objectives or self.preset.objectives):
            raise UserError(f"preset '{recipe.preset}' has no pre-training objective of its own; name one with "
                            "--objectives (encoders: mlm; decoders: clm; encoder-decoders: mass, denoising or "
                            "span_corruption)")
        self.objectives = build_objectives(recipe.objectives or self.preset.objectives, self.tokenizer, seed)
        for objective in self.objectives:
            objective.check_corpus(self.corpus)
        model_config = {**self.preset.model, "vocab_size": self.tokenizer.vocab_size, **recipe.model}
        # the corpus completes the config: special token ids, ERNIE's entity table
        model_config = spec.backbone.config_from_corpus(model_config, self.tokenizer, self.corpus, recipe.model)
        if model_config["vocab_size"] < self.tokenizer.vocab_size:
            raise UserError(f"model.vocab_size ({model_config['vocab_size']}) is smaller than the tokenizer's "
                            f"vocabulary ({self.tokenizer.vocab_size})")
        extra_vocab = max(o.extra_vocab for o in self.objectives)  # T5's sentinel ids
        model_config["vocab_size"] = max(model_config["vocab_size"], self.tokenizer.vocab_size + extra_vocab)
        config = spec.config_class.from_dict(model_config, where="model.")

        if model is None:
            seed_everything(seed)
            model = build_model(self.preset.family, config.to_dict())
            self.corpus_meta = model.backbone.load_corpus_data(self.corpus)  # recorded in ptmzoo.json
        self.model = model
        backbone = model.backbone
        self.seq_len = recipe.data.seq_len or min(self.preset.seq_len, backbone.max_length or self.preset.seq_len)
        if backbone.max_length is not None and self.seq_len > backbone.max_length:
            raise UserError(f"data.seq_len ({self.seq_len}) exceeds the model's max_position_embeddings "
                            f"({backbone.max_length})")
        for objective in self.objectives:
            objective.check_backbone(backbone, recipe.preset)
            if objective.name not in model.heads:
                objective.attach(model)
        self.after_step, self.carried = None, {}  # what a compressed --init-from requires (compress.recorded)
        if recipe.init_from:
            self._init_from(recipe.init_from)

        # encoders frame their blocks; decoders and encoder-decoders (whose objectives add their own
        # special tokens) read the raw stream
        framed = not (backbone.causal or backbone.is_encoder_decoder)
        segments = backbone.corpus_segment_ids(self.corpus.meta)  # XLM: language ids of the corpus

        self._framed, self._segments = framed, segments
        self.train_data = self.dataset("train", seed) if self.corpus.has_split("train") else None
        self.valid_data = None
        if self.corpus.has_split("valid"):
            try:
                self.valid_data = self.dataset("valid", seed + 1)
            except UserError:
                self.valid_data = None  # held-out split shorter than one sequence
            if self.valid_data is not None and len(self.valid_data) == 0:
                self.valid_data = None
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else self.tokenizer.document_separator_id
        self.collate = PretrainCollator(self.objectives, pad_id, backbone.derived_inputs, self.tokenizer)

    def _init_from(self, path: str) -> None:
        source = load_checkpoint(path)
        if source.family != self.preset.family:
            raise UserError(f"--init-from {path} is a {source.family} model, the preset is {self.preset.family}")
        for key, value in self.corpus_meta.items():  # ERNIE: entity ids must mean the same entities
            if source.meta.get(key) != value:
                raise UserError(f"--init-from {path} was trained with other {key} than the shards in "
                                f"{self.recipe.data.shards}; prepare the corpus with the checkpoint's {key}")
        if source.tokenizer is not None and source.tokenizer.fingerprint() != self.tokenizer.fingerprint():
            raise UserError(f"--init-from {path} uses a different tokenizer than the shards in "
                            f"{self.recipe.data.shards}; prepare the corpus with the checkpoint's tokenizer")
        state = {k: v for k, v in source.model.state_dict().items()}
        missing, _ = self.model.load_state_dict(state, strict=False)
        backbone_missing = [k for k in missing if k.startswith("backbone.")]
        if backbone_missing:
            raise UserError(f"--init-from {path} does not fit the preset (missing {backbone_missing[0]}); "
                            "use the checkpoint's architecture")
        self.after_step, self.carried = training_constraints(self.model, source.meta, f"--init-from {path}")

    def dataset(self, split: str, seed: int):
        """The samples of a corpus split, as the objectives declare them."""
        recipe = self.recipe
        return build_pretrain_dataset(self.corpus.split(split), self.objectives, self.tokenizer, self.seq_len,
                                      self._framed, seed, recipe.train.batch_size, recipe.data.document_attention,
                                      self._segments)

    @property
    def shuffles(self) -> bool:
        """Stream samples are read in order (each row continues its text); the others shuffled."""
        return sample_kind(self.objectives) != "stream"

    def evaluate(self, model) -> dict[str, float]:
        """Held-out losses of the run's objectives (what ``evaluate --data`` reports too)."""
        train = self.recipe.train
        return evaluate_loss(model, self.valid_data, self.collate, self.env, train.batch_size, train.eval_batches,
                             train.precision, self.objectives)

    def trainer(self, out_dir: str, progress: bool = True, callbacks=None) -> Trainer:
        extra = {"preset": self.recipe.preset, "objectives": [o.name for o in self.objectives],
                 "seq_len": self.seq_len, "recipe": self.recipe.to_dict(), **self.corpus_meta}
        extra.update(self.carried)
        return Trainer(self.model, self.train_data, self.collate, self.recipe.train, out_dir, self.env,
                       tokenizer=self.tokenizer, extra_meta=extra,
                       evaluate=self.evaluate if self.valid_data is not None else None, progress=progress,
                       callbacks=callbacks, objectives=self.objectives, shuffle=self.shuffles, after_step=self.after_step)


def save_recipe(recipe: PretrainRecipe, out_dir: str) -> None:
    atomic_write_text(os.path.join(out_dir, RECIPE_FILE), yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def run_pretrain(recipe: PretrainRecipe, out_dir: str, resume: str | bool | None = None,
                 progress: bool = True, callbacks=None) -> TrainResult:
    job = PretrainJob(recipe)
    if job.env.is_main:
        os.makedirs(out_dir, exist_ok=True)
        if not resume:
            save_recipe(recipe, out_dir)
    trainer = job.trainer(out_dir, progress, callbacks)
    try:
        result = trainer.train(resume)
    finally:  # a resume that failed leaves the run's recipe as it was
        if resume and trainer.resumed_from and job.env.is_main:
            save_recipe(recipe, out_dir)
    trainer.save_model(os.path.join(out_dir, "final"))
    if job.env.is_main:  # signs that it learned nothing: on stderr and as the last record of metrics.jsonl
        path = os.path.join(out_dir, "metrics.jsonl")
        report_warnings(pretraining_warnings(result.final_metrics, job.corpus, path), path, result.step)
    return result


def evaluate_on_shards(pretrained, shards: str, split: str = "valid", batch_size: int = 32,
                       max_batches: int | None = None) -> dict[str, float]:
    """The held-out losses of a pre-trained checkpoint's objectives on a split of shards, through
    its pre-training job's own evaluation (so every objective's checkpoint can be evaluated). A
    checkpoint without a recipe (from Hugging Face) is evaluated with the objectives of its heads."""
    if pretrained.tokenizer is not None:
        corpus = ShardedCorpus(shards)
        if corpus.meta["tokenizer"]["fingerprint"] != pretrained.tokenizer.fingerprint():
            raise UserError(f"{shards} was tokenized with a different tokenizer than {pretrained.path}; "
                            "prepare the corpus with the checkpoint's tokenizer")
    recipe = dict(pretrained.meta.get("recipe") or {})
    if not recipe:
        objectives = [name for name, head in pretrained.model.heads.items() if name in OBJECTIVES]
        if not objectives:
            raise UserError(f"{pretrained.path} has no pre-training head to evaluate on shards "
                            f"(heads: {', '.join(pretrained.model.heads) or 'none'})")
        preset = next((p.name for p in family(pretrained.family).presets), None)
        recipe = {"preset": preset, "objectives": {name: {} for name in objectives},
                  "data": {"seq_len": pretrained.meta.get("seq_len", 128)}}
    recipe["data"] = {**recipe.get("data", {}), "shards": shards}
    recipe["init_from"] = None
    recipe.setdefault("train", {})["batch_size"] = batch_size
    job = PretrainJob(PretrainRecipe.from_dict(recipe), DistEnv(device=next(pretrained.model.parameters()).device),
                      model=pretrained.model)
    data = job.dataset(split, job.recipe.train.seed + 1)
    return evaluate_loss(pretrained.model, data, job.collate, job.env, batch_size, max_batches, "auto", job.objectives)
