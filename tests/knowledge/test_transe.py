"""TransE on a synthetic knowledge graph with real structure: held-out facts are ranked far above
chance (filtered link prediction, as in the paper); triple files with mistakes end with
``file:line`` and what was expected; ``ptmzoo transe`` writes word2vec-format vector files."""

from __future__ import annotations

import numpy as np
import pytest

from ptmzoo.cli import main
from ptmzoo.errors import UserError
from ptmzoo.knowledge.transe import (
    Triples,
    link_prediction,
    read_triples,
    split_held_out,
    train_transe,
)
from ptmzoo.knowledge.vectors import read_vectors


def world(countries: int = 12, cities: int = 4, people: int = 6) -> list[tuple[str, str, str]]:
    """Countries in a ring of borders, cities located in countries (the first one the capital),
    people born in a city and citizens of its country: citizen_of = born_in + located_in."""
    facts = []
    for c in range(countries):
        facts.append((f"country{c}", "borders", f"country{(c + 1) % countries}"))
        for k in range(cities):
            city = f"city {c}.{k}"  # a space inside a name: written with _ in vector files
            facts.append((city, "located_in", f"country{c}"))
            if k == 0:
                facts.append((city, "capital_of", f"country{c}"))
            for p in range(people):
                facts.append((f"person{c}.{k}.{p}", "born_in", city))
                facts.append((f"person{c}.{k}.{p}", "citizen_of", f"country{c}"))
    return facts


@pytest.fixture
def triple_file(tmp_path):
    path = tmp_path / "world.tsv"
    path.write_text("# head\trelation\ttail\n" + "".join("\t".join(f) + "\n" for f in world()) + "\n",
                    encoding="utf-8")
    return str(path)


def test_transe_ranks_held_out_facts_far_above_chance(triple_file):
    data = read_triples(triple_file)
    assert len(data.triples) == len(world()) and "city_0.0" in data.entities and len(data.relations) == 5
    train, held_out = split_held_out(data.triples, 0.1, seed=0)
    assert len(held_out) == round(0.1 * len(data.triples))
    seen = set(train[:, 0]) | set(train[:, 2])
    assert set(held_out[:, 0]) <= seen and set(held_out[:, 2]) <= seen  # nothing unknowable held out
    model = train_transe(Triples(data.entities, data.relations, train), dim=32, epochs=100, batch_size=128, seed=0)
    metrics = link_prediction(model, held_out, data.triples)
    entities = len(data.entities)
    chance_hits, chance_rank = 10 / entities, (entities + 1) / 2  # 0.029 and 174.5 for 348 entities
    assert metrics["hits@10"] > 0.6 > 20 * chance_hits  # measured: 0.92 (untrained: 0.07)
    assert metrics["mean_rank"] < chance_rank / 10  # measured: 4.2 (untrained: 176)
    untrained = train_transe(Triples(data.entities, data.relations, train), dim=32, epochs=1, lr=1e-6, seed=0)
    assert link_prediction(untrained, held_out, data.triples)["hits@10"] < 0.2
    raw = link_prediction(model, held_out, data.triples, filtered=False)
    assert raw["mean_rank"] >= metrics["mean_rank"]  # filtering only removes competitors
    assert np.allclose(model.entities.weight.detach().norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_malformed_triple_files_name_the_line(tmp_path):
    cases = {"a\tr\tb\nc\td\n": "bad.tsv:2: expected head<TAB>relation<TAB>tail (3 tab-separated fields), found 2",
             "a\tr\tb\n\n# note\na\t\tb\n": "bad.tsv:4: the relation is empty",
             "a r b\n": "bad.tsv:1: expected head<TAB>relation<TAB>tail",
             "# only a comment\n": "holds no triples"}
    for text, message in cases.items():
        path = tmp_path / "bad.tsv"
        path.write_text(text)
        with pytest.raises(UserError) as error:
            read_triples(str(path))
        assert message in str(error.value)
    with pytest.raises(UserError, match="not found"):
        read_triples(str(tmp_path / "missing.tsv"))


def test_transe_command_writes_word2vec_files(triple_file, tmp_path, capsys):
    out = str(tmp_path / "kg" / "entities.vec")
    assert main(["transe", "--triples", triple_file, "--out", out, "--dim", "8", "--epochs", "3",
                 "--eval-fraction", "0.1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "348 entities, 5 relations, 648 triples (65 held out)" in printed and "hits@10" in printed
    with open(out, encoding="utf-8") as fh:
        assert fh.readline().split() == ["348", "8"]
    names, vectors = read_vectors(out)
    assert len(names) == 348 and vectors.shape == (348, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    relations, _ = read_vectors(str(tmp_path / "kg" / "entities.relations.vec"))
    assert relations == ["borders", "located_in", "capital_of", "born_in", "citizen_of"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr\tb\nc\td\n")
    assert main(["transe", "--triples", str(bad), "--out", str(tmp_path / "x.vec")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{bad}:2" in err and not (tmp_path / "x.vec").exists()
