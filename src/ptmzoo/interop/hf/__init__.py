"""Exact weight interchange with Hugging Face ``transformers``: one adapter per family.

    >>> from ptmzoo.interop.hf import to_hf_model, from_hf_model, export_hf, import_hf
    >>> hf = to_hf_model(ptmzoo.load("runs/bert/final").model)   # e.g. BertForPreTraining
    >>> model = from_hf_model(hf)                                 # back to a PtmModel
    >>> export_hf(ptmzoo.load("runs/bert/final"), "bert-hf")      # a directory AutoModel reads

``ptmzoo.load`` opens Hugging Face directories directly; ``ptmzoo convert`` converts on disk.
The adapters (one module per family) are listed in each family's spec in ``ptmzoo.catalog``;
``convert`` holds the directions. The names below are loaded on first use, so that importing an
adapter module does not import the catalog (which imports the adapters).
"""

from __future__ import annotations

__all__ = ["export_hf", "from_hf_model", "import_hf", "is_hf_dir", "to_hf_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module 'ptmzoo.interop.hf' has no attribute '{name}'")
