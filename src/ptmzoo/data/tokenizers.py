"""Tokenizers: training with the ``tokenizers`` library, loading and saving, encoding for models.

Four kinds, each with the special tokens its family expects:

* ``wordpiece`` -- BERT: lower-casing (optional), Chinese characters split apart, ``##`` pieces;
  ``[PAD] [UNK] [CLS] [SEP] [MASK]``; pairs as ``[CLS] A [SEP] B [SEP]``.
* ``bpe`` -- byte-level BPE as in GPT-2 (``<|endoftext|>``) or RoBERTa (``<s> <pad> </s> <unk>
  <mask>``, pairs ``<s> A </s></s> B </s>``). Every byte is in the alphabet: no unknown tokens.
* ``unigram`` -- SentencePiece-style unigram LM over ``▁``-marked words (T5/ALBERT-like specials).
* ``char`` -- one token per character, the usual choice for Chinese BERT-style models; whitespace
  separates and is dropped, so decoding joins characters without spaces.

A trained tokenizer is saved as ``tokenizer.json`` (the ``tokenizers`` format, which
``transformers`` also reads) plus ``tokenizer_config.json`` naming the special-token roles; the
WordPiece and character vocabularies are also written as BERT-style ``vocab.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from tokenizers import (
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tokenizers import Tokenizer as Backend

from ..errors import UserError
from ..textio import open_text

KINDS = ("wordpiece", "bpe", "unigram", "char")

# Special-token sets by family style. Order fixes the ids: the first token gets id 0, ...
SPECIAL_STYLES: dict[str, dict[str, str]] = {
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "gpt2": {"eos": "<|endoftext|>", "bos": "<|endoftext|>", "unk": "<|endoftext|>"},
    "roberta": {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>",
                "cls": "<s>", "sep": "</s>"},
    "t5": {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"},
    # XLNet's SentencePiece ids 0-6; the summary token <cls> ends the input: A <sep> B <sep> <cls>
    "xlnet": {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "cls": "<cls>", "sep": "<sep>", "pad": "<pad>",
              "mask": "<mask>"},
}
DEFAULT_STYLE = {"wordpiece": "bert", "char": "bert", "bpe": "gpt2", "unigram": "t5"}
ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")
_TEMPLATE_ROLES = {"bert": ("cls", "sep"), "roberta": ("bos", "eos"), "gpt2": ("eos",), "t5": ("eos",),
                   "xlnet": ("cls", "sep")}

# Token names that identify roles in tokenizers that come without tokenizer_config.json.
_KNOWN_ROLE_NAMES = {
    "pad": ["[PAD]", "<pad>"],
    "unk": ["[UNK]", "<unk>"],
    "cls": ["<cls>", "[CLS]", "<s>"],
    "sep": ["<sep>", "[SEP]", "</s>"],
    "mask": ["[MASK]", "<mask>"],
    "bos": ["<s>", "<|endoftext|>"],
    "eos": ["</s>", "<|endoftext|>"],
}


def _unique(tokens: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for token in tokens:
        if token not in seen:
            seen.append(token)
    return seen


def _post_processor(style: str, roles: dict[str, str], backend: Backend):
    """Template that adds the family's special tokens around single texts and pairs."""
    def tid(role: str) -> tuple[str, int]:
        return roles[role], backend.token_to_id(roles[role])

    if style == "bert":
        cls, sep = roles["cls"], roles["sep"]
        return processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[tid("cls"), tid("sep")],
        )
    if style == "roberta":
        bos, eos = roles["bos"], roles["eos"]
        return processors.TemplateProcessing(
            single=f"{bos} $A {eos}",
            pair=f"{bos} $A {eos} {eos} $B {eos}",
            special_tokens=[tid("bos"), tid("eos")],
        )
    if style == "gpt2":
        # GPT-2 adds nothing to a single text (prompts must not end in <|endoftext|>); a pair is
        # joined by the end-of-text token, the delimiter of GPT-1's input transformations.
        eos = roles["eos"]
        return processors.TemplateProcessing(
            single="$A", pair=f"$A:0 {eos}:0 $B:1", special_tokens=[tid("eos")]
        )
    if style == "t5":
        eos = roles["eos"]
        return processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A:0 {eos}:0 $B:1 {eos}:1", special_tokens=[tid("eos")]
        )
    if style == "xlnet":  # as XLNet's tokenizer: <cls> last, in a segment (2) of its own
        cls, sep = roles["cls"], roles["sep"]
        return processors.TemplateProcessing(
            single=f"$A:0 {sep}:0 {cls}:2", pair=f"$A:0 {sep}:0 $B:1 {sep}:1 {cls}:2",
            special_tokens=[tid("cls"), tid("sep")],
        )
    raise UserError(f"unknown special-token style '{style}' (known: {', '.join(SPECIAL_STYLES)})")


def _blank_backend(kind: str, lowercase: bool, roles: dict[str, str], strip_accents: bool | None = None,
                   chinese_chars: bool = True):
    """An untrained tokenizers.Tokenizer for ``kind`` and the trainer class that fills it.

    WordPiece: ``strip_accents`` None strips them when lower-casing (BERT's rule); ``chinese_chars``
    puts spaces around CJK characters, so that each is a word of its own."""
    _unique(roles.values())
    unk = roles.get("unk")
    if kind == "wordpiece":
        backend = Backend(models.WordPiece(unk_token=unk or "[UNK]", continuing_subword_prefix="##"))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=chinese_chars, strip_accents=strip_accents, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        return backend, trainers.WordPieceTrainer, {"continuing_subword_prefix": "##"}
    if kind == "bpe":
        backend = Backend(models.BPE())
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        return backend, trainers.BpeTrainer, {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()}
    if kind == "unigram":
        backend = Backend(models.Unigram())
        norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        backend.normalizer = normalizers.Sequence(norm)
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        return backend, trainers.UnigramTrainer, {"unk_token": unk}
    if kind == "char":
        backend = Backend(models.WordLevel(unk_token=unk or "[UNK]"))
        # No NFKC here: it would turn full-width Chinese punctuation into ASCII and break round trips.
        if lowercase:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
        )
        backend.decoder = decoders.Fuse()
        return backend, trainers.WordLevelTrainer, {}
    raise UserError(f"unknown tokenizer kind '{kind}' (known: {', '.join(KINDS)})")


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the roles of its special tokens.

    ``encode`` adds the family's special tokens; ``encode_batch`` is the fast path used by the
    data pipeline; ``decode`` drops special tokens by default.
    """

    def __init__(self, backend: Backend, kind: str, roles: dict[str, str], style: str):
        self.backend = backend
        self.kind = kind
        self.style = style
        self.roles = {role: tok for role, tok in roles.items() if tok is not None}
        missing = [tok for tok in self.roles.values() if backend.token_to_id(tok) is None]
        if missing:
            raise UserError(f"tokenizer has no token {missing[0]!r}; retrain or fix tokenizer_config.json")
        self.backend.no_truncation()
        self.backend.no_padding()

    # ---- ids of the special roles -------------------------------------------------------------
    def role_id(self, role: str) -> int | None:
        token = self.roles.get(role)
        return None if token is None else self.backend.token_to_id(token)

    pad_id = property(lambda self: self.role_id("pad"))
    unk_id = property(lambda self: self.role_id("unk"))
    cls_id = property(lambda self: self.role_id("cls"))
    sep_id = property(lambda self: self.role_id("sep"))
    mask_id = property(lambda self: self.role_id("mask"))
    bos_id = property(lambda self: self.role_id("bos"))
    eos_id = property(lambda self: self.role_id("eos"))

    @property
    def special_ids(self) -> list[int]:
        ids = {self.backend.token_to_id(tok) for tok in self.roles.values()}
        for token in self.backend.get_added_tokens_decoder().values():
            if token.special:
                ids.add(self.backend.token_to_id(token.content))
        return sorted(i for i in ids if i is not None)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def frame(self) -> tuple[list[int], list[int]]:
        """The special ids the template puts before and after one text (BERT: [CLS], [SEP];
        XLNet: none, <sep> <cls>)."""
        encoding = self.backend.encode("a")
        inside = [i for i, seq in enumerate(encoding.sequence_ids) if seq is not None]
        if not inside:
            return list(encoding.ids), []
        return list(encoding.ids[: inside[0]]), list(encoding.ids[inside[-1] + 1:])

    @property
    def document_separator_id(self) -> int:
        """Token placed between documents when sequences are packed."""
        for role in ("sep", "eos"):
            if self.role_id(role) is not None:
                return self.role_id(role)
        raise UserError("tokenizer has neither a [SEP] nor an end-of-text token to separate documents")

    # ---- encoding -------------------------------------------------------------------------------
    def encode(
        self,
        text: str,
        pair: str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> list[int]:
        return self.encode_batch([text], None if pair is None else [pair], max_length, add_special_tokens)[0]

    def encode_batch(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        with_type_ids: bool = False,
    ):
        """Encode many texts (or pairs); truncation is longest-first to ``max_length`` tokens."""
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        if max_length is not None:
            self.backend.enable_truncation(max_length, strategy="longest_first")
        try:
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            if max_length is not None:
                self.backend.no_truncation()
        ids = [e.ids for e in encodings]
        if with_type_ids:
            return ids, [e.type_ids for e in encodings]
        return ids

    def encode_with_offsets(self, texts: list[str]):
        """Ids without special tokens and the character offsets of each token (data pipeline)."""
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encodings]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(map(int, ids)), skip_special_tokens=skip_special_tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def fingerprint(self) -> str:
        return hashlib.sha256(self.backend.to_str().encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "style": self.style, "vocab_size": self.vocab_size,
                "fingerprint": self.fingerprint(), "roles": dict(self.roles)}

    # ---- files ---------------------------------------------------------------------------------
    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.backend.save(os.path.join(directory, "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "ptmzoo_kind": self.kind,
            "ptmzoo_style": self.style,
            **{f"{role}_token": tok for role, tok in self.roles.items()},
        }
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
            json.dump(config, fh, ensure_ascii=False, indent=2)
        if self.kind in ("wordpiece", "char"):
            self.save_vocab_txt(os.path.join(directory, "vocab.txt"))

    def save_vocab_txt(self, path: str) -> None:
        """One token a line, line number = id; an id without a token (a blank or repeated line of the
        vocab.txt it was read from) is written as a blank line, so the ids stay where they were."""
        by_id = {i: token for token, i in self.backend.get_vocab(with_added_tokens=True).items()}
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(by_id.get(i, "") + "\n" for i in range(max(by_id) + 1))

    @classmethod
    def load(cls, path: str, lowercase: bool = True) -> Tokenizer:
        """Load a directory (tokenizer.json, vocab.txt or vocab.json + merges.txt inside), or one such file."""
        if os.path.isdir(path):
            for name in ("tokenizer.json", "vocab.txt", "vocab.json"):
                if os.path.exists(os.path.join(path, name)):
                    return cls.load(os.path.join(path, name), lowercase)
            raise UserError(f"no tokenizer.json or vocab.txt in {path}; train one with `ptmzoo tokenizer train`")
        if not os.path.exists(path):
            raise UserError(f"tokenizer not found: {path}")
        directory = os.path.dirname(path)
        config = _read_tokenizer_config(directory)
        if path.endswith(".txt"):
            return cls._from_vocab_txt(path, config, lowercase)
        if os.path.basename(path) == "vocab.json":
            return cls._from_bpe_files(path, os.path.join(directory, "merges.txt"), config)
        try:
            backend = Backend.from_file(path)
        except Exception as exc:  # noqa: BLE001  (tokenizers raises bare Exceptions; its message is multi-line)
            raise UserError(f"{path} is not a valid tokenizer.json: {str(exc).splitlines()[0]}")
        kind = config.get("ptmzoo_kind") or _infer_kind(backend)
        roles = {role: config.get(f"{role}_token") for role in ROLES}
        if not any(roles.values()):
            roles = _infer_roles(backend)
        roles = {r: (t["content"] if isinstance(t, dict) else t) for r, t in roles.items() if t}
        style = config.get("ptmzoo_style") or _infer_style(roles)
        return cls(backend, kind, roles, style)

    @classmethod
    def _from_vocab_txt(cls, path: str, config: dict[str, Any], lowercase: bool = True) -> Tokenizer:
        """BERT's vocab.txt, with the settings of transformers' BertTokenizer from tokenizer_config.json:
        do_lower_case (default ``lowercase``), strip_accents, tokenize_chinese_chars, added tokens."""
        with open_text(path, encoding="utf-8") as fh:
            tokens = [line.rstrip("\n") for line in fh]
        if not any(tokens):
            raise UserError(f"vocabulary file is empty: {path}")
        # the id of a token is its line number, blank lines included; a repeated token keeps its last line
        vocab = {tok: i for i, tok in enumerate(tokens)}
        roles = {role: config.get(f"{role}_token") or tok for role, tok in SPECIAL_STYLES["bert"].items()}
        roles = {role: tok["content"] if isinstance(tok, dict) else tok for role, tok in roles.items()}
        roles = {role: tok for role, tok in roles.items() if tok in vocab}
        if "unk" not in roles:
            raise UserError(f"{path} has no [UNK] token; it is not a BERT-style vocab.txt")
        backend, _, _ = _blank_backend("wordpiece", config.get("do_lower_case", lowercase), roles,
                                       strip_accents=config.get("strip_accents"),
                                       chinese_chars=config.get("tokenize_chinese_chars", True))
        backend.model = models.WordPiece(vocab, unk_token=roles["unk"], continuing_subword_prefix="##")
        backend.add_special_tokens(list(roles.values()))
        _add_config_tokens(backend, config, path)
        tokenizer = cls(backend, "wordpiece", roles, "bert")
        if "cls" in roles and "sep" in roles:
            backend.post_processor = _post_processor("bert", roles, backend)
        return tokenizer

    @classmethod
    def _from_bpe_files(cls, vocab_path: str, merges_path: str, config: dict[str, Any]) -> Tokenizer:
        """Byte-level BPE from the ``vocab.json`` + ``merges.txt`` pair, as transformers' GPT2Tokenizer
        (no special tokens added, a pair is the two texts joined) or RobertaTokenizer reads it."""
        if not os.path.exists(merges_path):
            raise UserError(f"{vocab_path} needs merges.txt beside it (byte-level BPE)")
        _refuse_word_end_bpe(merges_path, config)
        try:
            model = models.BPE.from_file(vocab_path, merges_path)
        except Exception as exc:  # noqa: BLE001  (tokenizers raises bare Exceptions)
            raise UserError(f"{vocab_path} / merges.txt are not a valid BPE vocabulary: {str(exc).splitlines()[0]}")
        backend = Backend(model)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space")))
        backend.decoder = decoders.ByteLevel()
        roles = {role: config.get(f"{role}_token") for role in ROLES}
        roles = {r: (t["content"] if isinstance(t, dict) else t) for r, t in roles.items() if t}
        roles = roles or _infer_roles(backend)
        backend.add_special_tokens(_unique(roles.values()))
        _add_config_tokens(backend, config, vocab_path)
        style = "gpt2" if str(config.get("tokenizer_class", "")).startswith("GPT2") else _infer_style(roles)
        # transformers' GPT2Tokenizer adds no special tokens, to a text or to a pair
        if style != "gpt2" and all(role in roles for role in _TEMPLATE_ROLES[style]):
            backend.post_processor = _post_processor(style, roles, backend)
        return cls(backend, "bpe", roles, style)


class UnsupportedTokenizer(UserError):
    """Tokenizer files of a kind ptmzoo cannot reproduce (a model can still load without them)."""


def _refuse_word_end_bpe(merges_path: str, config: dict[str, Any]) -> None:
    """XLM's (and GPT-1's) vocab.json + merges.txt are BPE over Moses-tokenized words with ``</w>``
    word ends, not byte-level BPE: read as GPT-2's they would give other ids, so they are refused."""
    with open_text(merges_path, encoding="utf-8") as fh:
        head = [line.split()[:2] for _, line in zip(range(200), fh) if not line.startswith("#version")]
    word_ends = sum(any(part.endswith("</w>") for part in merge) for merge in head)  # e.g. "e r</w>" in XLM's
    if config.get("tokenizer_class") in ("XLMTokenizer", "OpenAIGPTTokenizer") or word_ends > len(head) // 20:
        raise UnsupportedTokenizer(
            f"{os.path.dirname(merges_path) or '.'}: vocab.json + merges.txt with </w> word ends are XLM's/GPT-1's "
            "tokenizer (Moses pre-tokenization + BPE), which ptmzoo cannot reproduce; tokenize with transformers "
            "or train a ptmzoo tokenizer")


def _add_config_tokens(backend: Backend, config: dict[str, Any], where: str) -> None:
    """The tokens tokenizer_config.json adds to the vocabulary (``added_tokens_decoder``: id -> token
    and how it matches), at the ids it gives them."""
    from tokenizers import AddedToken

    entries = sorted((int(i), entry) for i, entry in (config.get("added_tokens_decoder") or {}).items())
    for token_id, entry in entries:
        content = entry["content"]
        token = AddedToken(content, single_word=entry.get("single_word", False), lstrip=entry.get("lstrip", False),
                           rstrip=entry.get("rstrip", False), normalized=entry.get("normalized", not entry.get("special")),
                           special=entry.get("special", False))
        (backend.add_special_tokens if entry.get("special") else backend.add_tokens)([token])
        if backend.token_to_id(content) != token_id:
            raise UserError(f"{where}: tokenizer_config.json gives {content!r} id {token_id}, but the vocabulary "
                            f"puts it at {backend.token_to_id(content)}")


def _read_tokenizer_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(path):
        return {}
    from ..io import read_json

    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})")


def _infer_kind(backend: Backend) -> str:
    model = type(backend.model).__name__
    return {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram", "WordLevel": "char"}.get(model, model.lower())


def _infer_roles(backend: Backend) -> dict[str, str]:
    vocab = backend.get_vocab(with_added_tokens=True)
    roles = {}
    for role, names in _KNOWN_ROLE_NAMES.items():
        for name in names:
            if name in vocab:
                roles[role] = name
                break
    return roles


def _infer_style(roles: dict[str, str]) -> str:
    if roles.get("cls") == "<cls>":
        return "xlnet"
    if roles.get("cls") == "[CLS]":
        return "bert"
    if roles.get("bos") == "<s>":
        return "roberta"
    if roles.get("eos") == "<|endoftext|>":
        return "gpt2"
    return "t5"


def train_tokenizer(
    texts: Iterable[str] | Iterator[str],
    kind: str,
    vocab_size: int,
    min_frequency: int = 2,
    style: str | None = None,
    lowercase: bool | None = None,
    extra_special_tokens: list[str] | None = None,
    limit_alphabet: int | None = None,
    length: int | None = None,
) -> Tokenizer:
    """Train a tokenizer of ``kind`` on an iterator of documents."""
    if kind not in KINDS:
        raise UserError(f"unknown tokenizer kind '{kind}' (known: {', '.join(KINDS)})")
    style = style or DEFAULT_STYLE[kind]
    if style not in SPECIAL_STYLES:
        raise UserError(f"unknown special-token style '{style}' (known: {', '.join(SPECIAL_STYLES)})")
    if lowercase is None:
        lowercase = kind == "wordpiece"
    roles = dict(SPECIAL_STYLES[style])
    specials = _unique(list(roles.values()) + list(extra_special_tokens or []))
    backend, trainer_cls, trainer_kwargs = _blank_backend(kind, lowercase, roles)
    kwargs: dict[str, Any] = {"vocab_size": vocab_size, "special_tokens": specials, "show_progress": False}
    if kind != "unigram":
        kwargs["min_frequency"] = min_frequency
    if limit_alphabet is not None and kind in ("wordpiece", "bpe"):
        kwargs["limit_alphabet"] = limit_alphabet
    kwargs.update({k: v for k, v in trainer_kwargs.items() if v is not None})
    trainer = trainer_cls(**kwargs)
    backend.train_from_iterator(texts, trainer=trainer, length=length)
    if backend.get_vocab_size() <= len(specials):
        raise UserError("the corpus produced no vocabulary; is it empty or all whitespace?")
    backend.post_processor = _post_processor(style, roles, backend)
    return Tokenizer(backend, kind, roles, style)
