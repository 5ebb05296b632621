"""NEZHA (a BERT option): the attention with functional relative positions equals the paper's
formulas written out (keys and values both get a_ij, the sinusoid of the clipped distance), the
model has no position table, is invariant to where the text sits in a padded row, and cannot be
exported to a Hugging Face format that has none of it."""

import math

import pytest
import torch

from ptmzoo.catalog import build_model, count_parameters
from ptmzoo.errors import UserError
from ptmzoo.nn import AttentionMask
from ptmzoo.nn.positions import nezha_relative_positions
from ptmzoo.presets import get_preset

SMALL = {"vocab_size": 90, "hidden_size": 24, "num_layers": 2, "num_heads": 3, "intermediate_size": 40,
         "relative_positions": "nezha", "max_relative_position": 3, "hidden_dropout": 0.0,
         "attention_dropout": 0.0}


def a(i: int, j: int, dim: int, max_distance: int) -> torch.Tensor:
    """a_ij of the released NEZHA code: index m = clip(j - i) + max, a[2k] = sin(m / 10000^(2k/d)),
    a[2k+1] = cos(m / 10000^(2k/d))."""
    m = max(-max_distance, min(max_distance, j - i)) + max_distance
    out = torch.zeros(dim, dtype=torch.float64)
    for k in range(0, dim, 2):
        out[k] = math.sin(m / 10000 ** (k / dim))
        if k + 1 < dim:
            out[k + 1] = math.cos(m / 10000 ** (k / dim))
    return out


def test_relative_table_is_the_formula():
    table = nezha_relative_positions(6, 6, 8, 3)
    for i in range(6):
        for j in range(6):
            torch.testing.assert_close(table[i, j].double(), a(i, j, 8, 3), atol=1e-6, rtol=0)


def test_attention_is_nezhas_formula_written_out():
    torch.manual_seed(0)
    model = build_model("bert", SMALL).eval()
    layer = model.backbone.layers[0]
    attention = layer.attention
    x = torch.randn(2, 7, 24)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, 5:] = False
    with torch.no_grad():
        relative = model.backbone.relative_positions(7, x.device)
        from ptmzoo.models.bert import relative_key_terms

        got = attention(x, AttentionMask(mask=keep[:, None, None, :]), score_bias=relative_key_terms(
            relative, attention.score_scale), value_positions=relative)
    wq, wk, wv = attention.qkv.weight.detach().double().chunk(3)
    bq, bk, bv = attention.qkv.bias.detach().double().chunk(3)
    heads, d = 3, 8
    out = torch.zeros(2, 7, 24, dtype=torch.float64)
    for b in range(2):
        q = (x[b].double() @ wq.T + bq).view(7, heads, d)
        k = (x[b].double() @ wk.T + bk).view(7, heads, d)
        v = (x[b].double() @ wv.T + bv).view(7, heads, d)
        for h in range(heads):
            for i in range(7):
                e = torch.tensor([(q[i, h] @ (k[j, h] + a(i, j, d, 3))) / math.sqrt(d) if keep[b, j]
                                  else float("-inf") for j in range(7)])
                p = e.softmax(0)
                out[b, i, h * d:(h + 1) * d] = sum(p[j] * (v[j, h] + a(i, j, d, 3)) for j in range(7))
    expected = out @ attention.out.weight.detach().double().T + attention.out.bias.detach().double()
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_no_position_table_and_a_shift_changes_nothing():
    torch.manual_seed(1)
    model = build_model("bert", SMALL).eval()
    assert model.backbone.embeddings.position is None
    ids = torch.randint(5, 90, (1, 6))
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
        mask = torch.tensor([[0, 0, 0] + [1] * 6])
        shifted = model(padded, attention_mask=mask).last_hidden_state[:, 3:]
    torch.testing.assert_close(shifted, alone, atol=1e-5, rtol=1e-5)


def test_nezha_base_is_bert_base_without_the_position_table():
    nezha = count_parameters(get_preset("nezha-base"))
    bert = count_parameters(get_preset("bert-base"), vocab_size=21128)
    assert nezha == bert - 512 * 768


def test_families_without_nezha_support_and_hf_export_refuse_it():
    from ptmzoo.interop.hf import to_hf_model

    with pytest.raises(UserError, match="relative_positions is not supported by UnilmModel"):
        build_model("unilm", SMALL)
    with pytest.raises(UserError, match="must be null .* or 'nezha'"):
        build_model("bert", {**SMALL, "relative_positions": "t5"})
    with pytest.raises(UserError, match="NEZHA's relative positions"):
        to_hf_model(build_model("bert", SMALL))
