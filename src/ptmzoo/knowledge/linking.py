"""Entity linking by name, for ERNIE's entity-aligned corpora (``ptmzoo prepare --entities``).

The entities are the names of a vector file (``knowledge.vectors``); entity id ``i`` is the
``i``-th name (1-based: id 0 means "no entity"). Mentions are found in one of two ways:

* tagged entity spans (``--segmentation tagged``, People's Daily ``nr/ns/nt``): a span links to
  the entity whose name is its words joined without spaces (Chinese: ``江 泽民`` -> ``江泽民``)
  or, failing that, joined with ``_`` (``New York`` -> ``New_York``); spans without a matching
  name stay unlinked.
* plain text (any other segmentation): a greedy left-to-right longest match of the names, where
  ``_`` in a name also matches a space. At each character the longest name starting there is
  taken and the scan continues after it, otherwise it moves on one character; a name never
  starts or ends inside a run of ASCII letters and digits (``Paris`` is not found in
  ``Parisian``). Exact string matching links every occurrence of a name, ambiguous or not -- the
  same simplification as the exact-match anchors the ERNIE paper starts from.

The entity id of a mention is stored at the first token of the mention (the token holding the
mention's first character), as in ERNIE; every other token gets 0.
"""

from __future__ import annotations

import numpy as np

Mention = tuple[int, int, int]  # character begin, end (exclusive), entity id


def _word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


class EntityLinker:
    def __init__(self, names: list[str]):
        self.ids = {name: index + 1 for index, name in enumerate(names)}
        self.forms = dict(self.ids)  # what a name looks like in text
        for name, entity in self.ids.items():
            if "_" in name:
                self.forms.setdefault(name.replace("_", " "), entity)
        lengths: dict[str, set[int]] = {}
        for form in self.forms:
            lengths.setdefault(form[0], set()).add(len(form))
        self.lengths = {first: sorted(sizes, reverse=True) for first, sizes in lengths.items()}

    def lookup(self, mention: str) -> int:
        """The id of a tagged mention (words separated by spaces), 0 when no name matches."""
        words = mention.split()
        return self.ids.get("".join(words)) or self.ids.get("_".join(words)) or 0

    def link_spans(self, text: str, spans: list[tuple[int, int]]) -> list[Mention]:
        linked = ((begin, end, self.lookup(text[begin:end])) for begin, end in spans)
        return [mention for mention in linked if mention[2]]

    def longest_match(self, text: str) -> list[Mention]:
        found: list[Mention] = []
        pos, size = 0, len(text)
        while pos < size:
            match = 0
            if pos == 0 or not (_word_char(text[pos - 1]) and _word_char(text[pos])):
                for length in self.lengths.get(text[pos], ()):
                    end = pos + length
                    if end <= size and text[pos:end] in self.forms and (
                            end == size or not (_word_char(text[end - 1]) and _word_char(text[end]))):
                        match = length
                        break
            if match:
                found.append((pos, pos + match, self.forms[text[pos:pos + match]]))
                pos += match
            else:
                pos += 1
        return found


def token_entities(offsets: np.ndarray, mentions: list[Mention]) -> np.ndarray:
    """Per token ([n, 2] character offsets), the id of the mention it begins, else 0. The first
    token of a mention is the first whose last character lies at or after the mention's start
    (byte-level BPE tokens carry the space before a word), provided it is still inside it."""
    ids = np.zeros(len(offsets), dtype=np.int64)
    if not mentions or not len(offsets):
        return ids
    last = offsets[:, 1] - 1
    spans = np.asarray(mentions, dtype=np.int64)
    first = np.searchsorted(last, spans[:, 0], side="left")
    inside = first < len(last)
    inside[inside] &= last[first[inside]] < spans[inside, 1]
    ids[first[inside]] = spans[inside, 2]
    return ids
