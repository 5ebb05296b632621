"""The distillation losses against hand computations: KL at temperature with T^2, the survey's
worked example, layer mappings, attention-score extraction, MiniLM's relation matrices."""

import math

import pytest
import torch

from ptmzoo.catalog import build_backbone
from ptmzoo.compress import losses as L
from ptmzoo.errors import UserError
from ptmzoo.nn.attention import (
    Attention,
    AttentionMask,
    capture_attention,
    padding_mask,
)


def test_worked_example_kl_is_0_1386():
    """Teacher [0.4, 0.4, 0.2], student [0.4, 0.2, 0.4]: KL = 0.4 ln 2 + 0.2 ln(1/2) = 0.2 ln 2."""
    teacher = torch.tensor([[0.4, 0.4, 0.2]])
    student = torch.tensor([[0.4, 0.2, 0.4]])
    kl = L.soft_target_kl(student.log(), L.soft_targets(teacher.log(), 1.0), 1.0)
    assert float(kl) == pytest.approx(0.2 * math.log(2), abs=1e-6)
    assert round(float(kl), 4) == 0.1386


def test_temperature_softens_and_t_squared_scales():
    teacher, student = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[1.0, 2.0, 0.5]])
    for T in (1.0, 2.0, 5.0):
        p = torch.softmax(teacher / T, -1)
        q = torch.softmax(student / T, -1)
        expected = T * T * float((p * (p / q).log()).sum())
        assert float(L.soft_target_kl(student, L.soft_targets(teacher, T), T)) == pytest.approx(expected, rel=1e-5)
    # logits scaled by T at temperature T give the distributions of temperature 1: KL x T^2
    kl1 = L.soft_target_kl(student, L.soft_targets(teacher, 1.0), 1.0)
    kl2 = L.soft_target_kl(2 * student, L.soft_targets(2 * teacher, 2.0), 2.0)
    assert float(kl2) == pytest.approx(4 * float(kl1), rel=1e-5)
    assert float(L.soft_target_kl(teacher, L.soft_targets(teacher, 3.0), 3.0)) == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_the_gradient_size():
    """Hinton et al.: with T^2 the soft-target gradient tends to (v - mean v) / N for v = z_s - z_t as
    T grows, the same size at every high temperature (without T^2 it would shrink as 1/T^2)."""
    teacher, start = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[0.5, 0.2, -0.3]])
    v = start - teacher
    limit = (v - v.mean()) / 3
    for T in (50.0, 100.0):
        student = start.clone().requires_grad_(True)
        L.soft_target_kl(student, L.soft_targets(teacher, T), T).backward()
        torch.testing.assert_close(student.grad, limit, rtol=0.03, atol=2e-3)


def test_ensemble_averages_distributions_and_sums_rows():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    torch.testing.assert_close(L.soft_targets([a, b], 1.0), torch.tensor([[0.5, 0.5]]))
    rows = torch.randn(4, 3)
    total = L.soft_target_kl(rows, L.soft_targets(rows.flip(0), 2.0), 2.0)
    each = sum(float(L.soft_target_kl(rows[i:i + 1], L.soft_targets(rows.flip(0)[i:i + 1], 2.0), 2.0)) for i in range(4))
    assert float(total) == pytest.approx(each, rel=1e-5)


def test_logit_mse_cosine_and_patient_losses():
    s, t = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert float(L.logit_mse(s, t)) == pytest.approx((1 + 4) / 2 + 4 / 2)
    x = torch.randn(2, 5, 8)
    assert float(L.cosine_loss(x, 3 * x)) == pytest.approx(0.0, abs=1e-5)  # directions only
    assert float(L.cosine_loss(x, -x, torch.ones(2, 5))) == pytest.approx(20.0, rel=1e-5)
    cls = torch.randn(3, 8)
    assert float(L.patient_loss([cls], [5 * cls])) == pytest.approx(0.0, abs=1e-5)  # normalised states
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert float(L.patient_loss([u, u], [v, u])) == pytest.approx(2.0)  # |e1 - e2|^2 + 0


def test_layer_maps():
    assert L.layer_map(6, 12, "uniform") == [2, 4, 6, 8, 10, 12]  # TinyBERT g(m) = 2m
    assert L.layer_map(6, 12, "skip") == [2, 4, 6, 8, 10, 12]  # PKD-Skip: 2, 4, ..., 10 (+ the last, via logits)
    assert L.layer_map(6, 12, "last") == [7, 8, 9, 10, 11, 12]  # PKD-Last
    assert L.layer_map(4, 12) == [3, 6, 9, 12] and L.layer_map(2, 4) == [2, 4] and L.layer_map(3, 3) == [1, 2, 3]
    with pytest.raises(UserError, match="cannot learn layer by layer"):
        L.layer_map(5, 4)
    with pytest.raises(UserError, match="unknown layer mapping"):
        L.layer_map(2, 4, "middle")


def manual_probabilities(attention: Attention, x, keep=None):
    q, k, v = attention.qkv(x).chunk(3, -1)
    split = lambda t: t.view(t.shape[0], t.shape[1], attention.num_heads, -1).transpose(1, 2)
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(attention.head_dim)
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return torch.softmax(scores, -1), v


def test_captured_attention_is_what_attention_computed():
    torch.manual_seed(0)
    attention = Attention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    with capture_attention(attention) as records:
        out = attention(x, padding_mask(keep.long()))
    (record,) = records
    probs, _ = manual_probabilities(attention, x, keep)
    torch.testing.assert_close(record.probabilities(), probs, atol=1e-6, rtol=1e-5)
    assert float(record.probabilities()[1, :, :, 3:].abs().max()) == 0.0  # padded keys get nothing
    # the probabilities reproduce the module's output: softmax(qk^T) v, then the output projection
    mixed = (record.probabilities() @ record.v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attention.out(mixed), out, atol=1e-5, rtol=1e-5)
    assert attention.recorder is None  # recording ends with the block
    with capture_attention(attention) as records:
        attention(x, AttentionMask(is_causal=True))
    assert bool((records[0].probabilities()[0, 0].triu(1) == 0).all())


def test_capture_reads_every_layer_of_a_backbone_in_order():
    torch.manual_seed(0)
    bert = build_backbone("bert", {"vocab_size": 50, "hidden_size": 16, "num_layers": 3, "num_heads": 2,
                                   "intermediate_size": 32, "max_position_embeddings": 16}).eval()
    ids = torch.randint(5, 50, (2, 7))
    with capture_attention(bert) as records:
        out = bert(ids, output_hidden_states=True)
    assert len(records) == 3 and records[0].q.shape == (2, 2, 7, 8)
    probs, _ = manual_probabilities(bert.layers[2].attention, out.hidden_states[2])
    torch.testing.assert_close(records[2].probabilities(), probs, atol=1e-5, rtol=1e-4)
    plain = bert(ids).last_hidden_state
    torch.testing.assert_close(out.last_hidden_state, plain)  # recording changes nothing


def test_minilm_relations():
    torch.manual_seed(0)
    attention = Attention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    keep = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]]).bool()
    with capture_attention(attention) as records:
        attention(x, padding_mask(keep.long()))
    r = records[0]
    # query-key relation with the model's own heads = its attention distributions
    rel = L.relation(r.q, r.k, 4, r.visible())
    torch.testing.assert_close(rel.exp(), r.probabilities(), atol=1e-6, rtol=1e-5)
    value = L.relation(r.v, r.v, 4, r.visible()).exp()
    assert value.shape == (2, 4, 6, 6)
    torch.testing.assert_close(value.sum(-1), torch.ones(2, 4, 6))
    assert float(value[1, :, :, 4:].max()) == 0.0
    manual = torch.softmax(r.v @ r.v.transpose(-1, -2) / math.sqrt(4), -1)[0]
    torch.testing.assert_close(value[0], manual, atol=1e-6, rtol=1e-5)
    # relation heads re-split any width: a 32-wide student and a 16-wide teacher, 2 relation heads
    student = torch.randn(2, 6, 32)
    assert L.relation(student, student, 2).shape == (2, 2, 6, 6)
    with pytest.raises(UserError, match="does not split"):
        L.relation(torch.randn(1, 3, 10), torch.randn(1, 3, 10), 4)
    # KL of a relation with itself is 0; against uniform it is log(L) - entropy, averaged
    assert float(L.relation_kl(rel, rel)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 1, 1, 4), 0.25).log()
    peaked = torch.tensor([[[[0.7, 0.1, 0.1, 0.1]]]]).log()
    expected = 0.7 * math.log(0.7 / 0.25) + 3 * 0.1 * math.log(0.1 / 0.25)
    assert float(L.relation_kl(uniform, peaked, torch.ones(1, 1))) == pytest.approx(expected, rel=1e-5)


def test_tinybert_attention_and_hidden_mse():
    s, t = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)
    visible = torch.tensor([True, True, False])[None, None, None, :]
    # hidden keys ignored: 6 of 9 entries per head differ by 1, mean over keys = 2/3 per query
    assert float(L.attention_score_mse(s, t, visible, torch.ones(1, 3))) == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="compares heads one to one"):
        L.attention_score_mse(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3), None)
    a, b = torch.zeros(2, 4, 5), torch.ones(2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert float(L.hidden_mse(a, b, mask)) == pytest.approx(2.0)  # 1 per example, padding ignored
    b[1, 2:] = 100.0
    assert float(L.hidden_mse(a, b, mask)) == pytest.approx(2.0)
