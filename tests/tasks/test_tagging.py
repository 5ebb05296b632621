"""Token classification: entity metrics against seqeval, schemes, readers, sub-word alignment, CRF."""

from __future__ import annotations

import itertools
import random
import warnings

import pytest
import torch

from ptmzoo.errors import UserError
from ptmzoo.tasks import TaggingOptions
from ptmzoo.tasks.crf import CRF, pack
from ptmzoo.tasks.tagging import (
    TaggingTask,
    entity_scores,
    get_entities,
    iob1_to_bio,
    read_tagged,
    spans_to_bio,
)
from tests.conftest import shared_path

seqeval = pytest.importorskip("seqeval")
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities
from seqeval.scheme import IOB1, IOB2, IOBES


def reference(gold, pred, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on zero division and odd tags
        return {"precision": precision_score(gold, pred, zero_division=0, **kwargs),
                "recall": recall_score(gold, pred, zero_division=0, **kwargs),
                "f1": f1_score(gold, pred, zero_division=0, **kwargs)}


def random_sequences(rng, prefixes, n=30):
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "MISC-X")]
    return [[rng.choice(tags) for _ in range(rng.randint(0, 8))] for _ in range(n)]


@pytest.mark.parametrize("prefixes", ["BI", "BIES"])
def test_default_mode_matches_seqeval_on_random_sequences(prefixes):
    rng = random.Random(0)
    for _ in range(100):
        gold, pred = random_sequences(rng, prefixes), random_sequences(rng, prefixes)
        pred = [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for seq in gold:
                assert get_entities(seq) == seqeval_entities(seq)
        assert entity_scores(gold, pred) == pytest.approx(reference(gold, pred), abs=1e-12)


@pytest.mark.parametrize(("prefixes", "scheme", "seqeval_scheme"),
                         [("BI", "iob2", IOB2), ("BI", "iob1", IOB1), ("BIES", "iobes", IOBES)])
def test_strict_mode_matches_seqeval_on_random_sequences(prefixes, scheme, seqeval_scheme):
    rng = random.Random(1)
    for _ in range(60):
        gold, pred = random_sequences(rng, prefixes), random_sequences(rng, prefixes)
        pred = [p[: len(g)] + ["O"] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        expected = reference(gold, pred, mode="strict", scheme=seqeval_scheme)
        assert entity_scores(gold, pred, "strict", scheme) == pytest.approx(expected, abs=1e-12)


def test_metrics_match_seqeval_on_real_conll_tags():
    rows = read_tagged(shared_path("en", "conll2003", "dev.txt"), TaggingOptions())[:400]
    gold = [r["tags"] for r in rows]  # IOB1 as in the file
    rng = random.Random(2)
    # a plausible tagger: gold with some tags replaced at random
    labels = sorted({t for g in gold for t in g})
    pred = [[t if rng.random() < 0.9 else rng.choice(labels) for t in g] for g in gold]
    assert entity_scores(gold, pred) == pytest.approx(reference(gold, pred), abs=1e-12)
    bio_gold, bio_pred = [iob1_to_bio(g) for g in gold], [iob1_to_bio(p) for p in pred]
    # IOB1 -> BIO keeps every entity (default mode) and gives valid IOB2 (strict mode agrees)
    assert entity_scores(bio_gold, bio_pred) == pytest.approx(entity_scores(gold, pred), abs=1e-12)
    assert entity_scores(bio_gold, bio_pred, "strict", "iob2") == pytest.approx(
        reference(bio_gold, bio_pred, mode="strict", scheme=IOB2), abs=1e-12)
    assert entity_scores(gold, pred, "strict", "iob1") == pytest.approx(
        reference(gold, pred, mode="strict", scheme=IOB1), abs=1e-12)


def test_iob1_to_bio_and_spans():
    assert iob1_to_bio(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    assert spans_to_bio("ab cde", [("x", 3, 5), ("y", 0, 0)], "f") == ["B-y", "O", "O", "B-x", "I-x", "I-x"]
    assert spans_to_bio("abcd", [("y", 1, 1), ("x", 0, 2)], "f") == ["B-x", "I-x", "I-x", "O"]  # outer kept
    with pytest.raises(UserError, match=r"f: entity span \[2, 4\] is outside"):
        spans_to_bio("abcd", [("x", 2, 4)], "f")


def test_readers_and_malformed_rows(tmp_path):
    conll = tmp_path / "a.conll"
    conll.write_text("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    rows = read_tagged(str(conll), TaggingOptions())
    assert [r["tokens"] for r in rows] == [["EU", "rejects"], ["Peter"]] and rows[1]["tags"] == ["B-PER"]
    conll.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(UserError, match=r"a.conll:2: expected a word and a tag"):
        read_tagged(str(conll), TaggingOptions())
    cluener = tmp_path / "c.json"
    cluener.write_text('{"text": "浙商银行企业信贷部",\n "label": {"company": {"浙商银行": [[0, 3]]}}}\n'
                       '{"text": "叶老桂", "label": {"name": {"叶老桂": [[0, 1]]}}}\n')
    with pytest.raises(UserError, match=r"c.json:3: entity '叶老桂' is not at \[0, 1\]"):
        read_tagged(str(cluener), TaggingOptions())
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n{"tokens": ["a"], "tags": ["O", "O"]}\n')
    with pytest.raises(UserError, match=r"t.jsonl:2: 1 words but 2 tags"):
        read_tagged(str(jsonl), TaggingOptions())


def test_cluener_rows_become_character_bio():
    rows = read_tagged(shared_path("zh", "cluener", "dev.json"), TaggingOptions())
    assert len(rows) == 1343
    assert rows[0]["tokens"][:3] == ["彭", "小", "军"] and rows[0]["tags"][:4] == ["B-name", "I-name", "I-name", "O"]


def test_first_subtoken_alignment(wordpiece_tokenizer):
    words = ["Hamburger", "unbelievably", "in", "Köln", " "]
    task = TaggingTask(TaggingOptions(), wordpiece_tokenizer, ["O", "B-LOC", "I-LOC"], 512)
    (sample,) = task.encode([{"tokens": words, "tags": ["O", "O", "O", "B-LOC", "O"]}], "x")
    pieces = [wordpiece_tokenizer.backend.encode(w, add_special_tokens=False).ids or [task.unk_id] for w in words]
    assert sample["input_ids"] == [wordpiece_tokenizer.cls_id, *itertools.chain(*pieces), wordpiece_tokenizer.sep_id]
    starts = [1 + sum(len(p) for p in pieces[:i]) for i in range(len(words))]
    assert sample["word_starts"] == starts
    expected = [-100] * len(sample["input_ids"])
    for position, label in zip(starts, [0, 0, 0, 1, 0]):
        expected[position] = label
    assert sample["labels"] == expected
    # words past --max-length are dropped (and predicted O)
    short = TaggingTask(TaggingOptions(max_length=4), wordpiece_tokenizer, ["O", "B-LOC"], 512)
    (cut,) = short.encode([{"tokens": ["in", "in", "in", "in"]}], "x", with_labels=False)
    assert len(cut["input_ids"]) == 4 and cut["num_words"] == 4 and len(cut["word_starts"]) == 2


# ---- CRF -----------------------------------------------------------------------------------------
def brute_force(crf: CRF, emissions: torch.Tensor, length: int):
    tags = emissions.shape[-1]
    scores = {}
    for path in itertools.product(range(tags), repeat=length):
        score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in itertools.pairwise(path))
        scores[path] = score
    return scores


def test_crf_matches_brute_force_enumeration():
    torch.manual_seed(0)
    for num_tags, lengths in ((2, [1, 3, 4]), (3, [4, 2, 0, 1]), (4, [3, 3])):
        crf = CRF(num_tags)
        with torch.no_grad():
            for p in crf.parameters():
                p.normal_()
        width = max(lengths)
        emissions = torch.randn(len(lengths), max(width, 1), num_tags, dtype=torch.float64)
        crf = crf.double()
        mask = torch.arange(max(width, 1)) < torch.tensor(lengths).unsqueeze(1)
        log_z = crf.log_partition(emissions, mask)
        decoded = crf.decode(emissions, mask)
        tags = torch.randint(0, num_tags, (len(lengths), max(width, 1)))
        nll = crf.nll(emissions, tags, mask)
        for b, length in enumerate(lengths):
            if length == 0:
                assert log_z[b] == 0 and decoded[b] == [] and nll[b] == 0
                continue
            scores = brute_force(crf, emissions[b], length)
            all_scores = torch.stack(list(scores.values()))
            assert log_z[b].item() == pytest.approx(torch.logsumexp(all_scores, 0).item(), abs=1e-9)
            assert tuple(decoded[b]) == max(scores, key=lambda p: scores[p].item())
            gold = tuple(tags[b, :length].tolist())
            assert nll[b].item() == pytest.approx((torch.logsumexp(all_scores, 0) - scores[gold]).item(), abs=1e-9)


def test_pack_gathers_masked_positions_left():
    values = torch.arange(12).view(2, 6)
    mask = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    packed, packed_mask = pack(values, mask, fill=-1)
    assert packed.tolist() == [[1, 3, 4], [6, -1, -1]]
    assert packed_mask.tolist() == [[True, True, True], [True, False, False]]
