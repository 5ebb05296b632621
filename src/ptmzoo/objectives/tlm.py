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
from .base import register_objective
from .mlm import MaskedLM


def corpus_language_ids(meta: dict, config) -> tuple[int, ...] | None:
    """The language ids a corpus gives its tokens: (source, target) for a parallel corpus, (id,)
    for a monolingual one that names its language; None for a model without languages."""
    if not isinstance(config, XLMConfig):
        return None
    where = "corpus: "
    if "parallel" in meta:
        return tuple(config.language_id(lang, where) for lang in meta["parallel"]["languages"])
    return (config.language_id(meta["language"], where),) if "language" in meta else None


@register_objective
class TranslationLM(MaskedLM):
    name = "tlm"
    head_kind = "mlm"
    needs_parallel = True

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
