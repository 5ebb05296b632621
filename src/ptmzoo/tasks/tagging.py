"""Token classification (NER, chunking): one tag per word, optionally with a CRF layer.

Input: CoNLL columns (first column the word, last the tag, blank lines between sentences,
``-DOCSTART-`` lines skipped), JSON/JSONL rows with word and tag lists, TSV/CSV cells with
space-separated words and tags (MSRA NER), or CLUENER's span JSON (``{"text", "label": {type:
{entity: [[start, end]]}}}``, end inclusive), which becomes one BIO tag per character (of
nested entities the outer one).

A CoNLL file whose tokens carry a position digit (Weibo NER's ``科0 技1``: the character and its
place in its word) is refused in one line unless ``--strip-position-suffix`` drops the digits.

Prediction inputs (``ptmzoo predict``, ``read_inputs``): the labelled formats, CoNLL without tags
(one token a line), plain text (``--format text``, or a ``.txt`` file whose lines are not
``token tag`` pairs of the model's tags: one sentence a line, whitespace words, CJK characters
one by one, a character tokenizer's characters), and JSON(L) ``{"text": ...}`` split by the
model's own word rule (its tokenizer's pre-tokenization: words and punctuation for an English
WordPiece model, characters for Chinese BERT). Predictions carry the tag names, each word's score
(the softmax probability of its tag at its first sub-token; with ``--crf`` of the emissions) and,
for text inputs, the character spans of the entities.

Schemes: BIO (IOB2), IOB1 and BIOES. IOB1 files are trained as BIO -- every I- tag that starts
an entity becomes B- -- which keeps every entity as seqeval reads it and leaves valid BIO
unchanged. BIOES is kept as it is.

Sub-words: each word is tokenized on its own; the first sub-token carries the tag and the
others (and the special tokens) the ignored target -100. A word that yields no sub-token
(whitespace in CLUENER text) is fed as the unknown token. Words past ``--max-length`` are
predicted O.

Metrics: entity-level precision/recall/F1 exactly as ``seqeval`` computes them -- the default
(lenient, CoNLL-script) mode over the sentences joined by O, and strict mode with the scheme's
own chunking rules (IOB2 or IOBES) -- plus token accuracy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_choice, setting
from ..errors import UserError, require_file
from ..io import atomic_write_text
from ..models.model import Head, unwrap
from ..textio import open_text
from .base import SpecialTokens, Task, TaskOptions, pad, write_jsonl
from .crf import CRF, pack
from .tables import looks_like_data, no_header_hint, read_json_records, read_table

SCHEMES = ("auto", "bio", "iob1", "bioes")


@dataclass
class TagFileOptions(TaskOptions):
    """Files of words and their tags (CoNLL, JSON(L), TSV cells; CLUENER spans)."""

    tokens_column: str = setting("tokens", help="the words (a list, or space-separated)")
    tags_column: str = setting("tags", help="the tags (a list, or space-separated)")
    scheme: str = setting("auto", choices=SCHEMES, help="tag scheme of the files (iob1 is trained as bio)")
    strip_position_suffix: bool = setting(False, help="CoNLL tokens that end in their position in the word "
                                                      "(Weibo NER's 科0 技1): drop the digits")

    def validate(self) -> None:
        super().validate()
        check_choice(self.scheme, SCHEMES, "tag scheme")


@dataclass
class TaggingOptions(TagFileOptions):
    """Token classification."""

    crf: bool = setting(False, help="a CRF layer with Viterbi decoding")


# ---- schemes and entities -----------------------------------------------------------------------
def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) as seqeval's default mode reads a tag: 'B-PER' -> ('B', 'PER'), 'O' -> ('O', '_')."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_end(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_))


def _chunk_start(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_))


def get_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity in one tag sequence: seqeval's default-mode chunking."""
    entities = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        tag, type_ = split_tag(chunk)
        if _chunk_end(prev_tag, tag, prev_type, type_):
            entities.append((prev_type, begin, i - 1))
        if _chunk_start(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return entities


# Strict mode: seqeval.scheme's patterns (previous prefixes, current prefixes, same type?) with
# None = any type. IOB1 is listed for completeness: files in it are trained as IOB2.
_ANY = "IOBES"
STRICT_SCHEMES = {
    "iob2": {"allowed": "IOB",
             "start": [(_ANY, "B", None)],
             "inside": [("B", "I", True), ("I", "I", True)],
             "end": [("I", "O", None), ("I", "I", False), ("I", "B", None), ("B", "O", None), ("B", "I", False),
                     ("B", "B", None)]},
    "iob1": {"allowed": "IOB",
             "start": [("O", "I", None), ("I", "I", False), ("B", "I", None), ("I", "B", True), ("B", "B", True)],
             "inside": [("B", "I", True), ("I", "I", True)],
             "end": [("I", "I", False), ("I", "O", None), ("I", "B", None), ("B", "O", None), ("B", "I", False),
                     ("B", "B", True)]},
    "iobes": {"allowed": "IOBES",
              "start": [(_ANY, "B", None), (_ANY, "S", None)],
              "inside": [("B", "I", True), ("B", "E", True), ("I", "I", True), ("I", "E", True)],
              "end": [("S", _ANY, None), ("E", _ANY, None)]},
}


def get_entities_strict(tags: list[str], scheme: str) -> list[tuple[str, int, int]]:
    """(type, first, last) of each well-formed entity under ``scheme`` (seqeval's strict mode:
    ill-formed chunks such as an I- without its B- in IOB2 are not entities)."""
    rules = STRICT_SCHEMES[scheme]
    tokens = [(t[0], t[1:].strip("-") or "_") for t in tags] + [("O", "_")]
    for prefix, _ in tokens:
        if prefix not in rules["allowed"]:
            raise UserError(f"tag prefix '{prefix}' is not allowed in the {scheme.upper()} scheme")

    def matches(kind, prev, cur):
        return any(prev[0] in p and cur[0] in c and (same is None or (prev[1] == cur[1]) == same)
                   for p, c, same in rules[kind])

    entities, i, prev = [], 0, ("O", "_")
    while i < len(tokens):
        token = tokens[i]
        if matches("start", prev, token):
            end, inner = len(tags) - 1, token
            for j in range(i + 1, len(tokens)):
                if not matches("inside", inner, tokens[j]):
                    end = j
                    break
                inner = tokens[j]
            if matches("end", tokens[end - 1], tokens[end]):
                entities.append((token[1], i, end - 1))
            i = end
        else:
            i += 1
        prev = tokens[i - 1]
    return entities


def entity_scores(gold: list[list[str]], predicted: list[list[str]], mode: str = "default",
                  scheme: str = "iob2") -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences, as ``seqeval.metrics``
    (``mode=None`` or ``mode="strict", scheme=...``) with zero_division 0."""
    return _prf(*_entity_sets(gold, predicted, mode, scheme))


def _entity_sets(gold, predicted, mode, scheme):
    """The (sentence, type, first, last) entities of gold and predicted, as ``entity_scores`` counts them."""
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tag sequences differ in length")
    if mode == "default":  # seqeval joins the sentences with an O between them
        def entities(seqs):
            return {(0, *e) for e in get_entities([t for s in seqs for t in list(s) + ["O"]])}
    else:
        def entities(seqs):
            return {(n, *e) for n, s in enumerate(seqs) for e in get_entities_strict(s, scheme)}
    return entities(gold), entities(predicted)


def _prf(true: set, pred: set) -> dict[str, float]:
    tp = len(true & pred)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(true) if true else 0.0
    denominator = precision + recall
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (denominator if denominator else 1.0)}


def entity_scores_by_type(gold: list[list[str]], predicted: list[list[str]], mode: str = "default",
                          scheme: str = "iob2") -> dict[str, dict[str, float]]:
    """Per entity type: precision, recall, F1 and support (gold entities), as seqeval's
    ``classification_report`` (conlleval-style); types in sorted order."""
    true, pred = _entity_sets(gold, predicted, mode, scheme)
    out = {}
    for type_ in sorted({e[1] for e in true | pred}):
        t, p = {e for e in true if e[1] == type_}, {e for e in pred if e[1] == type_}
        out[type_] = {**_prf(t, p), "support": len(t)}
    return out


def write_per_type_tsv(path: str, per_type: dict[str, dict[str, float]]) -> None:
    """``per_type.tsv``: type, precision, recall, f1, support, one row per entity type."""
    lines = ["type\tprecision\trecall\tf1\tsupport"]
    lines += [f"{t}\t{s['precision']:.4f}\t{s['recall']:.4f}\t{s['f1']:.4f}\t{s['support']}" for t, s in per_type.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def iob1_to_bio(tags: list[str]) -> list[str]:
    """B- for every tag that starts an entity (IOB1 and BIO alike); valid BIO is unchanged."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def spans_to_bio(text: str, spans: list[tuple[str, int, int]], where: str) -> list[str]:
    """Character BIO tags of ``text`` from (type, start, end inclusive) spans. BIO cannot nest:
    of overlapping spans the outer (earlier, then longer) one is kept, as CLUENER is usually read."""
    tags = ["O"] * len(text)
    for type_, start, end in sorted(spans, key=lambda s: (s[1], s[1] - s[2])):
        if not 0 <= start <= end < len(text):
            raise UserError(f"{where}: entity span [{start}, {end}] is outside the text ({len(text)} characters)")
        if all(t == "O" for t in tags[start : end + 1]):
            tags[start : end + 1] = ["B-" + type_] + ["I-" + type_] * (end - start)
    return tags


# ---- reading ------------------------------------------------------------------------------------
POSITION_SUFFIX = re.compile(r"^(\D)(\d{1,2})$")  # a character and its place in its word: 科0


def read_conll(path: str, strip_position_suffix: bool = False, tags_required: bool = True) -> list[dict]:
    """Sentences of a CoNLL column file: the word in the first column, the tag in the last. With
    ``tags_required=False`` (prediction inputs) lines may hold the word alone; the rows then have
    no tags unless every line has one."""
    require_file(path, "data file")
    rows: list[dict] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    untagged = 0
    with open_text(path) as fh:
        for number, line in enumerate(fh, start=1):
            cells = line.split()
            if not cells or cells[0] == "-DOCSTART-":
                if words:
                    rows.append({"tokens": words, "tags": tags, "_line": first_line})
                words, tags = [], []
                continue
            if len(cells) < 2:
                if tags_required:
                    raise UserError(f"{path}:{number}: expected a word and a tag separated by spaces or tabs, "
                                    f"found {line.strip()!r}")
                untagged += 1
            if not words:
                first_line = number
            words.append(cells[0])
            tags.append(cells[-1] if len(cells) > 1 else "")
    if words:
        rows.append({"tokens": words, "tags": tags, "_line": first_line})
    if not rows:
        raise UserError(f"{path} has no sentences")
    if untagged:
        rows = [{"tokens": r["tokens"], "_line": r["_line"]} for r in rows]
    return _position_suffixes(rows, path, strip_position_suffix)


def _position_suffixes(rows: list[dict], path: str, strip: bool) -> list[dict]:
    """Rows whose tokens lose a position suffix (``strip``); else an error when nearly every token
    has one, as in Weibo NER's char+position files."""
    tokens = [t for r in rows for t in r["tokens"]]
    suffixed = sum(bool(POSITION_SUFFIX.match(t)) for t in tokens)
    if not strip:
        if len(tokens) >= 5 and suffixed >= 0.9 * len(tokens):
            row = next(r for r in rows if any(POSITION_SUFFIX.match(t) for t in r["tokens"]))
            examples = " ".join(t for t in row["tokens"][:3])
            raise UserError(f"{path}:{row['_line']}: {suffixed / len(tokens):.0%} of the tokens are one character "
                            f"and a digit ({examples} ...): a position suffix, as in Weibo NER's char+position "
                            "files; the model would learn the digits as part of the words -- pass "
                            "--strip-position-suffix to read the characters alone")
        return rows
    for row in rows:
        row["tokens"] = [POSITION_SUFFIX.sub(r"\1", t) for t in row["tokens"]]
    return rows


def cluener_row(record: dict, where: str) -> dict:
    text = record["text"]
    spans = []
    for type_, entities in (record.get("label") or {}).items():
        for entity, positions in entities.items():
            for position in positions:
                if not (isinstance(position, list) and len(position) == 2):
                    raise UserError(f"{where}: entity {entity!r} needs [start, end] positions, found {position!r}")
                start, end = position
                if text[start : end + 1] != entity:
                    raise UserError(f"{where}: entity {entity!r} is not at [{start}, {end}] of the text "
                                    f"(found {text[start:end + 1]!r})")
                spans.append((type_, start, end))
    return {"tokens": list(text), "tags": spans_to_bio(text, spans, where), "text": text}


TABLE_SUFFIXES = (".json", ".jsonl", ".tsv", ".csv")  # other files are CoNLL (or, to predict, plain text)


def read_tagged(path: str, options, fmt: str = "auto", columns: list[str] | None = None) -> list[dict]:
    """Rows ``{"tokens": [...], "tags": [...]}`` (tags absent in unlabelled files)."""
    name = path.lower()
    if fmt == "conll" or (fmt == "auto" and not name.endswith(TABLE_SUFFIXES)):
        return read_conll(path, options.strip_position_suffix)
    records = read_json_records(path) if fmt in ("auto", "jsonl") and name.endswith((".json", ".jsonl")) \
        else read_table(path, fmt, columns)
    rows = []
    for number, record in enumerate(records, start=1):
        line = record.pop("_line", None)
        where = f"{path}:{line}" if line else f"{path}: row {number}"
        if isinstance(record.get("text"), str) and options.tokens_column not in record:
            row = cluener_row(record, where) if "label" in record else {"tokens": list(record["text"]),
                                                                            "text": record["text"]}
            if "id" in record:  # CLUENER's test rows: kept for the predictions
                row["id"] = record["id"]
            rows.append({**row, "_line": line} if line else row)
            continue
        row = {"_line": line} if line else {}
        for key, column in (("tokens", options.tokens_column), ("tags", options.tags_column)):
            if column not in record:
                if key == "tags":
                    continue
                header = getattr(record, "header", None)
                if header is not None and looks_like_data(header):
                    raise UserError(f"{where}: no '{column}' column; "
                                    f"{no_header_hint(header, ['tokens', 'tags'], '--tokens-column, --tags-column')}")
                raise UserError(f"{where}: no '{column}' field; give the words with --tokens-column (or CLUENER "
                                "rows with 'text' and 'label')")
            value = record[column]
            row[key] = value.split() if isinstance(value, str) else [str(v) for v in value]
        if "tags" in row and len(row["tags"]) != len(row["tokens"]):
            raise UserError(f"{where}: {len(row['tokens'])} words but {len(row['tags'])} tags; expected one tag "
                            "per word")
        rows.append(row)
    return rows


_CJK_OR_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]|[^\s\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")


def as_bio(rows: list[dict], options) -> list[dict]:
    """IOB1 tags read as BIO (BIOES rows and ``--scheme bioes`` kept as they are)."""
    for row in rows:
        if "tags" in row and options.scheme != "bioes" and not any(t[:2] in ("E-", "S-") for t in row["tags"]):
            row["tags"] = iob1_to_bio(row["tags"])
    return rows


_TAG_LIKE = re.compile(r"^(O|[BIESLU]-\S+)$")


class Tagged(list):
    """The predicted tags of one sentence, with ``scores``: each word's probability of its tag."""

    scores: list[float]


def plain_text_lines(path: str, labels: list[str]) -> bool:
    """Whether a CoNLL-looking file is plain text to tag: not mostly lines of ``token ... tag``
    whose last cell is one of the model's ``labels`` or looks like a tag (O, B-X, I-X ...), and
    not one token a line between blank lines (CoNLL without tags)."""
    cells, blank, started = [], False, False
    with open_text(path) as fh:
        for line in fh:
            parts = line.split()
            if parts:
                cells.append(parts)
                started = True
            elif started:
                blank = True
    if not cells:
        return False
    if all(len(c) == 1 for c in cells):
        return not blank
    known = set(labels)
    tagged = sum(len(c) > 1 and (c[-1] in known or bool(_TAG_LIKE.match(c[-1]))) for c in cells)
    return tagged < 0.5 * len(cells)


# ---- the task -----------------------------------------------------------------------------------
class TaggingHead(Head):
    """A linear layer over every token; with ``crf`` a CRF over the labelled positions (the first
    sub-token of each word), trained by its negative log-likelihood and decoded by Viterbi."""

    kind = "tagging"
    target_key = "labels"

    def __init__(self, backbone, num_labels: int = 2, crf: bool = False, dropout: float = 0.1):
        super().__init__(backbone, num_labels=num_labels, crf=crf, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=backbone.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)
        self.crf = CRF(num_labels) if crf else None

    def logits(self, out, batch):
        return self.classifier(self.dropout(out.last_hidden_state))

    def loss_sum(self, out, batch):
        logits = self.logits(out, batch).float()
        labels = batch[self.target_key]
        if self.crf is None:
            return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        emissions, mask = pack(logits, labels != -100)
        tags, _ = pack(labels, labels != -100)
        return self.crf.nll(emissions, tags, mask).sum()

    def decode(self, logits: torch.Tensor, word_mask: torch.Tensor) -> list[list[int]]:
        """Tag ids at the ``word_mask`` positions of each row."""
        emissions, mask = pack(logits, word_mask)
        if self.crf is not None:
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(-1)
        return [best[b, : int(n)].tolist() for b, n in enumerate(mask.sum(1))]


class TaggingTask(Task):
    name = "tagging"
    Options = TaggingOptions
    head = TaggingHead
    metric_names = ("f1", "strict_f1", "token_accuracy")
    prediction_suffix = ".jsonl"
    endpoint = "tag"

    def __init__(self, options, tokenizer, labels, max_positions):
        super().__init__(options, tokenizer, labels, max_positions)
        self.special = SpecialTokens(tokenizer)
        self.unk_id = tokenizer.unk_id if tokenizer.unk_id is not None else self.pad_id
        # the scheme the model's tags are in (IOB1 files are trained as BIO)
        self.scheme = "iobes" if any(t[:2] in ("E-", "S-") for t in self.labels) else "iob2"

    @classmethod
    def read(cls, path, options, fmt="auto", columns=None):
        return as_bio(read_tagged(path, options, fmt, columns), options)

    def read_inputs(self, path, fmt="auto", columns=None):
        """Prediction inputs: the labelled formats, CoNLL without tags, plain text (one sentence a
        line) and JSON(L) ``{"text"}`` rows split by the model's word rule."""
        if fmt not in ("auto", "text", "conll") or (fmt == "auto" and path.lower().endswith(TABLE_SUFFIXES)):
            rows = self.read(path, self.options, fmt, columns)
            for row in rows:  # unlabelled text: the model's words, not characters
                if "text" in row and "tags" not in row:
                    row["tokens"], row["offsets"] = self.words(row["text"])
            return rows
        if fmt == "text" or (fmt == "auto" and plain_text_lines(path, self.labels)):
            return self.read_plain_text(path)
        return as_bio(read_conll(path, self.options.strip_position_suffix, tags_required=False), self.options)

    def read_plain_text(self, path: str) -> list[dict]:
        """One sentence a line: whitespace words with CJK characters one by one (a character
        tokenizer: every character)."""
        require_file(path, "data file")
        rows = []
        with open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                pattern = re.compile(r"\S") if self.tokenizer.kind == "char" else _CJK_OR_RUN
                found = list(pattern.finditer(text))
                rows.append({"tokens": [m.group() for m in found], "offsets": [list(m.span()) for m in found],
                             "text": text, "_line": number})
        if not rows:
            raise UserError(f"{path} has no sentences")
        return rows

    def words(self, text: str) -> tuple[list[str], list[list[int]]]:
        """The words of ``text`` by the model's own rule -- its tokenizer's normalisation and
        pre-tokenization (BERT: words and punctuation, CJK characters alone; a character
        tokenizer: characters) -- with their [start, end) character offsets in ``text``."""
        encoding = self.tokenizer.backend.encode(text, add_special_tokens=False)
        spans: dict[int, list[int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
            if word is not None and end > start:
                span = spans.setdefault(word, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
        tokens, offsets = [], []
        for start, end in spans.values():
            piece = text[start:end]
            start, end = start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())
            if end > start:  # a byte-level BPE word carries the space before it
                tokens.append(text[start:end])
                offsets.append([start, end])
        return tokens, offsets

    @classmethod
    def infer_labels(cls, rows, options, path):
        if "tags" not in rows[0]:
            raise UserError(f"{path} has no tags; the training file needs them")
        labels = sorted({t for r in rows for t in r["tags"]}, key=lambda t: (t != "O", t[2:], t))
        if len(labels) < 2:
            raise UserError(f"{path} has only the tag {labels[0]!r}; tagging needs two or more")
        return labels

    def has_labels(self, rows):
        return "tags" in rows[0]

    def encode(self, rows, path, with_labels=True):
        words = [w for r in rows for w in r["tokens"]]
        pieces = [ids or [self.unk_id] for ids in
                  (e.ids for e in self.tokenizer.backend.encode_batch(words, add_special_tokens=False))]
        budget = self.max_length - self.special.count(1)
        samples, k = [], 0
        for number, row in enumerate(rows, start=1):
            row_pieces, starts, used = [], [], 0
            for ids in pieces[k : k + len(row["tokens"])]:
                if used + len(ids) > budget:
                    break  # the words that do not fit are predicted O
                starts.append(len(row_pieces))
                row_pieces += ids
                used += len(ids)
            k += len(row["tokens"])
            input_ids, type_ids, (offset,) = self.special.build(row_pieces)
            sample = {"input_ids": input_ids, "token_type_ids": type_ids,
                      "word_starts": [offset + s for s in starts], "num_words": len(row["tokens"])}
            if with_labels:
                if "tags" not in row:
                    raise UserError(f"{path}: row {number} has no tags")
                labels = [-100] * len(input_ids)
                for position, tag in zip(sample["word_starts"], row["tags"]):
                    if tag not in self.label_ids:
                        where = f"{path}:{row['_line']}" if "_line" in row else f"{path}: row {number}"
                        raise UserError(f"{where}: tag '{tag}' is not among the training tags "
                                        f"({', '.join(self.labels)})")
                    labels[position] = self.label_ids[tag]
                sample["labels"] = labels
            samples.append(sample)
        return samples

    def collate(self, samples):
        batch = super().collate(samples)
        if "labels" in samples[0]:
            batch["labels"] = pad([s["labels"] for s in samples], -100)
        return batch

    def head_options(self, backbone):
        return {"num_labels": len(self.labels), "crf": self.options.crf}

    def predict(self, model, samples, batch_size, device) -> list[Tagged]:
        """The predicted tag of every word, with its probability (``Tagged.scores``; a word past
        --max-length: O with score 0)."""

        head = unwrap(model).heads[self.head_name]

        def tagged(chunk: list[dict], logits: torch.Tensor) -> list[Tagged]:
            word_mask = torch.zeros(logits.shape[:2], dtype=torch.bool)
            for row, sample in enumerate(chunk):
                word_mask[row, sample["word_starts"]] = True
            probabilities = torch.softmax(logits, dim=-1)
            out = []
            for row, (sample, ids) in enumerate(zip(chunk, head.decode(logits, word_mask))):
                missing = sample["num_words"] - len(ids)
                tags = Tagged([self.labels[i] for i in ids] + ["O"] * missing)
                chosen = probabilities[row, sample["word_starts"][: len(ids)]]
                tags.scores = chosen[torch.arange(len(ids)), torch.as_tensor(ids, dtype=torch.long)].tolist()
                tags.scores += [0.0] * missing
                out.append(tags)
            return out

        return self.sample_outputs(model, samples, batch_size, device, tagged)

    def evaluate(self, rows, samples, outputs):
        gold = [r["tags"] for r in rows]
        metrics = entity_scores(gold, outputs)
        metrics["strict_f1"] = entity_scores(gold, outputs, "strict", self.scheme)["f1"]
        total = sum(len(g) for g in gold)
        metrics["token_accuracy"] = sum(a == b for g, p in zip(gold, outputs) for a, b in zip(g, p)) / max(total, 1)
        return metrics

    report_files = ("per_type.tsv",)

    def write_reports(self, out_dir, rows, samples, outputs, prefix=""):
        """``per_type.tsv``: entity precision, recall, F1 and support of each type (seqeval's report)."""
        per_type = entity_scores_by_type([r["tags"] for r in rows], outputs)
        write_per_type_tsv(os.path.join(out_dir, prefix + "per_type.tsv"), per_type)
        return {"per_type": per_type}

    def warnings(self, rows, samples, outputs, metrics):
        """Only O predicted while the gold tags have entities."""
        if any(t != "O" for tags in outputs for t in tags) or all(t == "O" for r in rows for t in r["tags"]):
            return []
        return [(f"the tagger predicts O for every word of the {len(rows)} dev sentences (entity F1 0): it "
                "learned only the most frequent tag. Likely causes: a learning rate too low for the model (or too "
                "high), too few epochs, tags read wrongly (check the file's tag column). Try --lr auto (or a "
                "larger --lr for a small model), more --epochs, --crf")]

    def write_predictions(self, path, rows, samples, outputs):
        write_jsonl(path, self.records(rows, samples, outputs))

    def request_rows(self, items):
        rows = []
        for item in items:
            tokens, offsets = self.words(item["text"])
            rows.append({"text": item["text"], "tokens": tokens, "offsets": offsets})
        return rows

    def records(self, rows, samples, outputs):
        """The words, the gold tags when known, the predicted tags (names) and each word's score,
        the entities ([type, first word, last word]) and their scores (the mean of their words');
        for text inputs the text and the entities' character spans ([start, end))."""
        records = []
        for row, tags in zip(rows, outputs):
            record = {"id": row["id"]} if "id" in row else {}
            record["tokens"] = row["tokens"]
            if "tags" in row:
                record["tags"] = row["tags"]
            scores = getattr(tags, "scores", None)
            entities = get_entities(tags)
            record["predicted"] = list(tags)
            record["entities"] = [list(e) for e in entities]
            if scores is not None:
                record["scores"] = [round(x, 4) for x in scores]
                record["entity_scores"] = [round(sum(scores[a : b + 1]) / (b - a + 1), 4) for _, a, b in entities]
            if "text" in row and "offsets" in row:
                offsets = row["offsets"]
                record["text"] = row["text"]
                record["spans"] = [{"type": type_, "start": offsets[a][0], "end": offsets[b][1],
                                    "text": row["text"][offsets[a][0] : offsets[b][1]]}
                                   for type_, a, b in entities]
                for span, score in zip(record["spans"], record.get("entity_scores", ())):
                    span["score"] = score
            records.append(record)
        return records


