"""GPT-1 fine-tuning (Radford et al., 2018, section 3.3): traversal-style inputs and the
auxiliary language-modelling loss, for any decoder checkpoint.

A decoder reads left to right, so structured inputs are flattened into one token sequence
with learned marker tokens, and the classifier reads the hidden state of the final *extract*
token (the only one that has seen everything):

    classification   <start> text <extract>
    entailment/pair  <start> premise <delim> hypothesis <extract>
    similarity       both orders, <start> a <delim> b <extract> and <start> b <delim> a <extract>,
                     their extract states summed before the classifier
    multiple choice  <start> context <delim> answer <extract> for each answer, one score each

The three markers are added to the tokenizer (and rows to the embedding matrix) when missing.
During fine-tuning the LM loss on the same inputs is added with weight lambda
(``--aux-lm-weight``); the paper found it helps larger data sets and speeds up convergence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import Config, setting
from ..errors import UserError
from ..objectives.clm import LMHead

# the names of Hugging Face's openai-gpt fine-tuning example, so its tokenizers interoperate
START, DELIMITER, EXTRACT = "_start_", "_delimiter_", "_classify_"
AUX_LM_HEAD = "aux_lm"


@dataclass
class GPTInputOptions(Config):
    """GPT-1 fine-tuning (decoder checkpoints): traversal-style inputs and the auxiliary LM loss."""

    gpt_input: bool = setting(False, help="<start> text [<delim> pair] <extract> inputs, classifier on the "
                                          "extract token")
    aux_lm_weight: float = setting(0.0, metavar="LAMBDA", help="add LAMBDA x the LM loss on the same inputs to the "
                                                               "task loss (0.5 in the paper)")

    def validate(self) -> None:
        super().validate()
        if self.aux_lm_weight < 0:
            raise UserError("--aux-lm-weight must not be negative")


class GPTInputs:
    """Builds ``<start> a <delim> b ... <extract>`` sequences of at most ``max_length`` tokens."""

    def __init__(self, tokenizer, max_length: int):
        missing = [t for t in (START, DELIMITER, EXTRACT) if tokenizer.backend.token_to_id(t) is None]
        if missing:
            tokenizer.backend.add_special_tokens(missing)  # saved with the fine-tuned checkpoint
        self.tokenizer = tokenizer
        self.start, self.delimiter, self.extract = (tokenizer.backend.token_to_id(t)
                                                    for t in (START, DELIMITER, EXTRACT))
        self.max_length = max_length

    def sequence(self, *segments: list[int]) -> list[int]:
        """The markers around ``segments``, the longest segment shortened first to fit."""
        segments = [list(s) for s in segments]
        budget = self.max_length - len(segments) - 1  # start, delimiters, extract
        if budget < len(segments):
            raise UserError(f"--max-length {self.max_length} leaves no room for the texts")
        while sum(map(len, segments)) > budget:
            max(segments, key=len).pop()
        ids = [self.start]
        for i, segment in enumerate(segments):
            ids += segment + [self.delimiter if i < len(segments) - 1 else self.extract]
        return ids

    def tokens(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(texts, add_special_tokens=False)

    def encode(self, texts: list[str], pairs: list[str] | None = None, both_orders: bool = False):
        """One sequence per text (or pair); with ``both_orders`` a pair of sequences per pair."""
        first = self.tokens(texts)
        if pairs is None:
            return [self.sequence(a) for a in first]
        second = self.tokens(pairs)
        if both_orders:
            return [[self.sequence(a, b), self.sequence(b, a)] for a, b in zip(first, second)]
        return [self.sequence(a, b) for a, b in zip(first, second)]


def resize_token_embeddings(backbone, size: int) -> None:
    """Grow the input embedding matrix to ``size`` rows (new rows drawn like the originals)."""
    embedding: nn.Embedding = backbone.input_embeddings
    old = embedding.weight
    if size <= old.shape[0]:
        return
    extra = torch.empty(size - old.shape[0], old.shape[1], dtype=old.dtype, device=old.device)
    nn.init.normal_(extra, std=backbone.config.initializer_range)
    embedding.weight = nn.Parameter(torch.cat([old.detach(), extra]))
    embedding.num_embeddings = size
    backbone.config.vocab_size = size  # the checkpoint rebuilds the model at this size


def lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token targets of the auxiliary LM loss: every real token (padding excluded)."""
    return input_ids.masked_fill(attention_mask == 0, -100)


class AuxiliaryLMHead(LMHead):
    """The causal LM head (tied to the embeddings) with its loss scaled by lambda, so that the
    Trainer's per-head means add up to task loss + lambda * LM loss. Grouped inputs
    [batch, group, length] are flattened like the backbone flattens them. No logits at
    inference: the task never needs them."""

    kind = "aux_clm"

    def __init__(self, backbone, weight: float = 0.5, **options):
        if not backbone.causal:
            raise UserError("--aux-lm-weight needs a decoder checkpoint (GPT family)")
        super().__init__(backbone, weight=weight, **options)
        self.weight = weight

    def logits(self, out, batch):
        return None

    @staticmethod
    def _flat(batch, key):
        return {key: batch[key].reshape(-1, batch[key].shape[-1])}

    def count_targets(self, batch):
        return super().count_targets(self._flat(batch, self.target_key))

    def loss_sum(self, out, batch):
        return self.weight * super().loss_sum(out, self._flat(batch, self.target_key))
