"""T5 and BART backbones: parameter counts of the presets, cached decoding equal to a full pass,
checkpoint round trip, generation."""

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_model, count_parameters
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.generation.seq2seq import generate_seq2seq
from ptmzoo.models import BartConfig, BartModel, T5Config, T5Model
from ptmzoo.models.seq2seq import Seq2SeqModel
from ptmzoo.presets import PRESETS
from tests.generation.generation_helpers import seq2seq_cached_logits

# Exact counts of transformers' T5ForConditionalGeneration / BartForConditionalGeneration for the
# released configs, and the papers' rounded sizes (T5 Table 14 says "770M" for 738M).
KNOWN = {"t5-small": (60_506_624, 60e6), "t5-base": (222_903_552, 220e6), "t5-large": (737_668_096, 770e6),
         "t5-3b": (2_851_598_336, 2.8e9), "t5-11b": (11_307_321_344, 11e9),
         "bart-base": (139_420_416, 140e6), "bart-large": (406_291_456, 400e6)}


@pytest.mark.parametrize("name", list(KNOWN))
def test_preset_parameter_counts(name):
    exact, nominal = KNOWN[name]
    count = count_parameters(PRESETS[name])  # built on the meta device
    assert count == exact
    assert abs(count - nominal) / nominal < 0.05


def tiny(family, **overrides):
    torch.manual_seed(0)
    if family == "t5":
        config = T5Config(vocab_size=61, hidden_size=32, num_layers=2, num_decoder_layers=3, num_heads=3,
                          head_dim=8, intermediate_size=40, relative_attention_num_buckets=8,
                          relative_attention_max_distance=12, **overrides)
        backbone = T5Model(config)
    else:
        config = BartConfig(vocab_size=61, hidden_size=32, num_layers=2, num_decoder_layers=3, num_heads=4,
                            intermediate_size=40, max_position_embeddings=40, **overrides)
        backbone = BartModel(config)
    model = build_model(family, backbone=backbone)
    model.add_head("lm", HEADS["seq2seq_lm"])
    return model.eval()


VARIANTS = [("t5", {}), ("t5", {"gated_ffn": True, "hidden_act": "gelu_tanh", "tie_word_embeddings": False}),
            ("bart", {}), ("bart", {"scale_embedding": True})]


@pytest.mark.parametrize("family, overrides", VARIANTS)
def test_cached_decoding_equals_full_pass(family, overrides):
    model = tiny(family, **overrides)
    assert isinstance(model, Seq2SeqModel)
    gen = torch.Generator().manual_seed(1)
    source = torch.randint(3, 61, (3, 9), generator=gen)
    mask = torch.ones_like(source)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    target = torch.randint(3, 61, (3, 20), generator=gen)  # longer than T5's max_distance: far buckets too
    with torch.no_grad():
        full = model(source, mask, decoder_input_ids=target).logits
    for static in (False, True):
        # a first pass of several tokens, then one at a time
        cached, cache = seq2seq_cached_logits(model, source, mask, target, first=5, static=static)
        assert len(cache.cross_kv) == model.backbone.num_decoder_layers  # computed once per layer
        torch.testing.assert_close(cached, full[:, 4:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_checkpoint_round_trip_and_generation(family, tmp_path):
    model = tiny(family)
    save_pretrained(str(tmp_path / "m"), model, None, {"preset": f"{family}-tiny"})
    loaded = ptmzoo.load(str(tmp_path / "m")).model
    assert isinstance(loaded, Seq2SeqModel)
    source = torch.randint(3, 61, (2, 7))
    target = torch.randint(3, 61, (2, 5))
    with torch.no_grad():
        assert torch.equal(model(source, decoder_input_ids=target).logits, loaded(source, decoder_input_ids=target).logits)
    greedy = generate_seq2seq(loaded, source.tolist(), max_new_tokens=6, ignore_eos=True)
    beams = ptmzoo.generate(loaded, source.tolist(), max_new_tokens=6, num_beams=3, ignore_eos=True)
    assert [len(t) for t in greedy.token_ids] == [6, 6] and [len(t) for t in beams.token_ids] == [6, 6]
    # beam search with one beam is greedy search
    assert ptmzoo.generate(loaded, source.tolist(), max_new_tokens=6, num_beams=1, ignore_eos=True).token_ids == greedy.token_ids


def test_training_loss_matches_cross_entropy():
    model = tiny("t5").train()
    source = torch.randint(3, 61, (2, 7))
    labels = torch.randint(3, 61, (2, 5))
    labels[1, 3:] = -100
    decoder_input = torch.cat([torch.zeros(2, 1, dtype=torch.long), labels[:, :-1].clamp(min=0)], dim=1)
    batch = {"input_ids": source, "decoder_input_ids": decoder_input, "seq2seq_labels": labels}
    torch.manual_seed(0)
    out = model(source, targets=batch)
    torch.manual_seed(0)
    logits = model(source, decoder_input_ids=decoder_input).logits
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    torch.testing.assert_close(out.loss_sums["lm"], expected, atol=1e-4, rtol=1e-5)
    assert model.count_targets(batch)["lm"] == 8
