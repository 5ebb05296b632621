"""The xlnet tokenizer style: XLNet's special-token ids (<unk> 0 ... <mask> 6, so a model's
pad/bos/eos ids match the released config), its template A <sep> B <sep> <cls>, kept through
save and load; ``frame`` reads every style's template, which frames encoder pre-training blocks
as before for BERT and RoBERTa."""

from ptmzoo.data.tokenizers import Tokenizer, train_tokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog"] * 20


def test_xlnet_style_ids_template_and_round_trip(tmp_path):
    tok = train_tokenizer(iter(TEXTS), "wordpiece", 200, style="xlnet")
    ids = {role: tok.role_id(role) for role in ("unk", "bos", "eos", "cls", "sep", "pad", "mask")}
    assert ids == {"unk": 0, "bos": 1, "eos": 2, "cls": 3, "sep": 4, "pad": 5, "mask": 6}
    encoding = tok.backend.encode("quick fox", "lazy dog")
    assert encoding.ids[-1] == 3 and encoding.type_ids[-1] == 2 and encoding.ids.count(4) == 2
    tok.save(str(tmp_path))
    again = Tokenizer.load(str(tmp_path))
    assert again.style == "xlnet" and again.encode("quick fox") == tok.encode("quick fox")
    assert again.frame() == ([], [4, 3])


def test_frame_of_the_other_styles_is_cls_and_sep():
    bert = train_tokenizer(iter(TEXTS), "wordpiece", 200)
    roberta = train_tokenizer(iter(TEXTS), "bpe", 300, style="roberta")
    assert bert.frame() == ([bert.cls_id], [bert.sep_id])
    assert roberta.frame() == ([roberta.cls_id], [roberta.sep_id])
    assert train_tokenizer(iter(TEXTS), "bpe", 300).frame() == ([], [])  # GPT-2 adds nothing
