"""Pre-training: a recipe (preset + objectives + data + trainer settings) run end to end."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..checkpoint import load as load_checkpoint
from ..config import Config, TrainConfig
from ..data.packing import PackedBlocks, SentencePairs
from ..data.shards import ShardedCorpus, ShardSplit
from ..errors import UserError
from ..io import atomic_write_text
from ..models import backbone_class
from ..models.seq2seq import model_for
from ..objectives import Objective, PretrainCollator, build_objectives
from ..presets import get_preset
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


def build_pretrain_dataset(split: ShardSplit, objectives: list[Objective], tokenizer, seq_len: int,
                           causal: bool, seed: int, document_attention: bool = False,
                           language_ids: tuple[int, ...] | None = None):
    """Sentence pairs when an objective needs them, else packed blocks with no padding. XLM
    (``language_ids`` from the corpus): translation pairs for TLM, else language ids on every token."""
    if language_ids is not None:
        from ..data.parallel import ParallelPairs, WithLanguage

        if any(getattr(o, "needs_parallel", False) for o in objectives):
            return ParallelPairs(split, seq_len, tokenizer.cls_id, tokenizer.sep_id, language_ids)
        if len(language_ids) == 1:
            return WithLanguage(build_pretrain_dataset(split, objectives, tokenizer, seq_len, causal, seed,
                                                       document_attention), language_ids[0])
    try:
        pair_objective = next((o for o in objectives if o.needs_sentence_pairs), None)
        if pair_objective is not None:
            return SentencePairs(split, seq_len, tokenizer.cls_id, tokenizer.sep_id, seed=seed,
                                 **pair_objective.pair_options())
        if not causal:
            if tokenizer.cls_id is None or tokenizer.sep_id is None:
                raise UserError("an encoder needs [CLS] and [SEP] tokens; train a wordpiece or char tokenizer")
            return PackedBlocks(split, seq_len - 2, tokenizer.sep_id, (tokenizer.cls_id,), (tokenizer.sep_id,),
                                document_attention)
        return PackedBlocks(split, seq_len, tokenizer.document_separator_id, document_attention=document_attention)
    except ValueError as exc:
        raise UserError(f"cannot build training sequences: {exc}") from None


class PretrainJob:
    """Everything a pre-training run needs, built from a recipe."""

    def __init__(self, recipe: PretrainRecipe, env: DistEnv | None = None):
        self.recipe = recipe
        self.env = env or setup(recipe.train.device)
        self.preset = get_preset(recipe.preset)
        self.corpus = ShardedCorpus(recipe.data.shards)
        self.tokenizer = self.corpus.tokenizer()
        seed = recipe.train.seed

        model_config = {**self.preset.model, "vocab_size": self.tokenizer.vocab_size, **recipe.model}
        cls = backbone_class(self.preset.family)
        # encoders embed padding (RoBERTa also counts positions) by the tokenizer's pad id
        if "pad_token_id" in cls.config_class.field_types() and self.tokenizer.pad_id is not None:
            model_config.setdefault("pad_token_id", self.tokenizer.pad_id)
        for role in ("bos", "eos"):  # encoder-decoders frame and end their sequences with these
            if f"{role}_token_id" in cls.config_class.field_types() and self.tokenizer.role_id(role) is not None:
                model_config.setdefault(f"{role}_token_id", self.tokenizer.role_id(role))
        if model_config["vocab_size"] < self.tokenizer.vocab_size:
            raise UserError(f"model.vocab_size ({model_config['vocab_size']}) is smaller than the tokenizer's "
                            f"vocabulary ({self.tokenizer.vocab_size})")
        self.entity_names = None  # ERNIE: the entity table is sized and filled from the shards' entity vectors
        entity_table = None
        if "num_entities" in cls.config_class.field_types():
            from ..models.ernie import size_entity_table

            entity_table = size_entity_table(self.corpus, model_config, recipe.model)
            self.entity_names = entity_table[0] if entity_table is not None else None
        config = cls.config_class.from_dict(model_config, where="model.")
        self.seq_len = recipe.data.seq_len or min(self.preset.seq_len, config.max_position_embeddings)
        if self.seq_len > config.max_position_embeddings:
            raise UserError(f"data.seq_len ({self.seq_len}) exceeds the model's max_position_embeddings "
                            f"({config.max_position_embeddings})")

        if not (recipe.objectives or self.preset.objectives):
            raise UserError(f"preset '{recipe.preset}' has no pre-training objective of its own; name one with "
                            "--objectives (encoders: mlm; decoders: clm; encoder-decoders: mass, denoising or "
                            "span_corruption)")
        self.objectives = build_objectives(recipe.objectives or self.preset.objectives, self.tokenizer, seed)
        for objective in self.objectives:
            objective.check_corpus(self.corpus)
        extra_vocab = max(getattr(o, "extra_vocab", 0) for o in self.objectives)  # T5's sentinel ids
        if config.vocab_size < self.tokenizer.vocab_size + extra_vocab:
            config = config.replace(vocab_size=self.tokenizer.vocab_size + extra_vocab)
        seed_everything(seed)
        backbone = cls(config)
        if entity_table is not None:
            backbone.set_entity_vectors(entity_table[1])
        for objective in self.objectives:
            objective.check_backbone(backbone, recipe.preset)
        self.model = model_for(self.preset.family, backbone)  # Seq2SeqModel for encoder-decoders
        for objective in self.objectives:
            self.model.add_head(objective.name, objective.head_kind, **objective.head_options())
        if recipe.init_from:
            self._init_from(recipe.init_from)

        causal = backbone.causal or getattr(backbone, "is_encoder_decoder", False)  # plain blocks: the
        # seq2seq objectives add their own special tokens
        document_attention = recipe.data.document_attention
        from ..objectives.tlm import corpus_language_ids

        languages = corpus_language_ids(self.corpus.meta, config)  # XLM: language ids of the corpus
        self.train_data = build_pretrain_dataset(self.corpus.split("train"), self.objectives, self.tokenizer,
                                                 self.seq_len, causal, seed, document_attention, languages)
        self.valid_data = None
        if self.corpus.has_split("valid"):
            try:
                self.valid_data = build_pretrain_dataset(self.corpus.split("valid"), self.objectives,
                                                         self.tokenizer, self.seq_len, causal, seed + 1,
                                                         document_attention, languages)
            except UserError:
                self.valid_data = None  # held-out split shorter than one sequence
            if self.valid_data is not None and len(self.valid_data) == 0:
                self.valid_data = None
        self.collate = PretrainCollator(self.objectives, self.tokenizer.pad_id
                                        if self.tokenizer.pad_id is not None else self.tokenizer.document_separator_id,
                                        entities=getattr(backbone, "reads_entities", False))

    def _init_from(self, path: str) -> None:
        source = load_checkpoint(path)
        if source.family != self.preset.family:
            raise UserError(f"--init-from {path} is a {source.family} model, the preset is {self.preset.family}")
        if source.meta.get("entities") != self.entity_names:  # ERNIE: entity ids must mean the same entities
            raise UserError(f"--init-from {path} was trained with other entities than the shards in "
                            f"{self.recipe.data.shards}; prepare the corpus with the checkpoint's entity vectors")
        if source.tokenizer is not None and source.tokenizer.fingerprint() != self.tokenizer.fingerprint():
            raise UserError(f"--init-from {path} uses a different tokenizer than the shards in "
                            f"{self.recipe.data.shards}; prepare the corpus with the checkpoint's tokenizer")
        state = {k: v for k, v in source.model.state_dict().items()}
        missing, _ = self.model.load_state_dict(state, strict=False)
        backbone_missing = [k for k in missing if k.startswith("backbone.")]
        if backbone_missing:
            raise UserError(f"--init-from {path} does not fit the preset (missing {backbone_missing[0]}); "
                            "use the checkpoint's architecture")

    def trainer(self, out_dir: str, progress: bool = True, callbacks=None) -> Trainer:
        train = self.recipe.train
        env = self.env

        def evaluate(model):
            return evaluate_loss(model, self.valid_data, self.collate, env, train.batch_size, train.eval_batches,
                                 train.precision)

        extra = {"preset": self.recipe.preset, "objectives": [o.name for o in self.objectives],
                 "seq_len": self.seq_len, "recipe": self.recipe.to_dict()}
        if self.entity_names is not None:  # ERNIE: entity id i is names[i - 1]
            extra["entities"] = self.entity_names
        return Trainer(self.model, self.train_data, self.collate, train, out_dir, env, tokenizer=self.tokenizer,
                       extra_meta=extra, evaluate=evaluate if self.valid_data is not None else None,
                       progress=progress, callbacks=callbacks)


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
    return result
