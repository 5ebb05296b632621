"""Extractive QA: windows and stride, offsets back to the text, span search, SQuAD/CMRC metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ptmzoo.errors import UserError
from ptmzoo.tasks import QAOptions
from ptmzoo.tasks.qa import (
    QATask,
    best_spans,
    cmrc_em,
    cmrc_f1,
    normalize_answer,
    qa_metrics,
    read_squad,
    squad_em,
    squad_f1,
    window_spans,
)
from tests.conftest import shared_path


# ---- metrics: hand-computed cases following the official scripts --------------------------------
def test_squad_normalisation_em_f1():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert squad_em("the Eiffel Tower.", "Eiffel tower") == 1.0
    # prediction "big red cat" vs gold "the red cat sat": common {red, cat} = 2; P = 2/3, R = 2/3
    assert squad_f1("big red cat", "the red cat sat") == pytest.approx(2 / 3)
    # repeated tokens count once per occurrence (Counter intersection): P = 1/3, R = 1
    assert squad_f1("a b b b", "b") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert squad_f1("an the", "a") == 0.0  # both normalise to nothing: no common token
    # best over gold answers, mean over questions
    metrics = qa_metrics(["red cat", "dog"], [["the red cat", "cat"], ["a cat"]], "en")
    assert metrics == {"exact_match": 0.5, "f1": 0.5}


def test_cmrc_character_level_em_f1():
    assert cmrc_em("光荣和ω-force。", "光荣和ω-force") == 1.0  # punctuation removed, lower case
    # segments: 北 京 大 学 vs 北 京: longest common substring 2; P = 1, R = 1/2
    assert cmrc_f1("北京", "北京大学") == pytest.approx(2 * 1 * 0.5 / 1.5)
    # LCS is contiguous: 北京 | 大学 vs 北大 -> 1 common segment; P = 1/2, R = 1/4
    assert cmrc_f1("北大", "北京大学") == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    # an English run inside Chinese text is one segment (word)
    assert cmrc_f1("在2008年", "2008年") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert qa_metrics(["北京"], [["上海", "北京大学"]], "zh")["f1"] == pytest.approx(2 / 3)


# ---- windows -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "length", "stride"), [(0, 5, 2), (5, 5, 2), (17, 6, 4), (100, 10, 3), (9, 4, 4)])
def test_windows_cover_every_short_answer(n, length, stride):
    spans = window_spans(n, length, stride)
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == n
    assert all(s2 - s1 == stride for (s1, _), (s2, _) in itertools.pairwise(spans))
    longest = length - stride + 1  # any answer this long lies whole inside some window
    for a in range(n):
        for b in range(a, min(n, a + longest)):
            assert any(s <= a and b < s + size for s, size in spans), (a, b)


def test_best_spans_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        starts, ends = rng.normal(size=12), rng.normal(size=12)
        found = best_spans(starts, ends, n_best=12, max_answer_length=4)
        brute = sorted(((starts[s] + ends[e], s, e) for s in range(12) for e in range(12) if s <= e < s + 4),
                       reverse=True)
        assert [(s, e) for _, s, e in found] == [(s, e) for _, s, e in brute]
        assert [x for x, _, _ in found] == pytest.approx([x for x, _, _ in brute])
        # n_best limits the candidates to the best starts and ends
        top = best_spans(starts, ends, n_best=3, max_answer_length=4)
        assert all(s in np.argsort(-starts)[:3] and e in np.argsort(-ends)[:3] for _, s, e in top)


def perfect_logits(samples):
    """Logits that point at each window's training targets (so decoding must give the gold answer)."""
    for sample in samples:
        logits = torch.zeros(len(sample["input_ids"]), 2)
        logits[sample["start_positions"], 0] = logits[sample["end_positions"], 1] = 10.0
        yield logits


def test_cmrc_windows_reach_every_answer_and_map_back_exactly(char_tokenizer, tmp_path):
    rows = read_squad(shared_path("zh", "cmrc2018", "dev.json"))[:300]
    options = QAOptions(max_length=64, doc_stride=16, max_query_length=16, max_answer_length=64)
    task = QATask(options, char_tokenizer, [], 512)
    samples = task.encode(rows, "dev.json")
    assert max(len(s["input_ids"]) for s in samples) <= 64
    assert any(samples[i]["example"] == samples[i + 1]["example"] for i in range(len(samples) - 1))  # long contexts
    by_example = {}
    for sample in samples:
        by_example.setdefault(sample["example"], []).append(sample)
    reached = short = 0
    for index, row in enumerate(rows):
        answer = row["answers"][0]
        windows = by_example[index]
        hits = [s for s in windows if s["start_positions"] > 0]
        if len(answer["text"]) <= 64 - 3 - 16 - 16 + 1 and " " not in answer["text"]:
            assert hits, row["id"]  # short enough: some window holds the whole answer
            short += 1
        for s in hits:  # the targets' character offsets give back the answer exactly
            first, last = s["start_positions"] - s["context_start"], s["end_positions"] - s["context_start"]
            text = row["context"][s["offsets"][first][0] : s["offsets"][last][1]]
            assert text == answer["text"]
        reached += bool(hits)
    assert reached >= short >= 0.85 * len(rows)

    # decoding the targets' logits gives back the gold answer of every reached question
    class Fixed:
        def batch_logits(self, model, samples, batch_size, device):
            for index, (sample, logits) in enumerate(zip(samples, perfect_logits(samples))):
                yield [index], [sample], logits[None]

    task.batch_logits = Fixed().batch_logits
    outputs = task.predict(None, samples, 8, "cpu")
    gold = [row["answers"][0]["text"] for row in rows]
    answered = [o["answer"] == g for o, g in zip(outputs, gold)]
    assert sum(answered) == reached  # every answer held by a window is decoded exactly
    metrics = task.evaluate(rows, samples, outputs)
    assert metrics["exact_match"] >= 0.85 and metrics["f1"] >= metrics["exact_match"]


def test_english_offsets_with_wordpiece(wordpiece_tokenizer):
    context = "The Norman conquest of England began in 1066, led by William the Conqueror."
    row = {"id": "q", "question": "When did it begin?", "context": context,
           "answers": [{"text": "1066", "answer_start": context.index("1066")}]}
    task = QATask(QAOptions(max_length=24, doc_stride=4), wordpiece_tokenizer, [], 512)
    samples = task.encode([row], "x")
    assert len(samples) > 1
    hit = next(s for s in samples if s["start_positions"])
    first, last = hit["start_positions"] - hit["context_start"], hit["end_positions"] - hit["context_start"]
    assert context[hit["offsets"][first][0] : hit["offsets"][last][1]] == "1066"


def test_malformed_squad(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1"}]}]}]}')
    with pytest.raises(UserError, match=r"bad.json: data\[0\].paragraphs\[0\].qas\[0\]: expected an object with a "
                                        "'question' string"):
        read_squad(str(bad))
    bad.write_text('{"data": [\n{"paragraphs": ]}')
    with pytest.raises(UserError, match=r"bad.json:2: not valid JSON"):
        read_squad(str(bad))
