"""Data augmentation for task distillation: more inputs for the teacher to label.

* ``MLMReplacer`` -- TinyBERT's (Jiao et al., 2020, Algorithm 1): each word of a sentence is in turn
  replaced by the mask token and an MLM model proposes the K = 15 most likely single tokens for it;
  each augmented copy replaces every word with probability p = 0.4 by one of its candidates (drawn
  uniformly). TinyBERT takes the candidates of multi-piece words from GloVe neighbours; here the
  whole word becomes one mask token and the MLM proposes whole-word tokens (no GloVe).
* ``TangAugmenter`` -- Distilled BiLSTM's (Tang et al., 2019, section 3.3): per word, with probability
  p_mask the mask token, else with p_pos a word of the same part of speech drawn from the unigram
  distribution of that tag; then with p_ng the example is replaced by an n-gram of it (n in 1..5).
  Parts of speech come from a tagged corpus (``read_pos_lexicon``: CoNLL columns ``word POS ...``
  such as CoNLL-2003, or ``word/TAG`` text such as the People's Daily corpus): a word's tag is its
  most frequent one there. Without a lexicon, POS-guided replacement is left out.

Words are whitespace-separated tokens, or the characters of a text without spaces (Chinese).
Augmented rows copy their source row (so the label column is still there) and are marked with
``augmented: True``: their labels are not gold, so distillation on them uses soft targets only.
"""

from __future__ import annotations

import collections
import re
from typing import Any

import numpy as np
import torch

from ..errors import UserError, require_file
from ..tasks.base import SpecialTokens
from ..textio import open_text

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def split_words(text: str) -> tuple[list[str], str]:
    """Words and the string that joins them back: spaces, or nothing for unspaced (Chinese) text."""
    words = text.split()
    if len(words) <= 1 and CJK.search(text):
        return list(text.strip()), ""
    return words, " "


class MLMReplacer:
    """TinyBERT's masked-LM word replacement with ``model`` (a PtmModel with an ``mlm`` head)."""

    def __init__(self, model, tokenizer, candidates: int = 15, prob: float = 0.4, max_length: int = 128):
        if "mlm" not in model.heads:
            raise UserError("TinyBERT's augmentation needs a model with a masked-LM head (--augment-model: a "
                            "pre-trained checkpoint)")
        if tokenizer.mask_id is None:
            raise UserError("TinyBERT's augmentation needs a tokenizer with a mask token")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.candidates, self.prob, self.max_length = candidates, prob, max_length
        self.template = SpecialTokens(tokenizer)
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        allowed = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        for token, index in vocab.items():  # whole-word tokens only (not ##pieces, not specials)
            allowed[index] = not token.startswith("##") and index not in set(tokenizer.special_ids)
        self.allowed = allowed

    @torch.no_grad()
    def word_candidates(self, words: list[str]) -> list[list[str]]:
        """The K best replacements of each word (empty for words past the length limit)."""
        pieces = [self.tokenizer.encode(w, add_special_tokens=False) or [self.tokenizer.unk_id] for w in words]
        budget = self.max_length - self.template.count(1)
        kept, used = 0, 0
        for p in pieces:
            if used + len(p) > budget:
                break
            used += len(p)
            kept += 1
        if kept == 0:
            return [[] for _ in words]
        rows, positions = [], []
        for i in range(kept):
            ids = [t for j in range(kept) for t in (pieces[j] if j != i else [self.tokenizer.mask_id])]
            row, _, starts = self.template.build(ids)
            rows.append(row)
            positions.append(starts[0] + sum(len(pieces[j]) for j in range(i)))
        length = max(map(len, rows))
        pad = self.tokenizer.pad_id or 0
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
        device = next(self.model.parameters()).device
        out = self.model(**self.model.select_inputs({"input_ids": ids.to(device), "attention_mask": mask.to(device)}))
        logits = out.head_logits["mlm"][torch.arange(len(rows)), torch.tensor(positions)].float().cpu()
        logits[:, ~self.allowed[: logits.shape[-1]]] = float("-inf")
        best = logits.topk(self.candidates, dim=-1).indices.tolist()
        found = [[self.tokenizer.backend.id_to_token(t) for t in row] for row in best]
        return found + [[] for _ in range(len(words) - kept)]

    def __call__(self, text: str, copies: int, rng: np.random.Generator) -> list[str]:
        words, joiner = split_words(text)
        if not words:
            return []
        options = self.word_candidates(words)
        out = []
        for _ in range(copies):
            new = [rng.choice(c) if c and rng.random() < self.prob else w for w, c in zip(words, options)]
            out.append(joiner.join(new))
        return out


def read_pos_lexicon(path: str) -> dict[str, str]:
    """word -> its most frequent part-of-speech tag in a tagged corpus (CoNLL columns or word/TAG)."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with open_text(require_file(path, "POS lexicon")) as fh:
        for line in fh:
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                continue
            if "/" in parts[0] and 2 * sum("/" in p for p in parts) >= len(parts):
                for item in parts:  # word/TAG word/TAG ... ([...]nt compounds: brackets dropped)
                    word, _, tag = item.strip("[").rpartition("/")
                    tag = tag.split("]")[0]
                    if word and tag:
                        counts[word][tag] += 1
            elif len(parts) >= 2:
                counts[parts[0]][parts[1]] += 1
    if not counts:
        raise UserError(f"{path} has no tagged words (expected CoNLL 'word POS ...' lines or 'word/TAG' tokens)")
    return {word: tags.most_common(1)[0][0] for word, tags in counts.items()}


class TangAugmenter:
    """Masking, POS-guided word replacement and n-gram sampling (Tang et al., 2019)."""

    def __init__(self, mask_token: str, lexicon: dict[str, str] | None = None, mask_prob: float = 0.1,
                 pos_prob: float = 0.1, ngram_prob: float = 0.25, max_ngram: int = 5,
                 counts: collections.Counter | None = None):
        self.mask_token, self.lexicon = mask_token, lexicon or {}
        self.mask_prob, self.pos_prob = mask_prob, (pos_prob if lexicon else 0.0)
        self.ngram_prob, self.max_ngram = ngram_prob, max_ngram
        self.counts = counts or collections.Counter()
        self.by_tag: dict[str, tuple[list[str], np.ndarray]] = {}

    def fit(self, texts: list[str]) -> TangAugmenter:
        """The unigram distribution per tag, from the training texts (a word's count there)."""
        for text in texts:
            self.counts.update(split_words(text)[0])
        pools: dict[str, list[str]] = collections.defaultdict(list)
        for word in self.counts:
            if word in self.lexicon:
                pools[self.lexicon[word]].append(word)
        for tag, words in pools.items():
            weights = np.asarray([self.counts[w] for w in words], dtype=np.float64)
            self.by_tag[tag] = (words, weights / weights.sum())
        return self

    def one(self, words: list[str], rng: np.random.Generator) -> list[str]:
        new = []
        for word in words:
            x = rng.random()
            if x < self.mask_prob:
                new.append(self.mask_token)
            elif x < self.mask_prob + self.pos_prob and self.lexicon.get(word) in self.by_tag:
                pool, weights = self.by_tag[self.lexicon[word]]
                new.append(pool[rng.choice(len(pool), p=weights)])
            else:
                new.append(word)
        if len(new) > 1 and rng.random() < self.ngram_prob:
            n = int(rng.integers(1, min(self.max_ngram, len(new)) + 1))
            start = int(rng.integers(0, len(new) - n + 1))
            new = new[start:start + n]
        return new

    def __call__(self, text: str, copies: int, rng: np.random.Generator) -> list[str]:
        """Up to ``copies`` distinct augmented texts (different from the original); Tang et al. draw
        20 per example and drop duplicates."""
        words, joiner = split_words(text)
        if not words:
            return []
        seen, out = {text}, []
        for _ in range(copies):
            candidate = joiner.join(self.one(words, rng))
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
        return out


def augment_rows(rows: list[dict], column: str, augment, copies: int, seed: int) -> list[dict]:
    """The rows followed by their augmented copies (the text in ``column`` changed)."""
    rng = np.random.default_rng(seed)
    extra = []
    for row in rows:
        for text in augment(str(row[column]), copies, rng):
            extra.append({**row, column: text, "augmented": True})
    return rows + extra


def augmenter(options, finetune, teacher) -> Any:
    """The training-row augmentation of a distillation run (``FinetuneRun(augment=...)``)."""
    from ..loading import load

    text_column = finetune.options.text_column
    copies, seed = options.augment, finetune.train.seed
    tokenizer = teacher.tokenizer
    if options.method == "tinybert":
        model = load(options.augment_model).model if options.augment_model else teacher.model
        replacer = MLMReplacer(model, tokenizer, prob=options.augment_prob or 0.4,
                               max_length=finetune.options.max_length)
        return lambda rows: augment_rows(rows, text_column, replacer, copies, seed)
    if tokenizer.mask_id is None:
        raise UserError("the bilstm augmentation masks words; the tokenizer has no mask token")
    lexicon = read_pos_lexicon(options.pos_lexicon) if options.pos_lexicon else None
    prob = options.augment_prob or 0.1

    def run(rows):
        tang = TangAugmenter(tokenizer.backend.id_to_token(tokenizer.mask_id), lexicon, prob, prob,
                             options.ngram_prob).fit([str(r[text_column]) for r in rows])
        return augment_rows(rows, text_column, tang, copies, seed)

    return run
