"""Extractive question answering in SQuAD format (SQuAD v1.1, CMRC2018).

Encoding: the question (at most ``--max-query-length`` tokens) and a window of the context
fill one sequence, with the tokenizer's pair template. A long context is covered by windows
whose starts are ``--doc-stride`` tokens apart (BERT's run_squad meaning: the step, not the
overlap), so every answer of up to ``window - stride + 1`` tokens lies whole inside a window.
Training targets are the answer's first and last token in the window, or position 0 when the
window does not contain the answer.

Prediction: per window, the ``--n-best`` highest start and end logits among the context tokens
are paired (start <= end, at most ``--max-answer-length`` tokens); the best sum over all windows
wins and is cut from the context by the tokens' character offsets. (BERT's extra rule -- a start
only in the window where it has the most context -- is left out: it can make an answer that a
window holds whole unreachable.)

Metrics (as fractions; the official scripts print them x100): exact match and F1 with the
official SQuAD v1.1 normalisation (lower case, no punctuation, no articles, bag-of-words F1)
for English; for Chinese the CMRC2018 script: punctuation removed, Chinese characters as
single segments, F1 from the longest common substring of segments. The one difference from the
CMRC script: runs of non-Chinese characters are split by a regex (words and punctuation marks)
instead of nltk's word_tokenize.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, check_choice, setting
from ..errors import UserError, require_file
from ..models.model import SequenceHead
from ..textio import read_text
from .base import SpecialTokens, Task, TaskOptions, write_json

LANGUAGES = ("auto", "en", "zh")


# ---- metrics ------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD v1.1: lower case, remove punctuation, articles and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_em(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


CMRC_PUNCTUATION = {"-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=", "，", "。", "：", "？", "！", "“", "”",
                    "；", "’", "《", "》", "……", "·", "、", "「", "」", "（", "）", "－", "～", "『", "』"}
_CHINESE = re.compile(r"[\u4e00-\u9fa5]")


def mixed_segmentation(text: str, remove_punctuation: bool = False) -> list[str]:
    """CMRC2018: every Chinese character (and punctuation mark) is a segment; other runs are split
    into words and punctuation."""
    segments, run = [], ""
    for ch in str(text).lower().strip():
        if remove_punctuation and ch in CMRC_PUNCTUATION:
            continue
        if _CHINESE.search(ch) or ch in CMRC_PUNCTUATION:
            segments += re.findall(r"\w+|[^\w\s]", run)
            run = ""
            segments.append(ch)
        else:
            run += ch
    return segments + re.findall(r"\w+|[^\w\s]", run)


def longest_common_substring(a: list[str], b: list[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def cmrc_f1(prediction: str, truth: str) -> float:
    predicted = mixed_segmentation(prediction, remove_punctuation=True)
    gold = mixed_segmentation(truth, remove_punctuation=True)
    common = longest_common_substring(gold, predicted)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def cmrc_em(prediction: str, truth: str) -> float:
    def strip(text):
        return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCTUATION)

    return float(strip(prediction) == strip(truth))


def qa_metrics(predictions: list[str], answers: list[list[str]], language: str) -> dict[str, float]:
    """Mean over questions of the best score against any gold answer."""
    em, f1 = (cmrc_em, cmrc_f1) if language == "zh" else (squad_em, squad_f1)
    n = max(len(answers), 1)
    return {"exact_match": sum(max(em(p, a) for a in gold) for p, gold in zip(predictions, answers)) / n,
            "f1": sum(max(f1(p, a) for a in gold) for p, gold in zip(predictions, answers)) / n}


def detect_language(texts: list[str]) -> str:
    sample = "".join(texts[:200])
    return "zh" if sample and len(_CHINESE.findall(sample)) > 0.1 * len(sample) else "en"


# ---- options ------------------------------------------------------------------------------------
@dataclass
class LanguageOptions(Config):
    """The language of the texts, where it changes how answers or entities are read."""

    language: str = setting("auto", choices=LANGUAGES, help="en or zh: qa answer normalisation (SQuAD, or CMRC2018 "
                                                            "character level), text2text entities (words joined by "
                                                            "spaces, or not); auto: by the text")

    def validate(self) -> None:
        super().validate()
        check_choice(self.language, LANGUAGES, "language")

    def language_of(self, texts: list[str]) -> str:
        """``language``, or the one detected in ``texts`` for auto."""
        return detect_language(texts) if self.language == "auto" else self.language


@dataclass
class QAOptions(TaskOptions, LanguageOptions):
    """Extractive question answering (SQuAD JSON)."""

    doc_stride: int | None = setting(None, help="tokens between window starts (default: half a window)")
    max_query_length: int = setting(64, help="question tokens kept")
    max_answer_length: int = setting(30, help="longest answer in tokens")
    n_best: int = setting(20, help="start/end candidates per window")

    def validate(self) -> None:
        super().validate()
        for name in ("max_query_length", "max_answer_length", "n_best"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.doc_stride is not None and self.doc_stride < 1:
            raise UserError("--doc-stride must be at least 1")


# ---- windows and span search --------------------------------------------------------------------
def window_spans(n_tokens: int, length: int, stride: int) -> list[tuple[int, int]]:
    """(first token, token count) of the windows covering ``n_tokens`` context tokens."""
    spans, start = [], 0
    while True:
        size = min(length, n_tokens - start)
        spans.append((start, size))
        if start + size >= n_tokens:
            return spans
        start += min(stride, length)


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, n_best: int,
               max_answer_length: int) -> list[tuple[float, int, int]]:
    """(score, start, end) of the valid pairs among the ``n_best`` best starts and ends, best first."""
    starts = np.argsort(-start_logits, kind="stable")[:n_best]
    ends = np.argsort(-end_logits, kind="stable")[:n_best]
    spans = [(float(start_logits[s] + end_logits[e]), int(s), int(e)) for s in starts for e in ends
             if s <= e < s + max_answer_length]
    return sorted(spans, key=lambda x: -x[0])


# ---- reading ------------------------------------------------------------------------------------
def read_squad(path: str) -> list[dict]:
    """One row per question: id, question, context, answers [{text, answer_start}]."""
    require_file(path, "data file")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{path}: expected SQuAD JSON, an object with a 'data' list of articles")
    rows = []
    for i, article in enumerate(data["data"]):
        for j, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else []):
            where = f"{path}: data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph.get("context"), str) or not isinstance(paragraph.get("qas"), list):
                raise UserError(f"{where}: expected a 'context' string and a 'qas' list")
            for k, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
                    raise UserError(f"{where}.qas[{k}]: expected an object with a 'question' string")
                answers = qa.get("answers", [])
                if not isinstance(answers, list) or not all(
                        isinstance(a, dict) and isinstance(a.get("text"), str) and isinstance(a.get("answer_start"), int)
                        for a in answers):
                    raise UserError(f"{where}.qas[{k}]: expected 'answers' as a list of {{text, answer_start}}")
                rows.append({"id": str(qa.get("id", f"{i}-{j}-{k}")), "question": qa["question"],
                             "context": paragraph["context"],
                             # answer_start -1 marks placeholders (CMRC2018's hidden test answers)
                             "answers": [a for a in answers if a["answer_start"] >= 0]})
    if not rows:
        raise UserError(f"{path} has no questions")
    return rows


def answer_char_span(context: str, answer: dict) -> tuple[int, int] | None:
    """[start, end) of the answer in the context; the nearest occurrence of its text when
    answer_start is off (a few hundred CMRC2018 answers are), None when the text is absent."""
    text, start = answer["text"], answer["answer_start"]
    if context[start : start + len(text)] == text:
        return start, start + len(text)
    found = [m.start() for m in re.finditer(re.escape(text), context)] if text else []
    if not found:
        return None
    nearest = min(found, key=lambda s: abs(s - start))
    return nearest, nearest + len(text)


# ---- the task -----------------------------------------------------------------------------------
class SpanHead(SequenceHead):
    """Start and end logits for every token; the loss is the mean of the start and end cross-
    entropies (padding excluded)."""

    kind = "span"
    target_key = "start_positions"

    def __init__(self, backbone):
        super().__init__(backbone)
        self.qa_outputs = nn.Linear(backbone.config.hidden_size, 2)
        nn.init.normal_(self.qa_outputs.weight, std=backbone.config.initializer_range)
        nn.init.zeros_(self.qa_outputs.bias)

    def logits(self, out, batch):
        logits = self.qa_outputs(out.last_hidden_state)  # [B, L, 2]
        mask = batch.get("attention_mask")
        if mask is not None:
            logits = logits.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(logits.dtype).min)
        return logits

    def loss_sum(self, out, batch):
        logits = self.logits(out, batch).float()
        return (F.cross_entropy(logits[..., 0], batch["start_positions"], reduction="sum")
                + F.cross_entropy(logits[..., 1], batch["end_positions"], reduction="sum")) / 2


class QATask(Task):
    name = "qa"
    Options = QAOptions
    head = SpanHead
    metric_names = ("f1", "exact_match")
    prediction_suffix = ".json"
    endpoint = "qa"

    def __init__(self, options, tokenizer, labels, max_positions):
        super().__init__(options, tokenizer, labels, max_positions)
        self.special = SpecialTokens(tokenizer)

    @classmethod
    def read(cls, path, options, fmt="auto", columns=None):
        return read_squad(path)

    def has_labels(self, rows):
        return any(r["answers"] for r in rows)

    def encode(self, rows, path, with_labels=True):
        backend = self.tokenizer.backend
        questions = [e.ids[: self.options.max_query_length]
                     for e in backend.encode_batch([r["question"] for r in rows], add_special_tokens=False)]
        unique = list(dict.fromkeys(r["context"] for r in rows))  # questions share their paragraph
        contexts = dict(zip(unique, backend.encode_batch(unique, add_special_tokens=False)))
        samples = []
        for index, (row, question) in enumerate(zip(rows, questions)):
            encoding = contexts[row["context"]]
            length = self.max_length - self.special.count(2) - len(question)
            if length < 1:
                raise UserError(f"--max-length {self.max_length} leaves no room for the context after the question; "
                                "raise --max-length or lower --max-query-length")
            stride = self.options.doc_stride or max(1, length // 2)
            spans = window_spans(len(encoding.ids), length, stride)
            target = self._answer_tokens(row, encoding.offsets) if with_labels else None
            for start, size in spans:
                ids, types, (_, context_start) = self.special.build(question, encoding.ids[start : start + size])
                sample = {"input_ids": ids, "token_type_ids": types, "example": index, "context": row["context"],
                          "context_start": context_start, "offsets": encoding.offsets[start : start + size]}
                if with_labels:
                    inside = target is not None and start <= target[0] and target[1] < start + size
                    sample["start_positions"] = context_start + target[0] - start if inside else 0
                    sample["end_positions"] = context_start + target[1] - start if inside else 0
                samples.append(sample)
        return samples

    @staticmethod
    def _answer_tokens(row: dict, offsets: list[tuple[int, int]]) -> tuple[int, int] | None:
        """The first and last context token of the (first) answer."""
        span = answer_char_span(row["context"], row["answers"][0]) if row["answers"] else None
        if span is None:
            return None
        tokens = [t for t, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]
        return (tokens[0], tokens[-1]) if tokens else None

    def collate(self, samples):
        batch = super().collate(samples)
        if "start_positions" in samples[0]:
            for key in ("start_positions", "end_positions"):
                batch[key] = torch.as_tensor([s[key] for s in samples], dtype=torch.long)
        return batch

    def predict(self, model, samples, batch_size, device) -> list[dict]:
        """Per question: the best answer text and its score (in question order)."""
        def window_answers(chunk: list[dict], logits: torch.Tensor) -> list[tuple[float, str] | None]:
            answers = []
            for sample, window in zip(chunk, logits.numpy()):
                first, size = sample["context_start"], len(sample["offsets"])
                spans = best_spans(window[first : first + size, 0], window[first : first + size, 1],
                                   self.options.n_best, self.options.max_answer_length)
                if not spans:
                    answers.append(None)
                    continue
                score, s, e = spans[0]
                answers.append((score, sample["context"][sample["offsets"][s][0] : sample["offsets"][e][1]]))
            return answers

        best: dict[int, tuple[float, str]] = {}  # the best window of each question (on a tie: the first)
        for sample, found in zip(samples, self.sample_outputs(model, samples, batch_size, device, window_answers)):
            if found is not None and (sample["example"] not in best or found[0] > best[sample["example"]][0]):
                best[sample["example"]] = found
        count = max((s["example"] for s in samples), default=-1) + 1
        return [{"answer": best[i][1], "score": best[i][0]} if i in best else {"answer": "", "score": None}
                for i in range(count)]

    def evaluate(self, rows, samples, outputs):
        language = self.options.language_of([r["context"] for r in rows])
        answered = [(o["answer"], [a["text"] for a in r["answers"]]) for r, o in zip(rows, outputs) if r["answers"]]
        return qa_metrics([p for p, _ in answered], [a for _, a in answered], language)

    def write_predictions(self, path, rows, samples, outputs):
        """SQuAD prediction format: {question id: answer text}."""
        write_json(path, {r["id"]: o["answer"] for r, o in zip(rows, self.records(rows, samples, outputs))})

    def request_rows(self, items):
        return [{"id": str(number), "question": item["question"], "context": item["context"], "answers": []}
                for number, item in enumerate(items)]

    def records(self, rows, samples, outputs):
        """The best answer of each question (its text, and its score: the sum of the start and
        end logits; an empty answer and None when no span fits)."""
        return [dict(output) for output in outputs]


__all__ = ["LANGUAGES", "LanguageOptions", "QAOptions", "QATask", "SpanHead", "best_spans", "cmrc_em", "cmrc_f1",
           "qa_metrics", "read_squad", "squad_em", "squad_f1", "window_spans"]
