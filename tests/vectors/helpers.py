"""Small corpora for the word-vector tests."""

from __future__ import annotations

import numpy as np

TOPICS = {
    "animals": "cat dog horse cow sheep goat pig mouse".split(),
    "colours": "red green blue yellow purple orange black white".split(),
    "numbers": "one two three four five six seven eight".split(),
}


def topic_corpus(path, sentences: int = 3000, length: int = 8, seed: int = 0) -> str:
    """Sentences whose words all come from one topic: words of a topic share their contexts, so
    trained vectors must put them closer to each other than to the other topics' words."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(sentences):
            words = TOPICS[names[rng.integers(len(names))]]
            fh.write(" ".join(rng.choice(words, length)) + "\n")
    return str(path)


def topic_separation(vectors) -> float:
    """Mean cosine within topics minus mean cosine across topics."""
    within, across = [], []
    for name, words in TOPICS.items():
        for other, other_words in TOPICS.items():
            for a in words:
                for b in other_words:
                    if a != b:
                        (within if name == other else across).append(vectors.similarity(a, b))
    return float(np.mean(within) - np.mean(across))
