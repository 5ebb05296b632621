"""XLM <-> Hugging Face ``xlm``: XLMModel and XLMWithLMHeadModel (the MLM/TLM/CLM prediction layer).

The network is ptmzoo's XLM (BERT's post-LN encoder, language table = segment table); HF keeps
the embeddings and each kind of per-layer module in flat lists under ``transformer.``:

=====================================  =========================================
HF                                     ptmzoo ``backbone.``
=====================================  =========================================
embeddings / position_embeddings       embeddings.word / embeddings.position
lang_embeddings (n_langs > 1 only)     embeddings.token_type (one row per language)
layer_norm_emb                         embeddings.norm
attentions.i.{q,k,v}_lin, out_lin      layers.i.attention.qkv (fused), .out
layer_norm1.i / ffns.i.lin1, lin2      layers.i.attention_norm / .ffn.up, .down
layer_norm2.i                          layers.i.ffn_norm
pred_layer.proj (tied, with bias)      heads.mlm.decoder (no transform)
=====================================  =========================================

Config: HF's feed-forward is always 4 x ``emb_dim`` wide, ``gelu_activation`` picks the exact
GELU or ReLU, ``n_langs`` with ``id2lang``/``lang2id`` names the languages, ``use_lang_emb``,
``sinusoidal_embeddings`` and ``causal`` are ptmzoo XLM config fields. Refused: the adaptive
softmax prediction layer (``asm``), decoders (``is_encoder: false``) and the task heads
(sequence summary, SQuAD heads).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ...errors import UserError
from ...models.model import PtmModel
from .base import Param, heads_of_kind, linear
from .bert import EncoderAdapter

# ptmzoo XLMConfig field <-> HF XLMConfig field (same meaning, same value)
_SAME = {"vocab_size": "vocab_size", "hidden_size": "emb_dim", "num_layers": "n_layers", "num_heads": "n_heads",
         "hidden_dropout": "dropout", "attention_dropout": "attention_dropout",
         "max_position_embeddings": "max_position_embeddings", "initializer_range": "init_std",
         "layer_norm_eps": "layer_norm_eps", "pad_token_id": "pad_token_id", "causal": "causal",
         "sinusoidal_positions": "sinusoidal_embeddings", "language_embeddings": "use_lang_emb"}

# transformers' XLMConfig defaults, and the other names its attribute_map accepts
_XLM_DEFAULTS = {"vocab_size": 30145, "emb_dim": 2048, "n_layers": 12, "n_heads": 16, "dropout": 0.1,
                 "attention_dropout": 0.1, "gelu_activation": True, "sinusoidal_embeddings": False, "causal": False,
                 "asm": False, "n_langs": 1, "use_lang_emb": True, "max_position_embeddings": 512,
                 "layer_norm_eps": 1e-12, "init_std": 0.02, "pad_token_id": 2, "is_encoder": True}
_ALIASES = {"hidden_size": "emb_dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
            "n_words": "vocab_size", "pad_index": "pad_token_id"}
_ACTIVATIONS = {True: "gelu", False: "relu"}  # gelu_activation -> hidden_act (HF's gelu is the exact one)


class XLMAdapter(EncoderAdapter):
    family = "xlm"
    model_type = "xlm"
    base_prefix = "transformer."
    base_architecture = "XLMModel"
    by_heads: ClassVar[dict[frozenset, str]] = {frozenset(): "XLMModel", frozenset({"mlm"}): "XLMWithLMHeadModel"}
    config_names: ClassVar[dict[str, str]] = _SAME
    hf_defaults: ClassVar[dict[str, Any]] = _XLM_DEFAULTS
    layer_prefix = ""  # layer i is ".i" after the name of each list (see layer_params)
    pooler = None
    sentence_heads: ClassVar[dict[str, str]] = {}
    lm_bias = "pred_layer.proj.bias"
    lm_weight = "pred_layer.proj.weight"  # tied to the word embeddings
    ignored = re.compile(r"position_ids$")  # a buffer older transformers saved

    # ---- config -------------------------------------------------------------------------------
    def _with_defaults(self, hf: dict[str, Any]) -> dict[str, Any]:
        """config.json completed with transformers' defaults; aliases (hidden_size, ...) under XLM's names."""
        given = {k: v for k, v in hf.items() if v is not None}
        given.update({name: given[alias] for alias, name in _ALIASES.items() if alias in given and name not in given})
        return {**self.hf_defaults, **given}

    def check_hf_config(self, hf: dict[str, Any], where: str) -> None:
        hf = self._with_defaults(hf)
        if hf["asm"]:
            raise UserError(f"{where}: asm=True (an adaptive-softmax prediction layer) is not supported; ptmzoo "
                            "converts XLM models whose prediction layer is a linear projection (asm=false)")
        if not hf["is_encoder"]:
            raise UserError(f"{where}: is_encoder=False is not supported; ptmzoo's XLM is an encoder")
        if not isinstance(hf["n_langs"], int) or hf["n_langs"] < 1:
            raise UserError(f"{where}: n_langs must be a whole number of at least 1, not {hf['n_langs']!r}")

    def languages(self, hf: dict[str, Any], where: str) -> list[str]:
        """Language names by id: from id2lang or lang2id, else lang0, lang1, ..."""
        count = hf["n_langs"]
        if hf.get("id2lang"):
            names = {int(i): str(lang) for i, lang in hf["id2lang"].items()}
        elif hf.get("lang2id"):
            names = {int(i): str(lang) for lang, i in hf["lang2id"].items()}
        else:
            return [f"lang{i}" for i in range(count)]
        if sorted(names) != list(range(count)):
            raise UserError(f"{where}: id2lang/lang2id name languages {sorted(names)} but n_langs is {count}; "
                            "fix config.json")
        return [names[i] for i in range(count)]

    def config_from_hf(self, hf: dict[str, Any], keys: set[str], where: str) -> dict[str, Any]:
        hf = self._with_defaults(hf)
        config = {ptm: hf[key] for ptm, key in self.config_names.items()}
        config.update(intermediate_size=4 * hf["emb_dim"], hidden_act=_ACTIVATIONS[bool(hf["gelu_activation"])],
                      languages=self.languages(hf, where), add_pooler=False, lm_head_transform=False)
        return config

    def config_to_hf(self, config) -> dict[str, Any]:
        hf = {key: getattr(config, ptm) for ptm, key in self.config_names.items()}
        languages = list(config.languages)
        hf.update({"model_type": self.model_type, "gelu_activation": config.hidden_act == "gelu", "asm": False,
                   "n_langs": len(languages), "id2lang": dict(enumerate(languages)),
                   "lang2id": {lang: i for i, lang in enumerate(languages)}, "tie_word_embeddings": True})
        return hf

    def check_exportable(self, model: PtmModel) -> None:
        config = model.config
        if model.backbone.has_pooler:
            raise UserError("Hugging Face XLM models have no pooler; this model has model.add_pooler=true and "
                            "cannot be exported as xlm")
        super().check_exportable(model)
        if config.intermediate_size != 4 * config.hidden_size:
            raise UserError(f"Hugging Face XLM's feed-forward layer is 4 x hidden_size ({4 * config.hidden_size}) "
                            f"wide; this model has model.intermediate_size={config.intermediate_size}")
        if config.hidden_act not in _ACTIVATIONS.values():
            raise UserError(f"Hugging Face XLM computes gelu or relu; this model has "
                            f"model.hidden_act={config.hidden_act!r}")
        if "mlm" in heads_of_kind(model) and config.lm_head_transform:
            raise UserError("XLMWithLMHeadModel's prediction layer is the tied projection alone; this model's mlm "
                            "head has BERT's dense + LayerNorm transform (model.lm_head_transform=true)")

    # ---- heads --------------------------------------------------------------------------------
    def heads_from_hf(self, hf: dict[str, Any], keys: set[str], architecture: str) -> dict[str, dict]:
        return {"mlm": {"kind": "mlm"}} if self.lm_bias in keys else {}

    def head_params(self, model: PtmModel) -> list[Param]:
        kinds = heads_of_kind(model)
        return [Param(f"heads.{kinds['mlm']}.decoder.bias", (self.lm_bias,))] if "mlm" in kinds else []

    def aliases(self, model: PtmModel) -> dict[str, str]:
        if "mlm" not in heads_of_kind(model):
            return {}
        return {self.lm_weight: f"{self.base_prefix}embeddings.weight"}

    # ---- weights ------------------------------------------------------------------------------
    def is_backbone_key(self, key: str) -> bool:
        return key.startswith(("embeddings.", "position_embeddings.", "lang_embeddings.", "layer_norm_emb.",
                               "attentions.", "layer_norm1.", "ffns.", "layer_norm2."))

    def embedding_params(self, config) -> list[Param]:
        params = [Param("embeddings.word.weight", ("embeddings.weight",)),
                  Param("embeddings.position.weight", ("position_embeddings.weight",)),
                  *linear("embeddings.norm", "layer_norm_emb")]
        if config.type_vocab_size:
            params.append(Param("embeddings.token_type.weight", ("lang_embeddings.weight",)))
        return params

    def layer_params(self, ptm: str, hf: str) -> list[Param]:
        """Layer ``hf`` = ".i": HF keeps one list per kind of module, so each list's name comes first."""
        return [*linear(f"{ptm}.attention.qkv", *(f"attentions{hf}.{p}_lin" for p in "qkv")),
                *linear(f"{ptm}.attention.out", f"attentions{hf}.out_lin"),
                *linear(f"{ptm}.attention_norm", f"layer_norm1{hf}"),
                *linear(f"{ptm}.ffn.up", f"ffns{hf}.lin1"),
                *linear(f"{ptm}.ffn.down", f"ffns{hf}.lin2"),
                *linear(f"{ptm}.ffn_norm", f"layer_norm2{hf}")]
