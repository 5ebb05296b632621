"""8-bit quantization: round-trip error bounds, the three forward modes against float and against
torch.ao's dynamic quantization, fake quantization (QAT), and quantized checkpoints through
ptmzoo.load."""

import os

import pytest
import torch
from torch import nn

import ptmzoo
from ptmzoo.catalog import build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.compress.quantize import (
    FakeQuantLinear,
    Int8Linear,
    dequantize,
    fake_quantize,
    prepare_qat,
    quantizable,
    quantize_model,
    quantize_weight,
)
from ptmzoo.errors import UserError
from ptmzoo.objectives.mlm import MLMHead

torch.manual_seed(0)


def test_weight_round_trip_within_half_a_step():
    w = torch.randn(64, 48) * torch.linspace(0.01, 3, 64)[:, None]  # rows of very different ranges
    for per_channel in (True, False):
        q, scale = quantize_weight(w, per_channel)
        assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
        error = (dequantize(q, scale) - w).abs()
        assert bool((error <= scale[:, None] / 2 + 1e-7).all())
    q, scale = quantize_weight(w)
    assert int(q.abs().amax(1).min()) == 127  # every row uses the whole range
    per_row = (dequantize(q, scale) - w).abs().max()
    per_tensor = (dequantize(*quantize_weight(w, False)) - w).abs().max()
    assert per_row <= per_tensor


@pytest.mark.parametrize("mode", ["dynamic", "weight", "static"])
def test_int8_linear_is_close_to_float(mode):
    linear = nn.Linear(64, 32)
    x = torch.randn(2, 7, 64)
    scale = x.abs().max() / 127
    module = Int8Linear.from_linear(linear, mode, input_scale=scale if mode == "static" else None)
    assert module.weight.dtype == torch.int8 and module(x).shape == (2, 7, 32)
    reference = linear(x)
    relative = float((module(x) - reference).norm() / reference.norm())
    assert relative < 0.02
    # the error is that of the int8 weights (and, dynamic/static, activations): weights alone
    if mode == "weight":
        exact = nn.functional.linear(x, module.dequantized(), linear.bias)
        torch.testing.assert_close(module(x), exact, atol=0.05, rtol=0.02)  # bfloat16 activations


def test_static_mode_computes_what_fake_quantization_trained():
    torch.manual_seed(1)
    fake = FakeQuantLinear.from_linear(nn.Linear(32, 16))
    fake.train()
    for _ in range(3):
        fake(torch.randn(8, 32))
    fake.eval()
    x = torch.randn(5, 32)
    int8 = Int8Linear.from_linear(fake, "static", per_channel=False, input_scale=fake.input_scale())
    torch.testing.assert_close(int8(x), fake(x), atol=1e-5, rtol=1e-5)


def test_dynamic_int8_matches_torch_ao():
    torch.manual_seed(2)
    linear = nn.Linear(128, 64)
    x = torch.randn(16, 128)
    ours = Int8Linear.from_linear(linear, "dynamic")(x)
    reference = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)(x)
    exact = linear(x)
    # same kernel family: both within int8 error of float, and close to each other
    assert float((ours - exact).norm() / exact.norm()) < 0.02
    assert float((ours - reference).norm() / exact.norm()) < 0.02


def test_fake_quantization_has_straight_through_gradients_and_ema_ranges():
    x = torch.tensor([0.30, -1.27, 0.004], requires_grad=True)
    y = fake_quantize(x, torch.tensor(0.01))
    torch.testing.assert_close(y.detach(), torch.tensor([0.30, -1.27, 0.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(3))
    fake = FakeQuantLinear.from_linear(nn.Linear(4, 2))
    fake.train()
    fake(torch.full((1, 4), 2.0))
    assert float(fake.input_absmax) == pytest.approx(2.0)  # the first batch sets the range
    fake(torch.full((1, 4), 4.0))
    assert 2.0 < float(fake.input_absmax) < 2.01  # then an EMA (decay 0.9999)
    fake.eval()
    fake(torch.full((1, 4), 100.0))
    assert float(fake.input_absmax) < 2.01  # evaluation does not move it


def tiny_mlm_model():
    torch.manual_seed(0)
    model = build_model("bert", {"vocab_size": 120, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                                 "intermediate_size": 64, "max_position_embeddings": 32})
    model.add_head("mlm", MLMHead)
    return model.eval()


def test_tied_output_embeddings_stay_float():
    model = tiny_mlm_model()
    names = quantizable(model)
    assert "heads.mlm.decoder" not in names and "heads.mlm.dense" in names
    assert "backbone.layers.0.attention.qkv" in names and len(names) == 2 * 4 + 2  # qkv, out, up, down; pooler, dense


@pytest.mark.parametrize("method", ["dynamic-int8", "weight-int8"])
def test_quantized_checkpoint_loads_through_ptmzoo_load(tmp_path, wordpiece_tokenizer, method):
    model = tiny_mlm_model()
    float_dir, int8_dir = str(tmp_path / "float"), str(tmp_path / "int8")
    save_pretrained(float_dir, model, None)
    ids = torch.randint(5, 120, (2, 9))
    reference = model(ids).logits
    entry = quantize_model(model, method)
    quantized = model(ids).logits
    save_pretrained(int8_dir, model, None, {"quantization": entry})
    loaded = ptmzoo.load(int8_dir)
    assert isinstance(loaded.model.backbone.layers[0].ffn.up, Int8Linear)
    assert loaded.model.backbone.layers[0].ffn.up.weight.dtype == torch.int8
    torch.testing.assert_close(loaded.model(ids).logits, quantized)
    assert float((quantized - reference).norm() / reference.norm()) < 0.05
    # int8 weights: the Linear layers and the untied tables (positions, segments; the token table is
    # tied to the MLM head and stays float)
    assert entry["embeddings"] == ["backbone.embeddings.position", "backbone.embeddings.token_type"]
    assert loaded.model.backbone.embeddings.position.qweight.dtype == torch.int8
    assert os.path.getsize(f"{int8_dir}/model.safetensors") < os.path.getsize(f"{float_dir}/model.safetensors")


def test_int8_embedding_round_trip():
    from ptmzoo.compress.quantize import Int8Embedding

    table = nn.Embedding(50, 16, padding_idx=0)
    int8 = Int8Embedding.from_embedding(table)
    ids = torch.randint(0, 50, (3, 7))
    error = (int8(ids) - table(ids)).abs()
    assert bool((error <= int8.weight_scale[ids][..., None] / 2 + 1e-7).all())


def test_qat_export_needs_fake_quantized_layers_and_damaged_entries_are_clear(tmp_path):
    model = tiny_mlm_model()
    with pytest.raises(UserError, match="fake quantization"):
        quantize_model(model, "qat")
    names = prepare_qat(model)
    assert all(isinstance(model.get_submodule(n), FakeQuantLinear) for n in names)
    entry = quantize_model(model, "qat")
    assert entry["mode"] == "static"
    save_pretrained(str(tmp_path / "q"), model, None, {"quantization": {**entry, "modules": ["backbone.nothing"]}})
    with pytest.raises(UserError, match="does not have"):
        ptmzoo.load(str(tmp_path / "q"))


@pytest.mark.parametrize("method", ["dynamic-int8", "weight-int8"])
def test_quantized_decoder_generates(tmp_path, bpe_tokenizer, method):
    from ptmzoo.compress.jobs import quantize_checkpoint
    from ptmzoo.objectives.clm import LMHead

    torch.manual_seed(0)
    model = build_model("gpt2", {"vocab_size": bpe_tokenizer.vocab_size, "hidden_size": 32, "num_layers": 2,
                                 "num_heads": 2, "max_position_embeddings": 64})
    model.add_head("clm", LMHead)
    save_pretrained(str(tmp_path / "gpt"), model, bpe_tokenizer)
    entry = quantize_checkpoint(str(tmp_path / "gpt"), str(tmp_path / "int8"), method)
    assert "heads.clm.decoder" not in entry["modules"]  # tied to the input embeddings: stays float
    float_model, int8 = ptmzoo.load(str(tmp_path / "gpt")), ptmzoo.load(str(tmp_path / "int8"))
    options = {"max_new_tokens": 6, "ignore_eos": True}
    reference = ptmzoo.generate(float_model, "the king", **options)
    result = ptmzoo.generate(int8, "the king", **options)
    assert len(result.token_ids[0]) == 6
    ids = torch.tensor([float_model.tokenizer.encode("the king and the queen")])
    a, b = float_model.model(ids).logits, int8.model(ids).logits
    assert float((a - b).norm() / a.norm()) < 0.05  # the same distribution, near enough
    assert reference.token_ids[0][:1] == result.token_ids[0][:1]
