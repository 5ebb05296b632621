"""Which tokens an MLM objective masks: the selection strategies of BERT's descendants.

Each strategy turns the maskable positions of one sequence into *units* (arrays of positions
masked together) within a budget of tokens:

* whole words (Google's whole-word masking): words in random order, each taken whole if it
  still fits in the budget, so the budget is met exactly unless no remaining word fits;
* knowledge masking (ERNIE 1.0, Baidu): a sequence is masked at one level -- basic (single
  tokens), phrase (whole words of the segmentation) or entity (named-entity spans first, the
  rest of the budget with words outside entities);
* spans (SpanBERT): span lengths in words drawn from a geometric distribution (p = 0.2)
  truncated at 10 and renormalised, as in the reference implementation (mean 3.8 words); each
  span starts at the word of a uniformly drawn token and grows over the following whole words.

Word boundaries come from the corpus marks (segmented corpora, ``data.shards.WORD_START``) or
from the tokenizer's own markers (WordPiece ``##``, byte-level BPE ``Ġ``, SentencePiece ``▁``).
Everything here is plain NumPy on one sequence; ``mlm.MaskedLM`` applies it row by row.
"""

from __future__ import annotations

import numpy as np

from ..data.shards import ENTITY, ENTITY_START, WORD_START

Units = list[np.ndarray]


def word_start_table(tokenizer) -> np.ndarray | None:
    """Per vocabulary id, whether the token begins a word; None for character tokenizers (every
    token is a character, so their words must come from a segmentation)."""
    if tokenizer.kind == "char":
        return None
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    table = np.ones(max(tokenizer.vocab_size, max(vocab.values()) + 1), dtype=bool)
    for token, index in vocab.items():
        if tokenizer.kind == "wordpiece":
            table[index] = not token.startswith("##")
        elif tokenizer.kind == "bpe":  # byte-level: a word start carries its preceding space
            table[index] = token.startswith("Ġ") or not token[:1].isalnum()
        elif tokenizer.kind == "unigram":
            table[index] = token.startswith("▁") or not token[:1].isalnum()
    return table


def word_starts(batch: dict[str, np.ndarray], table: np.ndarray | None) -> np.ndarray:
    """Per position of a batch, whether a word begins there: from the corpus marks when present,
    else from the tokenizer's word-piece markers (``word_start_table``; characters: every token)."""
    if "token_marks" in batch:
        return (batch["token_marks"] & WORD_START) != 0
    if table is None:
        return np.ones(batch["input_ids"].shape, dtype=bool)
    return table[batch["input_ids"]]


def runs(positions: np.ndarray, starts: np.ndarray) -> Units:
    """Split sorted ``positions`` into runs that begin where ``starts`` is set or where the
    positions are not consecutive (a special token or padding lies between)."""
    if len(positions) == 0:
        return []
    new = starts | (np.diff(positions, prepend=-2) != 1)
    return np.split(positions, np.flatnonzero(new)[1:])


def words(candidates: np.ndarray, word_start: np.ndarray) -> Units:
    """The maskable positions ``candidates`` grouped into whole words."""
    return runs(candidates, word_start[candidates])


def entities(candidates: np.ndarray, marks: np.ndarray) -> Units:
    """The maskable positions inside named entities, grouped into entity spans."""
    inside = candidates[(marks[candidates] & ENTITY) != 0]
    return runs(inside, (marks[inside] & ENTITY_START) != 0)


def fill_budget(units: Units, budget: int, rng: np.random.Generator, used: int = 0) -> tuple[Units, int]:
    """Units in random order, each taken whole if it fits in what is left of ``budget`` (Google's
    create_pretraining_data); returns the units taken and the tokens used in all."""
    taken = []
    for i in rng.permutation(len(units)):
        if used >= budget:
            break
        if used + len(units[i]) <= budget:
            taken.append(units[i])
            used += len(units[i])
    return taken, used


def knowledge_units(candidates: np.ndarray, word_start: np.ndarray, marks: np.ndarray, budget: int,
                    level: str, rng: np.random.Generator) -> Units:
    """ERNIE's masking of one sequence at ``level``: "basic", "phrase" or "entity"."""
    if level == "basic":
        return [np.sort(rng.choice(candidates, size=budget, replace=False))]
    all_words = words(candidates, word_start)
    if level == "phrase":
        return fill_budget(all_words, budget, rng)[0]
    # entities first; words outside entities fill the rest, so an entity is never cut
    taken, used = fill_budget(entities(candidates, marks), budget, rng)
    outside = [w for w in all_words if not (marks[w] & ENTITY).any()]
    more, _ = fill_budget(outside, budget, rng, used)
    return taken + more


def span_length_distribution(p: float, max_len: int) -> np.ndarray:
    """P(length = 1 .. max_len): geometric with parameter ``p``, truncated and renormalised."""
    lengths = np.arange(1, max_len + 1)
    probs = p * (1 - p) ** (lengths - 1)
    return probs / probs.sum()


def span_units(all_words: Units, budget: int, rng: np.random.Generator, p: float = 0.2, max_len: int = 10,
               patience: int = 50) -> Units:
    """SpanBERT's spans of whole words (contiguous positions) until ``budget`` tokens are masked.

    A span stops early at the budget, at a word already masked or at a gap (special token);
    after ``patience`` draws in a row that add nothing (the remaining budget is smaller than the
    words drawn), the sequence keeps what it has."""
    if not all_words:
        return []
    probs = span_length_distribution(p, max_len)
    sizes = np.asarray([len(w) for w in all_words])
    ends = np.cumsum(sizes)  # a uniformly drawn token picks its word: longer words more often
    taken = np.zeros(len(all_words), dtype=bool)
    spans, used, failures = [], 0, 0
    while used < budget and failures < patience:
        length = 1 + int(rng.choice(max_len, p=probs))
        k = int(np.searchsorted(ends, rng.integers(ends[-1]), side="right"))
        span: list[int] = []
        while (len(span) < length and k < len(all_words) and not taken[k] and used + sizes[k] <= budget
               and (not span or all_words[k][0] == all_words[k - 1][-1] + 1)):
            span.append(k)
            taken[k] = True
            used += sizes[k]
            k += 1
        if span:
            spans.append(np.concatenate([all_words[j] for j in span]))
            failures = 0
        else:
            failures += 1
    return spans
