"""The original Transformer: sinusoids, label smoothing, shared vocabulary, cached decoding, and a
tiny translation run that overfits a few sentences."""

import math

import torch

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.generation.seq2seq import Seq2SeqLM
from ptmzoo.models.base import BackboneOutput
from ptmzoo.models.transformer import TransformerSeq2SeqConfig, TransformerSeq2SeqModel
from ptmzoo.nn.attention import padding_mask
from ptmzoo.nn.positions import sinusoidal_positions


def test_sinusoidal_positions_follow_the_formula():
    table = sinusoidal_positions(7, 6, start=2)
    for row, pos in enumerate(range(2, 9)):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert math.isclose(table[row, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[row, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def tiny(share=True, vocab=40):
    torch.manual_seed(0)
    config = TransformerSeq2SeqConfig(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4,
                                      intermediate_size=64, hidden_dropout=0.0, max_position_embeddings=64,
                                      share_embeddings=share, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    model = build_model("transformer", backbone=TransformerSeq2SeqModel(config))
    model.add_head("seq2seq_lm", HEADS["seq2seq_lm"], label_smoothing=0.1)
    return model


def test_label_smoothed_loss_matches_a_direct_computation():
    model = tiny()
    source = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 1]])
    labels = torch.tensor([[10, 11, 2], [12, 2, -100]])
    batch = {"decoder_input_ids": torch.tensor([[0, 10, 11], [0, 12, 1]]), "seq2seq_labels": labels}
    out = model(source, (source != 1).long(), targets=batch)
    logits = model(source, (source != 1).long(), decoder_input_ids=batch["decoder_input_ids"]).logits
    log_p = logits.log_softmax(-1)
    expected = 0.0
    for b, t in zip(*torch.nonzero(labels != -100, as_tuple=True)):
        expected += 0.9 * -log_p[b, t, labels[b, t]] + 0.1 * -log_p[b, t].mean()
    torch.testing.assert_close(out.loss_sums["seq2seq_lm"], expected, atol=1e-4, rtol=1e-5)


def test_shared_vocabulary_ties_source_target_and_output():
    shared, separate = tiny(share=True), tiny(share=False)
    assert shared.backbone.source_embeddings is shared.backbone.target_embeddings
    assert shared.heads["seq2seq_lm"].decoder.weight is shared.backbone.target_embeddings.weight
    assert separate.backbone.source_embeddings is not separate.backbone.target_embeddings
    assert sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters()) == 40 * 32


def test_cached_decoding_matches_uncached_logits():
    model = tiny().eval()
    source = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 1]])
    mask = (source != 1).long()
    steps = torch.tensor([[13, 14, 15], [16, 17, 18]])
    lm = Seq2SeqLM(model, 2, 8)
    with torch.no_grad():
        cached = [lm.prefill(source, mask)] + [lm.step(steps[:, i]) for i in range(3)]
        memory = model.backbone.encode(source, mask)
        decoder_ids = torch.cat([torch.zeros(2, 1, dtype=torch.long), steps], dim=1)
        states = model.backbone.decode(decoder_ids, memory, padding_mask(mask))
        full = model.heads["seq2seq_lm"].logits(BackboneOutput(states), {})
    for i, logits in enumerate(cached):
        torch.testing.assert_close(logits, full[:, i], atol=1e-5, rtol=1e-5)


SENTENCES = [("a dog runs in the park .", "ein hund läuft im park ."),
             ("two men play football .", "zwei männer spielen fußball ."),
             ("a woman reads a book .", "eine frau liest ein buch ."),
             ("the child eats an apple .", "das kind isst einen apfel .")]


def tiny_translation_run(tmp_path, preset, kind, style, lr):
    """Train ``preset`` from scratch on four sentence pairs; return the report (test = train)."""
    from ptmzoo.data.tokenizers import train_tokenizer
    from ptmzoo.finetune.run import FinetuneConfig, run_finetune
    from ptmzoo.init_model import init_checkpoint

    tokenizer = train_tokenizer(iter([s for pair in SENTENCES for s in pair]), kind, 300, min_frequency=1,
                                style=style)
    tokenizer.save(str(tmp_path / "tok"))
    init_checkpoint(preset, str(tmp_path / "tok"), str(tmp_path / "init"),
                    ["hidden_dropout=0.0", "num_layers=1", "hidden_size=64", "intermediate_size=128"])
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{en}\t{de}\n" for en, de in SENTENCES * 8))
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(f"{en}\t{de}\n" for en, de in SENTENCES))
    cfg = FinetuneConfig.from_dict({
        "model": str(tmp_path / "init"), "train_file": str(train), "dev_file": str(dev), "test_file": str(dev),
        "task": "translation", "columns": ["en", "de"], "epochs": 40,
        "options": {"source_column": "en", "target_column": "de", "num_beams": 2, "max_length": 32,
                    "label_smoothing": 0.1},
        "train": {"batch_size": 8, "lr": lr, "warmup_ratio": 0.1, "log_every": 100, "device": "cpu"}})
    return run_finetune(cfg, str(tmp_path / "run"), progress=False)


def test_tiny_translation_run_overfits(tmp_path):
    report = tiny_translation_run(tmp_path, "transformer-tiny", "bpe", "roberta", 3e-3)
    assert report["test"]["bleu"] > 90, report
    assert (tmp_path / "run" / "predictions.test.tsv").read_text().count("\n") == len(SENTENCES) + 1


def test_unilm_fine_tunes_for_generation_with_the_seq2seq_mask(tmp_path):
    report = tiny_translation_run(tmp_path, "unilm-tiny", "wordpiece", "bert", 3e-3)
    assert report["test"]["bleu"] > 60, report
