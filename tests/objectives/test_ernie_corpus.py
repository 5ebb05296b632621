"""`prepare --entities` on the People's Daily corpus: entity ids at the first token of each linked
mention (tagged spans, or a longest match on plain text), names and vectors kept with the shards,
entity ids carried through packing and sentence pairs (0 on added tokens), clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ptmzoo.cli import main
from ptmzoo.data.packing import PackedBlocks, SentencePairs
from ptmzoo.data.prepare import Segmenter, prepare_corpus
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.errors import UserError
from ptmzoo.knowledge.vectors import read_vectors, write_vectors
from tests.objectives.ernie_helpers import LINES, ernie_corpus
from tests.objectives.objective_helpers import people_daily_lines


@pytest.fixture(scope="module")
def pd(tmp_path_factory):
    return ernie_corpus(tmp_path_factory, people_daily_lines(LINES))


def token_text(tokenizer, ids) -> str:
    return "".join(tokenizer.backend.id_to_token(int(i)) for i in ids)


def linked_tokens(split, tokenizer, names):
    """(name, text of the tokens from each entity-id token on, as long as the name) for every
    token that carries an entity id."""
    pairs = []
    for d in range(split.num_docs):
        ids, entities = split.doc(d), split.doc_entities(d)
        for i in np.flatnonzero(entities):
            name = names[entities[i] - 1]
            pairs.append((name, token_text(tokenizer, ids[i : i + len(name)])))
    return pairs


def test_tagged_mentions_link_at_their_first_token(pd):
    corpus = ShardedCorpus(pd["shards"])
    info = corpus.meta["entities"]
    assert info["count"] == len(pd["names"]) and info["dim"] == 8 and info["linking"] == "entity_tags"
    names, vectors = corpus.entities()
    assert names == pd["names"] and np.array_equal(vectors, pd["vectors"])
    pairs = linked_tokens(corpus.split("train"), pd["tokenizer"], names)
    pairs += linked_tokens(corpus.split("valid"), pd["tokenizer"], names)
    assert all(name == text for name, text in pairs)  # the mention begins at the token with its id
    # one id per linked mention, none for the names left out of the vector file
    segment, known = Segmenter("tagged"), set(names)
    mentions = ["".join(plain[b:e].split()) for plain, _, spans in map(segment, people_daily_lines(LINES))
                for b, e in spans]
    assert len(pairs) == info["mentions"] == sum(name in known for name in mentions)
    assert len(pairs) < len(mentions)  # every 10th name is missing from the vectors


def test_plain_text_links_by_longest_match_identically_for_any_worker_count(pd, tmp_path):
    plain = tmp_path / "plain.txt"
    segment = Segmenter("tagged")
    plain.write_text("".join(segment(line)[0].replace(" ", "") + "\n" for line in people_daily_lines(LINES)),
                     encoding="utf-8")
    tok = str(pd["root"] / "tokenizer")
    arrays = []
    for workers in (1, 2):
        out = str(tmp_path / f"w{workers}")
        meta = prepare_corpus([str(plain)], tok, out, workers=workers, progress=False, valid_fraction=0,
                              entities=pd["vector_file"])
        assert meta["entities"]["linking"] == "longest_match"
        split = ShardedCorpus(out).split("train")
        arrays.append(np.asarray(split.entities[0]).copy())
    assert np.array_equal(arrays[0], arrays[1])
    pairs = linked_tokens(split, pd["tokenizer"], pd["names"])
    assert all(name == text for name, text in pairs)
    # exact matching also finds untagged occurrences of the names (and prefers longer names)
    assert meta["entities"]["mentions"] >= ShardedCorpus(pd["shards"]).meta["entities"]["mentions"]


def test_packed_blocks_and_sentence_pairs_carry_entity_ids(pd):
    tok = pd["tokenizer"]
    split = ShardedCorpus(pd["shards"]).split("train")
    blocks = PackedBlocks(split, 62, tok.sep_id, (tok.cls_id,), (tok.sep_id,))
    pairs = SentencePairs(split, 64, tok.cls_id, tok.sep_id)
    stream = np.concatenate([np.append(split.doc_entities(d), 0) for d in range(split.num_docs)])
    for index in range(5):
        sample = blocks[(index, 0)]
        assert sample["entity_ids"].shape == sample["input_ids"].shape == sample["token_marks"].shape
        assert sample["entity_ids"][0] == 0 and sample["entity_ids"][-1] == 0  # [CLS], [SEP]
        assert np.array_equal(sample["entity_ids"][1:-1], stream[index * 62 : (index + 1) * 62])
    seen = 0
    for index in range(40):
        pair = pairs[(index, 0)]
        ids, entities = pair["input_ids"], pair["entity_ids"]
        assert entities.shape == ids.shape and (entities[np.isin(ids, [tok.cls_id, tok.sep_id])] == 0).all()
        for i in np.flatnonzero(entities):
            name = pd["names"][entities[i] - 1]
            span = ids[i : i + len(name)]
            cut = np.flatnonzero(np.isin(span, tok.special_ids))  # a mention cut off at the end of a segment
            assert name.startswith(token_text(tok, span[: cut[0]] if len(cut) else span))
            seen += 1
    assert seen > 20


def test_entity_errors_are_one_line(pd, tmp_path, capsys):
    tok = str(pd["root"] / "tokenizer")
    unrelated = str(tmp_path / "unrelated.vec")
    write_vectors(unrelated, ["不存在的实体甲", "不存在的实体乙"], np.zeros((2, 4)))
    with pytest.raises(UserError, match="no entity of .* is mentioned"):
        prepare_corpus([pd["corpus"]], tok, str(tmp_path / "none"), workers=1, progress=False,
                       segmentation="tagged", entities=unrelated)
    bad = tmp_path / "bad.vec"
    bad.write_text("2 3\n中国 0.1 0.2 0.3\n北京 0.1 0.2\n", encoding="utf-8")
    code = main(["prepare", "--input", pd["corpus"], "--tokenizer", tok, "--out", str(tmp_path / "x"),
                 "--entities", str(bad), "--no-progress", "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and f"{bad}:3" in err and "expected a name and 3 numbers" in err
    assert not (tmp_path / "x").exists()


def test_vector_files_round_trip_and_reject_mistakes(tmp_path):
    path = str(tmp_path / "v.vec")
    write_vectors(path, ["a", "New_York"], np.asarray([[1.5, -2.0], [0.25, 3.0]]))
    names, vectors = read_vectors(path)
    assert names == ["a", "New_York"] and vectors.tolist() == [[1.5, -2.0], [0.25, 3.0]]
    headerless = tmp_path / "glove.txt"
    headerless.write_text("x 1 2\ny 3 4\n")
    assert read_vectors(str(headerless))[0] == ["x", "y"]
    cases = {"3 2\na 1 2\nb 3 4\n": "header says 3 vectors but the file holds 2",
             "2 2\na 1 2\na 3 4\n": ":3: 'a' is listed twice",
             "2 2\na 1 2\nb 3 x\n": ":3: 'x' is not a number",
             "\n": "holds no vectors"}
    for number, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{number}.vec"
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            read_vectors(str(bad))

