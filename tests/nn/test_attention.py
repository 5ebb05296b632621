"""The one attention module: fused and separate projections, a memory of earlier states, and the
score-bias hook, each against a direct computation of softmax(q k^T / sqrt(d) + bias) v."""

import math

import pytest
import torch

from ptmzoo.nn.attention import Attention, AttentionMask, causal_mask


def reference(attention: Attention, x, keys_from, bias=None, causal_offset=None):
    """Attention written out: per-head q, k, v from the module's weights, scores, softmax."""
    heads, d = attention.num_heads, attention.head_dim
    if attention.fused:
        wq, wk, wv = attention.qkv.weight.chunk(3)
        bq, bk, bv = attention.qkv.bias.chunk(3)
    else:
        wq, bq = attention.q.weight, attention.q.bias
        (wk, wv), (bk, bv) = attention.kv.weight.chunk(2), attention.kv.bias.chunk(2)

    def split(t):
        return t.view(t.shape[0], t.shape[1], heads, d).transpose(1, 2)

    q, k, v = split(x @ wq.T + bq), split(keys_from @ wk.T + bk), split(keys_from @ wv.T + bv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if bias is not None:
        scores = scores + bias
    if causal_offset is not None:  # query i sits at key position i + offset
        keys = torch.arange(k.shape[2])
        queries = torch.arange(q.shape[2]) + causal_offset
        scores = scores.masked_fill(keys[None, :] > queries[:, None], float("-inf"))
    y = scores.softmax(-1) @ v
    return y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1) @ attention.out.weight.T + attention.out.bias


@pytest.mark.parametrize("fused", [True, False])
def test_self_and_cross_attention_match_the_formula(fused):
    torch.manual_seed(0)
    attention = Attention(12, 3, fused=fused).eval()
    x, source = torch.randn(2, 5, 12), torch.randn(2, 7, 12)
    torch.testing.assert_close(attention(x, AttentionMask()), reference(attention, x, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention(x, AttentionMask(), source=source), reference(attention, x, source),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_memory_is_prepended_to_the_keys_without_gradient(fused):
    torch.manual_seed(1)
    attention = Attention(12, 3, fused=fused).eval()
    memory = torch.randn(2, 4, 12, requires_grad=True)
    x = torch.randn(2, 5, 12)
    visible = torch.ones(5, 9, dtype=torch.bool).tril(4)  # the memory and the segment so far
    out = attention(x, AttentionMask(mask=visible), memory=memory)
    expected = reference(attention, x, torch.cat([memory.detach(), x], dim=1), causal_offset=4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert memory.grad is None  # no gradient flows into the previous segment


def test_score_bias_hook_gets_the_queries_and_adds_to_the_scaled_scores():
    torch.manual_seed(2)
    attention = Attention(12, 3).eval()
    x = torch.randn(2, 6, 12)
    position = torch.randn(6, 4)  # a query-dependent term, like Transformer-XL's q . R_{i-j}
    seen = {}

    def bias(q):
        seen["q"] = q.shape
        return torch.einsum("bhid,jd->bhij", q, position) / 2

    out = attention(x, causal_mask(6), score_bias=bias)
    q = (x @ attention.qkv.weight.chunk(3)[0].T + attention.qkv.bias.chunk(3)[0]).view(2, 6, 3, 4).transpose(1, 2)
    expected = reference(attention, x, x, bias=torch.einsum("bhid,jd->bhij", q, position) / 2, causal_offset=0)
    assert seen["q"] == (2, 3, 6, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
