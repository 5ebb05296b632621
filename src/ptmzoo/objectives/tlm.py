"""XLM's translation language modelling (Lample & Conneau, 2019): BERT's masking applied to a
sentence and its translation side by side, so a masked word can be predicted from either
language. The pair, its language ids and the positions restarting at the target come from
``data.parallel.ParallelPairs``; the masking is MLM's (``objectives.mlm``: 15%, 80/10/10 over
both sentences, special tokens never chosen) and so is the head, tied to the shared embeddings.

XLM's other objective, MLM on monolingual streams, is the ``mlm`` objective on an XLM model with
a corpus prepared with ``--language``: every token then carries that language's id.
"""

from __future__ import annotations

from ..errors import UserError
from ..models.xlm import XLMConfig
from .mlm import MaskedLM, MLMHead


class TranslationLM(MaskedLM):
    name = "tlm"
    head = MLMHead
    samples = "parallel_pairs"

    def check_corpus(self, corpus) -> None:
        if "parallel" not in corpus.meta:
            raise UserError(f"objective 'tlm' needs sentence pairs, but {corpus.directory} is not a parallel corpus; "
                            "prepare one with `ptmzoo prepare --parallel --languages SRC,TGT`")
        super().check_corpus(corpus)

    def check_backbone(self, backbone, preset: str) -> None:
        super().check_backbone(backbone, preset)
        if not isinstance(backbone.config, XLMConfig):
            raise UserError(f"objective 'tlm' needs language embeddings, but '{preset}' has none; use an XLM preset "
                            "(xlm-tiny, xlm-base)")
