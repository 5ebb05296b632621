"""Text-to-text fine-tuning (T5; Raffel et al., 2020): every task as text in, text out, with an
encoder-decoder (T5, BART, the Transformer; UniLM too) and no task-specific head.

Inputs are rendered T5-style: the task prefix, then each text behind its field name --
``sst2 sentence: it is a charming film`` or ``mnli premise: ... hypothesis: ...``
(``--prefix``, ``--field-names``; the default names are ``sentence`` for one text and
``sentence1``, ``sentence2`` for pairs, and none for one text with ``text``/``entities`` targets).

Targets (``--target-kind``):

* ``label`` -- classification and pair tasks from the files and columns the classification task
  reads (``--text-column``, ``--text-pair-column``, ``--label-column``, ``--columns``): the
  target is the label's name. ``--label-names`` maps label values to names: ``0=negative,1=positive``,
  or a list (``negative,positive``) or a file of one name per line, naming the labels 0, 1, ...
  in order (THUCNews' ``class.txt``). Without it the label values are the targets.
* ``text`` -- generic text-to-text: the ``--target-column`` as it is.
* ``entities`` -- NER from the files the tagging task reads (CoNLL, CLUENER, JSONL, MSRA TSV): the
  input is the sentence (words joined by spaces, or without for Chinese), the target its entities
  in order, ``TYPE: entity words`` joined by ``; `` -- ``PER: John Smith; LOC: Paris`` -- or
  ``none`` when it has none. An entity containing ``;`` cannot be read back.

Training is the translation task's (``TranslationTask``): teacher-forced cross-entropy on the
target tokens (``--label-smoothing``; T5 used none). Decoding is beam search (``--num-beams``);
with ``--constrained`` the output is restricted to the label names by a prefix tree of their
tokens (``generation.constrained``), with as many beams as labels and no length penalty, which
makes it the label of highest total log-probability.

Outputs and targets are compared as the tokenizer gives them back (decoded, spaces collapsed), so
a lower-casing or space-dropping tokenizer is not held against the model. Metrics: ``score``
(the kind's main metric, which selects the best checkpoint) and ``exact_match`` always; labels:
accuracy, macro-F1 over the labels and MCC, with outputs that are no label counted wrong and
their share reported as ``invalid_rate``; entities: micro precision, recall and F1 of (type, text)
pairs per sentence, ``invalid_rate`` the share of outputs that do not read as the format.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..config import check_choice, setting
from ..errors import UserError
from ..io import atomic_write_text
from ..textio import text_lines
from .base import TextColumns, label_vocabulary
from .classification import classification_metrics
from .qa import LanguageOptions
from .tables import read_table, require_columns
from .tagging import TagFileOptions, TaggingTask, get_entities
from .translation import TargetTextOptions, TranslationTask

NO_ENTITIES = "none"
TARGET_KINDS = ("label", "text", "entities")


@dataclass
class Text2TextOptions(TargetTextOptions, TextColumns, TagFileOptions, LanguageOptions):
    """Text-to-text (T5): inputs rendered as text, targets generated as text."""

    target_kind: str = setting("label", choices=TARGET_KINDS, help="label: the label's name; text: --target-column; "
                                                                   "entities: NER files as 'TYPE: words; ...'")
    prefix: str = setting("", help="task prefix before the input, e.g. sst2")
    field_names: str | None = setting(None, help="names before each text, e.g. premise,hypothesis ('none': no names; "
                                                 "default sentence, or sentence1,sentence2 for pairs)")
    label_names: str | None = setting(None, help="label values to target texts: 0=negative,1=positive, or names of "
                                                 "the labels 0, 1, ... as a list (negative,positive) or a file, one "
                                                 "a line")
    constrained: bool = setting(False, help="decode only label names (a prefix tree of their tokens; exact best "
                                            "label)")

    def validate(self) -> None:
        super().validate()
        check_choice(self.target_kind, TARGET_KINDS, "target kind")
        if self.constrained and self.target_kind != "label":
            raise UserError("--constrained decodes only the label names; it needs --target-kind label")


def normalize(text: str) -> str:
    return " ".join(text.split())


def render_entities(entities: list[tuple[str, str]]) -> str:
    """``PER: John Smith; LOC: Paris`` (``none`` for no entity)."""
    return "; ".join(f"{type_}: {entity}" for type_, entity in entities) or NO_ENTITIES


def parse_entities(text: str, empty: str = NO_ENTITIES) -> tuple[list[tuple[str, str]], bool]:
    """The (type, entity) pairs of a rendered target, and whether all of it reads as the format
    (``empty``: the text that stands for no entity)."""
    text = normalize(text)
    if text in ("", normalize(empty)):
        return [], True
    entities, valid = [], True
    for fragment in text.split(";"):
        if not fragment.strip():
            continue
        type_, colon, entity = (normalize(part) for part in fragment.partition(":"))
        if not (colon and type_ and entity):
            valid = False
            continue
        entities.append((type_, entity))
    return entities, valid


def entity_metrics(gold: list[list[tuple[str, str]]], predicted: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Micro precision, recall and F1 of (type, entity) pairs, matched within each sentence."""
    tp = sum(sum((Counter(g) & Counter(p)).values()) for g, p in zip(gold, predicted))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def label_name_map(spec: str | None, values: list[str]) -> dict[str, str]:
    """Label value -> target text from ``--label-names``; every value in ``values`` must be named."""
    if not spec:
        return {value: value for value in values}
    if "=" in spec:
        names = {}
        for item in spec.split(","):
            value, equals, name = (part.strip() for part in item.partition("="))
            if not (equals and value and name):
                raise UserError(f"--label-names: expected LABEL=NAME pairs separated by commas, found {item!r}")
            names[value] = name
    else:
        if os.path.isfile(spec):
            listed = [line.strip() for line in text_lines(spec) if line.strip()]
        else:
            listed = [name.strip() for name in spec.split(",")]
        if not all(listed):
            raise UserError(f"--label-names: empty name in {spec!r}")
        names = {str(i): name for i, name in enumerate(listed)}
    missing = [value for value in values if value not in names]
    if missing:
        raise UserError(f"label '{missing[0]}' has no name in --label-names (named: {', '.join(names)}); a list or "
                        "file names the labels 0, 1, ...; use LABEL=NAME pairs for other values")
    if len(set(names.values())) < len(names):
        raise UserError("--label-names gives two labels the same name")
    return names


class Text2TextTask(TranslationTask):
    name = "text2text"
    Options = Text2TextOptions
    metric_names = ("score", "exact_match")

    def __init__(self, options, tokenizer, labels, max_positions, label_map: dict[str, str] | None = None):
        super().__init__(options, tokenizer, labels, max_positions)
        self.kind = options.target_kind
        texts = 2 if options.text_pair_column and self.kind != "entities" else 1
        self.field_names = self._field_names(texts)
        self.label_map: dict[str, str] = {}
        if self.kind == "label":
            self.label_map = dict(label_map) if label_map is not None else label_name_map(options.label_names, labels)
            self.labels = list(dict.fromkeys(self.label_map.values()))
            self.label_ids = {name: i for i, name in enumerate(self.labels)}
            if len(self.labels) < 2:
                raise UserError("text-to-text classification needs two or more labels")
            self.label_tokens = tokenizer.encode_batch(self.labels, add_special_tokens=False)
            self.label_forms = {normalize(tokenizer.decode(ids)): i for i, ids in enumerate(self.label_tokens)}
            if len(self.label_forms) < len(self.labels) or not all(self.label_tokens):
                raise UserError(f"the label names {self.labels} are not told apart (or are empty) after "
                                "tokenization; choose other names with --label-names")
        self.trie = None
        if options.constrained:
            from ..generation.constrained import TokenTrie

            self.trie = TokenTrie(self.label_tokens, self.end_id)

    def _field_names(self, texts: int) -> list[str]:
        spec = self.options.field_names
        if spec is None:
            defaults = ["sentence"] if self.kind == "label" else [""]
            return defaults if texts == 1 else ["sentence1", "sentence2"]
        if spec.strip().lower() in ("", "none"):
            return [""] * texts
        names = [name.strip() for name in spec.split(",")]
        if len(names) != texts:
            raise UserError(f"--field-names gives {len(names)} name(s) for {texts} text column(s)")
        return names

    # ---- data -----------------------------------------------------------------------------------
    @classmethod
    def read(cls, path, options, fmt="auto", columns=None):
        if options.target_kind == "entities":
            return TaggingTask.read(path, options, fmt, columns)
        if fmt == "conll":
            raise UserError("--format conll reads NER files; use it with --target-kind entities")
        return read_table(path, fmt, columns)

    @classmethod
    def infer_labels(cls, rows, options, path):
        if options.target_kind == "entities":
            if "tags" not in rows[0]:
                raise UserError(f"{path} has no tags; the training file needs them")
            return sorted({type_ for row in rows for type_, _, _ in get_entities(row["tags"])})
        column = "label_column" if options.target_kind == "label" else "target_column"
        require_columns(rows, path, {column: getattr(options, column)})
        if options.target_kind == "text":
            return []
        return label_vocabulary(r[options.label_column] for r in rows)

    def has_labels(self, rows):
        column = {"label": self.options.label_column, "text": self.options.target_column, "entities": "tags"}
        return column[self.kind] in rows[0]

    def render_input(self, texts: list[str]) -> str:
        """``prefix name1: text1 name2: text2`` (a name left out when empty)."""
        parts = [self.options.prefix.strip()] if self.options.prefix.strip() else []
        parts += [f"{name}: {text}" if name else text for name, text in zip(self.field_names, texts)]
        return " ".join(parts)

    def render(self, rows: list[dict], path: str, with_labels: bool) -> tuple[list[str], list[str] | None]:
        """The input text of each row and, ``with_labels``, its target text."""
        if self.kind == "entities":
            return self._render_entities(rows, path, with_labels)
        opts = self.options
        columns = [opts.text_column] + ([opts.text_pair_column] if opts.text_pair_column else [])
        wanted = {"text_column": opts.text_column, "text_pair_column": opts.text_pair_column}
        target = "label_column" if self.kind == "label" else "target_column"
        if with_labels:
            wanted[target] = getattr(opts, target)
        require_columns(rows, path, wanted)
        sources = [self.render_input([str(row[c]) for c in columns]) for row in rows]
        if not with_labels:
            return sources, None
        if self.kind == "text":
            return sources, [str(row[opts.target_column]) for row in rows]
        return sources, [self.label_name(row[opts.label_column], path, n) for n, row in enumerate(rows, start=1)]

    def label_name(self, value, path: str, number: int) -> str:
        value = str(value)
        if value in self.label_map:
            return self.label_map[value]
        if value in self.label_ids:  # already a name
            return value
        raise UserError(f"{path}: row {number} has label '{value}', which is not among the training labels "
                        f"({', '.join(self.label_map)})")

    def _render_entities(self, rows, path, with_labels):
        language = self.options.language_of(["".join(row["tokens"]) for row in rows])
        joiner = "" if language == "zh" else " "
        sources = [self.render_input([row.get("text") or joiner.join(row["tokens"])]) for row in rows]
        if not with_labels:
            return sources, None
        targets = []
        for number, row in enumerate(rows, start=1):
            if "tags" not in row:
                where = f"{path}:{row['_line']}" if row.get("_line") else f"{path}: row {number}"
                raise UserError(f"{where}: the sentence has no tags")
            entities = [(type_, joiner.join(row["tokens"][first : last + 1]))
                        for type_, first, last in get_entities(row["tags"])]
            targets.append(render_entities(entities))
        return sources, targets

    def encode(self, rows, path, with_labels=True):
        sources, targets = self.render(rows, path, with_labels)
        samples = self.encode_texts(sources, targets)
        for i, (sample, source) in enumerate(zip(samples, sources)):
            sample["source"] = source
            if targets is not None:
                sample["target"] = targets[i]
                if self.kind == "label":
                    sample["label_index"] = self.label_ids[targets[i]]
        return samples

    # ---- decoding and metrics -------------------------------------------------------------------
    def predict(self, model, samples, batch_size, device) -> list[str]:
        """The generated text of each sample (spaces collapsed)."""
        settings = {"num_beams": self.options.num_beams, "max_new_tokens": self.max_length}
        if self.kind == "label":
            settings["max_new_tokens"] = max(map(len, self.label_tokens)) + 1
            if self.trie is not None:  # exact: every label stays among the beams
                settings.update(num_beams=max(self.options.num_beams, len(self.labels)), length_penalty=0.0,
                                constraint=self.trie)
        return [normalize(text) for text in self.generate_texts(model, samples, batch_size, **settings)]

    def target_form(self, sample: dict) -> str:
        """The target as the tokenizer gives it back (the best output the model can produce)."""
        return normalize(self.tokenizer.decode(sample["labels"]))

    def evaluate(self, rows, samples, outputs):
        gold = [self.target_form(s) for s in samples]
        metrics = {"exact_match": float(np.mean([g == o for g, o in zip(gold, outputs)]))}
        if self.kind == "label":
            predicted = np.asarray([self.label_forms.get(o, -1) for o in outputs])
            truth = np.asarray([s["label_index"] for s in samples])
            classes = np.union1d(truth, predicted[predicted >= 0])
            metrics.update(classification_metrics(truth, predicted, classes))
            metrics.update(score=metrics["accuracy"], invalid_rate=float(np.mean(predicted < 0)))
        elif self.kind == "entities":
            empty = normalize(self.tokenizer.decode(self.tokenizer.encode(NO_ENTITIES, add_special_tokens=False)))
            gold_entities = [parse_entities(g, empty)[0] for g in gold]
            parsed = [parse_entities(o, empty) for o in outputs]
            metrics.update(entity_metrics(gold_entities, [entities for entities, _ in parsed]))
            metrics.update(score=metrics["f1"], invalid_rate=float(np.mean([not valid for _, valid in parsed])))
        else:
            metrics["score"] = metrics["exact_match"]
        return {"score": metrics.pop("score"), **metrics}

    def write_predictions(self, path, rows, samples, outputs):
        """TSV: the input text, the target when known, the generated text."""
        has_gold = bool(samples) and "target" in samples[0]

        def cell(text: str) -> str:
            return text.replace("\t", " ").replace("\n", " ")

        lines = ["input\ttarget\tprediction" if has_gold else "input\tprediction"]
        for sample, output in zip(samples, outputs):
            lines.append("\t".join(map(cell, [sample["source"]] + ([sample["target"]] if has_gold else []) + [output])))
        atomic_write_text(path, "\n".join(lines) + "\n")

    # ---- checkpoint -----------------------------------------------------------------------------
    def meta(self):
        return {**super().meta(), "label_map": self.label_map}

    @classmethod
    def from_meta(cls, meta, tokenizer, max_positions) -> Text2TextTask:
        return cls(cls.meta_options(meta), tokenizer, meta.get("labels", []), max_positions,
                   label_map=meta.get("label_map") if meta.get("label_map") else None)


__all__ = ["NO_ENTITIES", "TARGET_KINDS", "Text2TextOptions", "Text2TextTask", "entity_metrics", "label_name_map",
           "parse_entities", "render_entities"]
