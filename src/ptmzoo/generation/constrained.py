"""Constrained decoding: the output can only be one of a given set of token sequences.

``TokenTrie`` holds the sequences (each followed by the end token) as a prefix tree. Given as the
``constraint`` of ``GenerationOptions``, it wraps the decoding loop's stepper in a
``ConstrainedLM``, which follows each row's tokens down the tree and sets the logits of every
token that would leave it to -inf. Greedy decoding, sampling and beam search all work unchanged
on the masked logits. A row that has finished (or left the tree by a forced pick among
-inf candidates, which beam search makes when it has fewer live candidates than slots) may only
continue with the end token, so no row ever has all its logits at -inf.

With ``num_beams`` at least the number of sequences and ``length_penalty=0``, beam search is
exact: at every depth there are no more distinct prefixes than sequences, so none is dropped,
and the result is the sequence with the highest total log-probability (end token included).
"""

from __future__ import annotations

import torch

from ..errors import UserError


class TokenTrie:
    """Token sequences as a prefix tree; each ends with ``end_id``."""

    def __init__(self, sequences: list[list[int]], end_id: int):
        if not sequences or any(len(s) == 0 for s in sequences):
            raise UserError("constrained decoding needs one or more non-empty token sequences")
        self.end_id = end_id
        self.root: dict[int, dict] = {}
        for sequence in sequences:
            node = self.root
            for token in [*sequence, end_id]:
                node = node.setdefault(int(token), {})

    def next_tokens(self, prefix: list[int]) -> list[int]:
        """The tokens that may follow ``prefix`` (none once it has ended or left the tree)."""
        node: dict | None = self.root
        for token in prefix:
            node = node.get(int(token)) if node else None
        return list(node or ())

    def restrict(self, lm) -> ConstrainedLM:
        return ConstrainedLM(lm, self)


class ConstrainedLM:
    """A decoding stepper (``prefill``/``step``/``reorder``) whose logits allow only the tokens
    that continue a sequence of ``trie``."""

    def __init__(self, lm, trie: TokenTrie):
        self.lm, self.trie = lm, trie
        self.nodes: list[dict | None] = []  # each row's place in the tree (None: left it)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.nodes = [self.trie.root] * input_ids.shape[0]
        return self._mask(self.lm.prefill(input_ids, attention_mask))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.nodes = [node.get(token) if node else None for node, token in zip(self.nodes, tokens.tolist())]
        return self._mask(self.lm.step(tokens))

    def reorder(self, index: torch.Tensor) -> None:
        self.nodes = [self.nodes[i] for i in index.tolist()]
        self.lm.reorder(index)

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        rows, cols = [], []
        for row, node in enumerate(self.nodes):
            allowed = list(node) if node else [self.trie.end_id]
            rows += [row] * len(allowed)
            cols += allowed
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)] = True
        return logits.masked_fill(~keep, float("-inf"))


__all__ = ["ConstrainedLM", "TokenTrie"]
