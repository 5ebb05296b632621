import os

import pytest

from ptmzoo.data.tokenizers import Tokenizer, train_tokenizer
from ptmzoo.errors import UserError


def test_wordpiece_round_trip_and_bert_template(wordpiece_tokenizer, english_docs, tmp_path):
    tok = wordpiece_tokenizer
    text = english_docs[0][:300]
    ids = tok.encode(text)
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    # lower-cased WordPiece decodes to the normalised text (spacing around punctuation aside)
    assert tok.decode(ids).replace(" ", "") == text.lower().replace(" ", "")
    pair_ids, type_ids = tok.encode_batch(["a first text"], ["and a second"], with_type_ids=True)
    pair_ids, type_ids = pair_ids[0], type_ids[0]
    assert pair_ids.count(tok.sep_id) == 2 and pair_ids[0] == tok.cls_id
    second_start = pair_ids.index(tok.sep_id) + 1
    assert set(type_ids[:second_start]) == {0} and set(type_ids[second_start:]) == {1}
    # ids of the special roles follow BERT's order
    assert [tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id] == [0, 1, 2, 3, 4]


def test_save_load_round_trip_including_vocab_txt(wordpiece_tokenizer, english_docs, tmp_path):
    wordpiece_tokenizer.save(str(tmp_path))
    assert {"tokenizer.json", "tokenizer_config.json", "vocab.txt"} <= set(os.listdir(tmp_path))
    texts = [d[:400] for d in english_docs[:5]]
    expected = wordpiece_tokenizer.encode_batch(texts)
    assert Tokenizer.load(str(tmp_path)).encode_batch(texts) == expected
    from_vocab = Tokenizer.load(str(tmp_path / "vocab.txt"))
    assert from_vocab.encode_batch(texts) == expected
    assert from_vocab.vocab_size == wordpiece_tokenizer.vocab_size


def test_byte_level_bpe_is_lossless(bpe_tokenizer, english_docs):
    text = english_docs[3][:500] + "  odd   spacing\tand émojis 🙂 and 中文"
    ids = bpe_tokenizer.encode(text)
    assert bpe_tokenizer.decode(ids) == text  # every byte is in the alphabet: nothing lost
    assert bpe_tokenizer.eos_id is not None and bpe_tokenizer.encode("hi") == bpe_tokenizer.encode("hi", add_special_tokens=False)


def test_char_tokenizer_on_chinese(char_tokenizer, chinese_docs):
    text = chinese_docs[5][:100].replace(" ", "")
    ids = char_tokenizer.encode(text, add_special_tokens=False)
    tokens = char_tokenizer.tokenize(text)
    assert all(len(t) == 1 for t in tokens)  # one token per character
    assert len(ids) == len(text)
    known = "".join(c for c in text if char_tokenizer.backend.token_to_id(c) is not None)
    assert char_tokenizer.decode(ids) == known


def test_unigram_round_trip(english_docs):
    tok = train_tokenizer(iter(english_docs), "unigram", 2000)
    text = "The history of philosophy is long."
    assert tok.decode(tok.encode(text)).strip() == text
    assert tok.eos_id is not None and tok.encode(text)[-1] == tok.eos_id  # T5-style: text </s>


@pytest.mark.parametrize("style", ["gpt2", "roberta"])
def test_bpe_special_styles(english_docs, style):
    tok = train_tokenizer(iter(english_docs[:10]), "bpe", 800, style=style)
    ids = tok.encode("hello", "world")
    if style == "roberta":
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.mask_id is not None
    else:
        assert tok.eos_id in ids and tok.mask_id is None


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer.json or vocab.txt"):
        Tokenizer.load(str(tmp_path))
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a valid tokenizer.json"):
        Tokenizer.load(str(bad))


def test_empty_corpus_is_an_error():
    with pytest.raises(UserError, match="no vocabulary"):
        train_tokenizer(iter(["   ", ""]), "wordpiece", 100)
