"""Exact weight interchange with Hugging Face ``transformers``: one adapter per family.

    >>> from ptmzoo.interop.hf import to_hf_model, from_hf_model, export_hf, import_hf
    >>> hf = to_hf_model(ptmzoo.load("runs/bert/final").model)   # e.g. BertForPreTraining
    >>> model = from_hf_model(hf)                                 # back to a PtmModel
    >>> export_hf(ptmzoo.load("runs/bert/final"), "bert-hf")      # a directory AutoModel reads

``ptmzoo.load`` opens Hugging Face directories directly; ``ptmzoo convert`` converts on disk.
"""

from .base import ADAPTERS, Param, StateDictAdapter
from .convert import export_hf, from_hf_model, import_hf, is_hf_dir, to_hf_model

__all__ = ["ADAPTERS", "Param", "StateDictAdapter", "export_hf", "from_hf_model", "import_hf", "is_hf_dir",
           "to_hf_model"]
