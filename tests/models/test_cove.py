"""CoVe: the attentional LSTM translation model, its generation with the decoder state as cache, and
its features ([embedding; biLSTM encoder]) for downstream tasks."""

import gzip
import os

import torch

from ptmzoo.catalog import build_model
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.generation.seq2seq import generate_seq2seq
from ptmzoo.init_model import init_checkpoint
from ptmzoo.loading import load
from ptmzoo.models.seq2seq import Seq2SeqLMHead
from ptmzoo.nn.attention import padding_mask
from tests.conftest import shared_path

TINY = {"vocab_size": 60, "embedding_size": 6, "lstm_size": 5, "num_layers": 2, "dropout": 0.0}


def cove(**changes):
    torch.manual_seed(0)
    model = build_model("cove", {**TINY, **changes})
    model.add_head("seq2seq_lm", Seq2SeqLMHead)
    return model.eval()


def test_features_are_the_embeddings_and_the_encoder_states_and_ignore_padding():
    model = cove()
    ids = torch.randint(1, 60, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    features = model.backbone(ids, mask).last_hidden_state
    assert features.shape == (2, 7, 16) and model.config.hidden_size == 6 + 2 * 5
    torch.testing.assert_close(features[..., :6] * mask[..., None], model.backbone.source_embeddings(ids) * mask[..., None])
    torch.testing.assert_close(features[..., 6:], model.backbone.encode(ids, mask))
    alone = model.backbone(ids[1:, :5]).last_hidden_state
    torch.testing.assert_close(features[1, :5], alone[0], atol=1e-6, rtol=1e-5)


def test_decoding_with_the_lstm_state_equals_teacher_forcing():
    model = cove()
    backbone = model.backbone
    source = torch.randint(1, 60, (2, 6))
    target = torch.randint(1, 60, (2, 5))
    memory = backbone.encode(source)
    forced = backbone.decode(target, memory, padding_mask(None))
    state = backbone.initial_state(2)
    stepped = torch.cat([backbone.decode(target[:, t : t + 1], memory, padding_mask(None), cache=state)
                         for t in range(5)], 1)
    torch.testing.assert_close(stepped, forced)
    generated = generate_seq2seq(model, source.tolist(), max_new_tokens=4).token_ids
    for row, tokens in enumerate(generated):
        decoder = [backbone.decoder_start_id]
        for token in tokens:
            out = model(source[row : row + 1], decoder_input_ids=torch.tensor([decoder]))
            assert int(out.logits[0, -1].argmax()) == token
            decoder.append(token)
    beams = generate_seq2seq(model, source.tolist(), max_new_tokens=4, num_beams=3)
    assert len(beams.token_ids) == 2


def test_frozen_embeddings_get_no_gradient():
    model = cove(freeze_embeddings=True).train()
    source, target = torch.randint(1, 60, (2, 6)), torch.randint(1, 60, (2, 4))
    out = model(source, decoder_input_ids=target)
    out.logits.sum().backward()
    assert model.backbone.source_embeddings.weight.grad is None
    assert model.backbone.target_embeddings.weight.grad is not None


def test_cove_trains_on_translation_then_gives_features_to_a_classifier(tmp_path, bpe_tokenizer):
    def lines(name, limit):
        with gzip.open(shared_path("en", "multi30k", name), "rt", encoding="utf-8") as fh:
            return [next(fh).strip().replace("\t", " ") for _ in range(limit)]

    pairs = tmp_path / "mt.tsv"
    pairs.write_text("source\ttarget\n" + "".join(f"{a}\t{b}\n" for a, b in zip(lines("train.en.gz", 64),
                                                                              lines("train.de.gz", 64))))
    bpe_tokenizer.save(str(tmp_path / "tok"))
    init_checkpoint("cove", str(tmp_path / "tok"), str(tmp_path / "init"), ["embedding_size=16", "lstm_size=8"])
    common = {"epochs": 1, "train": {"batch_size": 16, "lr": 3e-3, "log_every": 1000}}
    report = run_finetune(FinetuneConfig.from_dict({
        "model": str(tmp_path / "init"), "task": "translation", "train_file": str(pairs), "dev_file": str(pairs),
        "options": {"num_beams": 2, "max_length": 24}, **common}), str(tmp_path / "mt"), progress=False)
    assert "bleu" in report["dev"]
    translated = load(os.path.join(tmp_path, "mt", "best"))
    assert translated.family == "cove" and "seq2seq_lm" in translated.model.heads
    sst = shared_path("en", "sst2", "train.tsv")
    with open(sst, encoding="utf-8") as fh:
        (tmp_path / "sst.tsv").write_text("".join(fh.readlines()[:49]))
    report = run_finetune(FinetuneConfig.from_dict({
        "model": str(tmp_path / "mt" / "best"), "train_file": str(tmp_path / "sst.tsv"),
        "dev_file": str(tmp_path / "sst.tsv"), "options": {"text_column": "sentence", "pooling": "max"},
        "strategy": {"method": "frozen"}, **common}), str(tmp_path / "clf"), progress=False)
    assert report["trainable_parameters"] == 2 * (16 + 2 * 8) + 2  # the classifier on [embedding; CoVe] only
