"""Tokenizers loaded from Hugging Face files give transformers' input ids, token type ids and
attention masks on real text from ../shared/data: English (SST-2, with accented words such as
café, naïve, pokémon), Chinese (ChnSentiCorp), sentence pairs (AFQMC, News Commentary en-zh)
truncated longest-first, and words left out of the vocabulary on purpose ([UNK]).

* WordPiece (BERT): vocab.txt + tokenizer_config.json as BertTokenizerLegacy (the slow, Python
  tokenizer) writes it, and tokenizer.json as BertTokenizer (fast) writes it, in the settings
  real checkpoints use (uncased with accent stripping, uncased keeping accents, cased, no CJK
  splitting), each compared with both transformers tokenizers.
* byte-level BPE: RoBERTa and GPT-2 vocab.json + merges.txt (bare, or with tokenizer_config.json)
  and tokenizer.json, on English web text with unicode punctuation and Chinese.
* XLM-R (SentencePiece unigram in tokenizer.json), also through `ptmzoo.load` of a model directory.

The inputs go through ptmzoo's fine-tuning path (``ClassificationTask.encode_texts`` + ``collate``).
One difference is inherent: on pairs, the slow tokenizer breaks ties of its longest-first
truncation towards the first text, the fast one (and ptmzoo, which runs the same Rust code)
towards the text that was longer; ptmzoo matches the fast tokenizer, which AutoTokenizer gives.
"""

import json
import os
import shutil

import pytest
import torch
from tokenizers import Tokenizer as Backend
from tokenizers import models, normalizers, pre_tokenizers, trainers

import ptmzoo
from ptmzoo.data.tokenizers import Tokenizer
from ptmzoo.tasks.classification import ClassificationTask
from tests.conftest import shared_path
from tests.interop.hf_models import randomize, transformers

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LEFT_OUT = set("ï花呗ç")  # any vocabulary entry with one of these goes: the words holding them are [UNK]
ACCENTS = set("éèêëïîôöüñçåáà")


def _column(parts, index, limit, header, start=0):
    path = shared_path(*parts)
    rows = []
    with open(path, encoding="utf-8") as fh:
        if header:
            next(fh)
        for number, line in enumerate(fh):
            fields = line.rstrip("\n").split("\t")
            if number >= start and len(fields) > index and fields[index].strip():
                rows.append(fields[index].strip())
            if len(rows) >= limit:
                break
    return rows


@pytest.fixture(scope="module")
def data():
    sst = _column(("en", "sst2", "train.tsv"), 0, 60614, header=True)
    zh = _column(("zh", "chnsenticorp", "train.tsv"), 1, 2000, header=True)
    accented = [s for s in sst if set(s) & ACCENTS][:80]
    pairs_zh = list(zip(_column(("zh", "afqmc", "train.txt"), 0, 150, False),
                        _column(("zh", "afqmc", "train.txt"), 1, 150, False)))
    with open(shared_path("parallel", "news_commentary_en_zh_sampled.txt"), encoding="utf-8") as fh:
        parallel = [tuple(line.rstrip("\n").split("\t")) for line, _ in zip(fh, range(60))]
    with open(shared_path("en", "corpus", "c4_demo.jsonl"), encoding="utf-8") as fh:
        web = [json.loads(line)["text"] for line, _ in zip(fh, range(120))]
    return {
        "train": [s for s in sst[:4000] if not set(s) & ACCENTS] + zh[:1200],
        "singles": sst[4000:4150] + accented + zh[1200:1350] + [en for en, _ in parallel] + [z for _, z in parallel],
        "long": zh[1350:1400] + web[:30],  # longer than max_length: single-text truncation
        "pairs": {"afqmc": (pairs_zh, 24), "en-zh": (parallel, 48),
                  "sst": (list(zip(sst[4150:4250], sst[4250:4350])), 20)},
        "web": web,
        "parallel": parallel,
    }


# ---- WordPiece --------------------------------------------------------------------------------
def _wordpiece_vocab(texts, lowercase, directory):
    """vocab.txt trained on the data (accents kept, so that both accent settings have entries),
    with the entries holding LEFT_OUT characters removed."""
    backend = Backend(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=5000, special_tokens=BERT_SPECIALS, limit_alphabet=1500, show_progress=False))
    tokens = [t for t, _ in sorted(backend.get_vocab().items(), key=lambda item: item[1]) if not set(t) & LEFT_OUT]
    os.makedirs(directory)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as fh:
        fh.writelines(t + "\n" for t in tokens)
    return directory


VARIANTS = {  # name: (vocabulary, BertTokenizer settings) -- those of real checkpoints
    "uncased": ("uncased", {}),  # bert-base-uncased: lower-cased, accents stripped
    "uncased-keep-accents": ("uncased", {"strip_accents": False}),
    "cased": ("cased", {"do_lower_case": False}),  # bert-base-cased, bert-base-chinese
    "cased-strip-accents": ("cased", {"do_lower_case": False, "strip_accents": True}),
    "no-chinese-split": ("uncased", {"tokenize_chinese_chars": False}),
}


@pytest.fixture(scope="module")
def vocabs(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    return {name: _wordpiece_vocab(data["train"], name == "uncased", str(root / name)) for name in ("uncased", "cased")}


def _ptmzoo_batches(tokenizer, pairs, max_length, size=16):
    """Padded batches through ptmzoo's fine-tuning path (a classification task on sentence pairs)."""
    task = ClassificationTask(ClassificationTask.Options(max_length=max_length), tokenizer, ["0", "1"], 512)
    for start in range(0, len(pairs), size):
        chunk = pairs[start:start + size]
        yield chunk, task.collate(task.encode_texts([a for a, _ in chunk], [b for _, b in chunk]))


def _hf_batch(reference, chunk, max_length):
    enc = reference([a for a, _ in chunk], [b for _, b in chunk], truncation="longest_first", max_length=max_length,
                    padding=True, return_token_type_ids=True, return_attention_mask=True, return_tensors="pt")
    return {key: enc[key] for key in ("input_ids", "token_type_ids", "attention_mask")}


def _is_tie_break(slow, fast, sep_id):
    """Slow and fast kept the same number of tokens, the slow one one more of the first text."""
    def parts(ids):
        cut = ids.index(sep_id)
        return ids[1:cut], ids[cut + 1:-1]

    (a_slow, b_slow), (a_fast, b_fast) = parts(slow), parts(fast)
    return (len(a_slow) == len(a_fast) + 1 and len(b_slow) == len(b_fast) - 1
            and a_slow[:-1] == a_fast and b_slow == b_fast[:-1])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_wordpiece_files_give_transformers_ids(variant, vocabs, data, tmp_path):
    vocab, settings = VARIANTS[variant]
    slow = transformers.BertTokenizerLegacy(os.path.join(vocabs[vocab], "vocab.txt"), **settings)
    fast = transformers.BertTokenizer.from_pretrained(vocabs[vocab], **settings)
    slow.save_pretrained(str(tmp_path / "slow"))  # vocab.txt + tokenizer_config.json
    fast.save_pretrained(str(tmp_path / "fast"))  # tokenizer.json + tokenizer_config.json
    assert "tokenizer.json" not in os.listdir(tmp_path / "slow") and "tokenizer.json" in os.listdir(tmp_path / "fast")
    expected = {name: [ref(t)["input_ids"] for t in data["singles"]] for name, ref in (("slow", slow), ("fast", fast))}
    assert expected["slow"] == expected["fast"]
    long_expected = [fast(t, truncation=True, max_length=64)["input_ids"] for t in data["long"]]
    assert long_expected == [slow(t, truncation=True, max_length=64)["input_ids"] for t in data["long"]]
    # the data exercise what they should: unknown words, accents, truncation
    assert sum(slow.unk_token_id in ids for ids in expected["slow"]) >= 20
    assert sum(bool(set(t) & ACCENTS) for t in data["singles"]) >= 50
    for source in ("slow", "fast"):
        ours = Tokenizer.load(str(tmp_path / source))
        assert [ours.encode(t) for t in data["singles"]] == expected["slow"], source
        assert [ours.encode(t, max_length=64) for t in data["long"]] == long_expected, source
        tie_breaks = truncated = 0
        for name, (pairs, max_length) in data["pairs"].items():
            for chunk, batch in _ptmzoo_batches(ours, pairs, max_length):
                want = _hf_batch(fast, chunk, max_length)
                for key in want:
                    assert torch.equal(batch[key], want[key]), (source, name, key)
                truncated += int((want["attention_mask"].sum(1) == max_length).sum())
                old = _hf_batch(slow, chunk, max_length)
                for row in range(len(chunk)):
                    ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
                    old_ids = old["input_ids"][row][old["attention_mask"][row].bool()].tolist()
                    if ids != old_ids:
                        assert _is_tie_break(old_ids, ids, fast.sep_token_id), (source, name, chunk[row])
                        tie_breaks += 1
        assert truncated >= 50 and tie_breaks < truncated


def test_vocab_txt_keeps_line_numbers(vocabs, data, tmp_path):
    """Blank and repeated lines of vocab.txt keep the ids of the lines after them: transformers
    numbers the lines (a repeated token takes its last line); ptmzoo writes them back in place."""
    with open(os.path.join(vocabs["uncased"], "vocab.txt"), encoding="utf-8") as fh:
        tokens = [line.rstrip("\n") for line in fh]
    tokens[300], tokens[301] = "", tokens[200]
    os.makedirs(tmp_path / "gaps")
    (tmp_path / "gaps" / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    slow = transformers.BertTokenizerLegacy(str(tmp_path / "gaps" / "vocab.txt"))
    fast = transformers.BertTokenizer.from_pretrained(str(tmp_path / "gaps"))
    texts = data["singles"][:200]
    expected = [slow(t)["input_ids"] for t in texts]
    assert expected == [fast(t)["input_ids"] for t in texts]
    assert any(i > 301 for ids in expected for i in ids)  # ids after the gap are used
    ours = Tokenizer.load(str(tmp_path / "gaps"))
    assert [ours.encode(t) for t in texts] == expected
    ours.save(str(tmp_path / "again"))
    again = transformers.BertTokenizerLegacy(str(tmp_path / "again" / "vocab.txt"))
    assert [again(t)["input_ids"] for t in texts] == expected


def test_added_tokens_of_tokenizer_config(vocabs, data, tmp_path):
    """Tokens tokenizer_config.json adds (added_tokens_decoder) keep their ids, and a special one
    is matched whole inside real text, before lower-casing, as transformers matches it."""
    slow = transformers.BertTokenizerLegacy(os.path.join(vocabs["cased"], "vocab.txt"), do_lower_case=False,
                                            extra_special_tokens=["<E1>"])
    slow.add_tokens(["naïveté"])  # an ordinary added token: normalized like the text
    slow.save_pretrained(str(tmp_path / "saved"))
    ours = Tokenizer.load(str(tmp_path / "saved"))
    texts = [f"{a} <E1> {b}" for a, b in zip(data["singles"][:60], data["singles"][60:120])]
    texts += [t.replace("naive", "naïveté") for t in data["singles"] if "naive" in t] + ["une naïveté , <E1>"]
    assert [ours.encode(t) for t in texts] == [slow(t)["input_ids"] for t in texts]
    assert ours.encode(texts[0]).count(slow.convert_tokens_to_ids("<E1>")) == 1
    assert slow.convert_tokens_to_ids("naïveté") in ours.encode(texts[-1])


def test_hf_bert_dir_with_vocab_txt_only(vocabs, data, tmp_path):
    """A Google-style checkpoint: config.json, weights and a bare vocab.txt (transformers' defaults:
    lower-case, strip accents); `ptmzoo.load` tokenizes as transformers and the logits agree."""
    path = str(tmp_path / "bert")
    shutil.copytree(vocabs["uncased"], path)
    slow = transformers.BertTokenizerLegacy(os.path.join(path, "vocab.txt"))
    config = transformers.BertConfig(vocab_size=len(slow), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=64)
    hf = randomize(transformers.BertForMaskedLM(config))
    hf.save_pretrained(path)
    loaded = ptmzoo.load(path)
    pairs = data["pairs"]["en-zh"][0][:16]
    (chunk, batch), = list(_ptmzoo_batches(loaded.tokenizer, pairs, 64))
    want = _hf_batch(transformers.BertTokenizer.from_pretrained(path), chunk, 64)
    assert all(torch.equal(batch[key], want[key]) for key in want)
    with torch.no_grad():
        ref = hf(**want).logits
        out = loaded.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
    real = want["attention_mask"].bool()
    assert (ref - out).abs()[real].max() <= 1e-4


# ---- byte-level BPE ----------------------------------------------------------------------------
def _bpe_files(texts, specials, directory):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=3000, min_frequency=2, show_progress=False, special_tokens=specials)
    os.makedirs(directory)
    bpe.save_model(directory)
    return directory


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_byte_level_bpe_files_give_transformers_ids(family, data, tmp_path):
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if family == "roberta" else ["<|endoftext|>"]
    bare = _bpe_files(data["web"][30:], specials, str(tmp_path / "bare"))  # vocab.json + merges.txt
    reference = getattr(transformers, "RobertaTokenizer" if family == "roberta" else "GPT2Tokenizer")
    fast = reference.from_pretrained(bare)
    fast.save_pretrained(str(tmp_path / "saved"))  # tokenizer.json + tokenizer_config.json
    with_config = str(tmp_path / "with-config")  # vocab.json + merges.txt + tokenizer_config.json
    shutil.copytree(bare, with_config)
    shutil.copy(tmp_path / "saved" / "tokenizer_config.json", with_config)
    texts = data["web"][:30] + data["singles"][150:230] + [en for en, _ in data["parallel"]] + data["singles"][-40:]
    assert any(ord(c) > 0x2000 for t in texts for c in t)  # unicode punctuation, CJK
    expected = [fast(t)["input_ids"] for t in texts]
    pairs = [(data["web"][i], en) for i, (en, _) in enumerate(data["parallel"][:48])]
    for source in (bare, with_config, str(tmp_path / "saved")):
        ours = Tokenizer.load(source)
        assert [ours.encode(t) for t in texts] == expected, source
        assert [ours.decode(ours.encode(t)) for t in texts[:40]] == [fast.decode(ids, skip_special_tokens=True)
                                                                     for ids in expected[:40]]
        assert [ours.encode(t, max_length=128) for t in data["web"][:30]] == \
            [fast(t, truncation=True, max_length=128)["input_ids"] for t in data["web"][:30]]
        if family == "gpt2":  # GPT-2 adds no special tokens and has no padding token: ids of joined pairs
            ids, types = ours.encode_batch([a for a, _ in pairs], [b for _, b in pairs], max_length=64,
                                           with_type_ids=True)
            want = fast([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=64,
                        return_token_type_ids=True)
            assert ids == want["input_ids"] and types == want["token_type_ids"], source
            continue
        for chunk, batch in _ptmzoo_batches(ours, pairs, 64):
            want = _hf_batch(fast, chunk, 64)
            for key in want:
                assert torch.equal(batch[key], want[key]), (source, key)


# ---- XLM-R: SentencePiece unigram in tokenizer.json ------------------------------------------------
def test_xlm_roberta_tokenizer_and_model_dir(data, tmp_path):
    backend = Backend(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.train_from_iterator(data["train"], trainers.UnigramTrainer(
        vocab_size=3000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False))
    pieces = [(piece, score) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    assert [p for p, _ in pieces[:4]] == ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's order; <mask> comes last
    fast = transformers.XLMRobertaTokenizer(vocab=pieces + [("<mask>", 0.0)])
    path = str(tmp_path / "xlmr")
    fast.save_pretrained(path)
    config = transformers.XLMRobertaConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=48, max_position_embeddings=80)
    hf = randomize(transformers.XLMRobertaForMaskedLM(config))
    hf.save_pretrained(path)
    loaded = ptmzoo.load(path)
    assert loaded.family == "roberta"
    texts = data["singles"]
    assert [loaded.tokenizer.encode(t) for t in texts] == [fast(t)["input_ids"] for t in texts]
    assert sum(fast.unk_token_id in fast(t)["input_ids"] for t in texts) >= 5
    for name, (pairs, max_length) in data["pairs"].items():
        for chunk, batch in _ptmzoo_batches(loaded.tokenizer, pairs, max_length):
            want = _hf_batch(fast, chunk, max_length)
            assert all(torch.equal(batch[key], want[key]) for key in want), name
    with torch.no_grad():
        ref = hf(input_ids=want["input_ids"], attention_mask=want["attention_mask"]).logits
        out = loaded.model(batch["input_ids"], batch["attention_mask"]).logits
    assert (ref - out).abs()[want["attention_mask"].bool()].max() <= 1e-4
