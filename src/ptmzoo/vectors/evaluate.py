"""Intrinsic evaluation of word vectors, with gensim's conventions so the numbers compare:

* Analogies (``questions-words.txt``, CA8: ``: section`` lines, then ``a b c d`` lines): the answer
  is the word x of the restricted vocabulary (the ``restrict_vocab`` most frequent words) other than
  a, b, c that maximises 3CosAdd cos(x, b) - cos(x, a) + cos(x, c) (gensim's ``most_similar``) or
  3CosMul cos'(x, b) cos'(x, c) / (cos'(x, a) + 1e-6) with cos' = (1 + cos) / 2 (Levy & Goldberg,
  2014; gensim's ``most_similar_cosmul``). Questions with a word outside the restricted vocabulary
  are skipped and counted; accuracy is over the questions answered.
* Similarity (WordSim-353, SimLex-999: ``w1<TAB>w2<TAB>score``, ``#`` comments): Spearman and
  Pearson correlation of cosine similarity with the human scores, over the pairs whose two words
  are in the restricted vocabulary.

Case-insensitive by default: words are compared upper-cased, the most frequent spelling wins.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError, require_file
from ..textio import open_text
from .keyed import WordVectors

RESTRICT_VOCAB = 300_000  # gensim's default
ENTRIES_PER_STEP = 1 << 22  # questions x vocabulary scores computed at a time


def _lookup(vectors: WordVectors, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
    words = vectors.words[:restrict_vocab]
    if not case_insensitive:
        return {w: i for i, w in enumerate(words)}
    return {w.upper(): i for i, w in reversed(list(enumerate(words)))}  # the most frequent spelling wins


def _read_lines(path: str, what: str) -> list[tuple[int, str]]:
    require_file(path, what)
    with open_text(path) as fh:
        return [(n, line.strip()) for n, line in enumerate(fh, 1) if line.strip()]


def read_analogies(path: str) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    sections: list[tuple[str, list]] = []
    for number, line in _read_lines(path, "analogy file"):
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        fields = line.split()
        if len(fields) != 4:
            raise UserError(f"{path}:{number}: expected 4 words 'a b c d' (a is to b as c is to d), found "
                            f"{len(fields)}")
        if not sections:
            sections.append(("questions", []))
        sections[-1][1].append(tuple(fields))
    if not any(questions for _, questions in sections):
        raise UserError(f"{path} holds no analogy questions (': section' lines, then 'a b c d' lines)")
    return sections


def evaluate_analogies(vectors: WordVectors, path: str, restrict_vocab: int = RESTRICT_VOCAB,
                       case_insensitive: bool = True) -> dict:
    """Accuracy of 3CosAdd and 3CosMul, overall and per section; ``skipped`` questions had a word
    outside the restricted vocabulary."""
    lookup = _lookup(vectors, restrict_vocab, case_insensitive)
    unit = vectors.unit[:restrict_vocab]
    norm = (lambda w: w.upper()) if case_insensitive else (lambda w: w)
    # each word's canonical id (its most frequent spelling): another spelling of a question word is
    # no answer, and another spelling of the expected word is a right one (as gensim)
    canonical = np.asarray([lookup[norm(w)] for w in vectors.words[:restrict_vocab]], dtype=np.int64)
    step = max(1, ENTRIES_PER_STEP // len(unit))
    sections, totals = [], {"add": 0, "mul": 0, "answered": 0, "skipped": 0}
    for name, questions in read_analogies(path):
        ids = [[lookup.get(norm(w), -1) for w in q] for q in questions]
        known = np.asarray([q for q in ids if min(q) >= 0], dtype=np.int64).reshape(-1, 4)
        right = {"add": 0, "mul": 0}
        for start in range(0, len(known), step):
            part = known[start:start + step]
            cos_a, cos_b, cos_c = (unit[part[:, k]] @ unit.T for k in range(3))
            scores = {"add": cos_b - cos_a + cos_c,
                      "mul": ((1 + cos_b) / 2) * ((1 + cos_c) / 2) / ((1 + cos_a) / 2 + 1e-6)}
            for method, score in scores.items():
                right[method] += int((_answers(score, part, canonical) == part[:, 3]).sum())
        answered = len(known)
        sections.append({"section": name, "answered": answered, "skipped": len(questions) - answered,
                         "3cosadd": right["add"] / answered if answered else None,
                         "3cosmul": right["mul"] / answered if answered else None})
        totals["add"] += right["add"]
        totals["mul"] += right["mul"]
        totals["answered"] += answered
        totals["skipped"] += len(questions) - answered
    answered = totals["answered"]
    return {"file": path, "3cosadd": totals["add"] / answered if answered else 0.0,
            "3cosmul": totals["mul"] / answered if answered else 0.0, "answered": answered,
            "skipped": totals["skipped"], "sections": sections}


def _answers(scores: np.ndarray, questions: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """The canonical id of the best-scoring word that is not a question word."""
    rows = np.arange(len(questions))[:, None]
    scores[rows, questions[:, :3]] = -np.inf
    best = scores.argmax(1)
    answers = canonical[best]
    for row in np.flatnonzero((answers[:, None] == questions[:, :3]).any(1)):
        ranked = np.argsort(-scores[row])  # rare: another spelling of a question word came first
        answers[row] = next((canonical[x] for x in ranked if canonical[x] not in questions[row, :3]), -1)
    return answers


def read_pairs(path: str) -> list[tuple[str, str, float]]:
    pairs = []
    for number, line in _read_lines(path, "similarity file"):
        if line.startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        try:
            pairs.append((fields[0].strip(), fields[1].strip(), float(fields[2])))
        except (IndexError, ValueError):
            raise UserError(f"{path}:{number}: expected 'word1<TAB>word2<TAB>score'") from None
    if not pairs:
        raise UserError(f"{path} holds no word pairs ('word1<TAB>word2<TAB>score' lines)")
    return pairs


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman's correlation needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator else 0.0


def spearman(x, y) -> float:
    return _pearson(rank(x), rank(y))


def evaluate_similarity(vectors: WordVectors, path: str, restrict_vocab: int = RESTRICT_VOCAB,
                        case_insensitive: bool = True) -> dict:
    lookup = _lookup(vectors, restrict_vocab, case_insensitive)
    norm = (lambda w: w.upper()) if case_insensitive else (lambda w: w)
    unit = vectors.unit
    pairs = read_pairs(path)
    model, human = [], []
    for a, b, score in pairs:
        i, j = lookup.get(norm(a)), lookup.get(norm(b))
        if i is None or j is None:
            continue
        model.append(float(unit[i] @ unit[j]))
        human.append(score)
    found = len(model)
    if found < 2:
        return {"file": path, "spearman": None, "pearson": None, "pairs": found, "skipped": len(pairs) - found}
    return {"file": path, "spearman": spearman(model, human), "pearson": _pearson(np.asarray(model), np.asarray(human)),
            "pairs": found, "skipped": len(pairs) - found}
