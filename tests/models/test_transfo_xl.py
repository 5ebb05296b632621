"""Transformer-XL: the relative attention is the paper's four terms (a)-(d) written out (there is no
maintained HF implementation to compare with), the relative shift is a gather, the memory makes
segment-by-segment processing equal one pass over the whole text under the XL attention mask, no
gradient flows into the memory, the adaptive input and softmax are the distributions they claim
to be, and generation with the memory equals recomputing the whole text."""

import math

import pytest
import torch

from ptmzoo.catalog import HEADS, build_model, count_parameters
from ptmzoo.models.transfo_xl import MemoryModel, TransfoXLModel
from ptmzoo.nn import AttentionMask
from ptmzoo.nn.adaptive import AdaptiveEmbedding, AdaptiveSoftmax
from ptmzoo.nn.positions import relative_distances, relative_shift
from ptmzoo.presets import get_preset

SMALL = {"vocab_size": 61, "hidden_size": 24, "num_layers": 3, "num_heads": 3, "intermediate_size": 40,
         "hidden_dropout": 0.0, "attention_dropout": 0.0}


def xl(seed=0, **config) -> MemoryModel:
    torch.manual_seed(seed)
    model = build_model("transfo_xl", {**SMALL, **config})
    model.add_head("xl_lm", HEADS["xl_lm"])
    with torch.no_grad():  # every weight random (u, v and the output biases too)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def sinusoid(distance: float, dim: int) -> torch.Tensor:
    """R_d as in the paper's code: sines of d / 10000^(2k/dim), then the cosines."""
    k = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = distance / torch.pow(10000.0, k / dim)
    return torch.cat([angles.sin(), angles.cos()])


def four_terms(layer, x, memory):
    """The attention of one layer written out, term by term, in float64, for query i (position
    M + i) and key j of [memory; x]: A_ij = (a) q_i.k_j + (b) q_i.W_R R_{i-j} + (c) u.k_j
    + (d) v.W_R R_{i-j}, scaled by 1/sqrt(d), masked to j <= M + i, softmax, values, output."""
    attention = layer.attention
    heads, dim = attention.num_heads, attention.head_dim
    wq, wk, wv = (w.double() for w in attention.qkv.weight.chunk(3))
    wr, wo = layer.relative.weight.double(), attention.out.weight.double()
    u, v = layer.biases.content.double(), layer.biases.position.double()
    states = torch.cat([memory, x], dim=1).double()
    batch, length, keys = x.shape[0], x.shape[1], states.shape[1]
    mem = keys - length
    out = torch.zeros(batch, length, heads * dim, dtype=torch.float64)
    for b in range(batch):
        q = (x[b].double() @ wq.T).view(length, heads, dim)
        k = (states[b] @ wk.T).view(keys, heads, dim)
        val = (states[b] @ wv.T).view(keys, heads, dim)
        for h in range(heads):
            for i in range(length):
                scores = torch.full((keys,), float("-inf"), dtype=torch.float64)
                for j in range(mem + i + 1):
                    r = (wr @ sinusoid(mem + i - j, x.shape[-1])).view(heads, dim)[h]
                    a = q[i, h] @ k[j, h]
                    b_ = q[i, h] @ r
                    c = u[h] @ k[j, h]
                    d = v[h] @ r
                    scores[j] = (a + b_ + c + d) / math.sqrt(dim)
                out[b, i, h * dim:(h + 1) * dim] = scores.softmax(0) @ val[:, h]
    return (out @ wo.T).float()


@pytest.mark.parametrize("memory_length", [0, 4])
def test_relative_attention_is_the_four_terms_of_the_paper(memory_length):
    model = xl()
    layer, backbone = model.backbone.layers[1], model.backbone
    x, memory = torch.randn(2, 5, 24), torch.randn(2, memory_length, 24)
    keys = memory_length + 5
    positions = backbone.relative_positions(5, keys, x.device)
    mask = backbone.visibility(None, 5, memory_length, x.device)
    with torch.no_grad():
        got = layer.attention(x, mask, memory=memory if memory_length else None,
                              score_bias=layer.relative_terms(positions, keys), content_bias=layer.biases.content)
    torch.testing.assert_close(got, four_terms(layer, x, memory), atol=2e-5, rtol=1e-4)


def test_relative_shift_is_a_gather_of_each_distance():
    queries, keys = 4, 7
    scores = torch.randn(2, 3, queries, keys + queries)
    distances = relative_distances(queries, keys)  # keys, keys - 1, ..., -queries + 1
    shifted = relative_shift(scores, keys)
    for i in range(queries):
        for j in range(keys):
            column = int((distances == (keys - queries + i) - j).nonzero())
            assert torch.equal(shifted[..., i, j], scores[..., i, column])


def xl_mask(total: int, segment: int, mem_len: int | None) -> torch.Tensor:
    """The one-pass equivalent of the recurrence: token p (segment s = p // segment) sees the
    tokens from s * segment - mem_len up to itself."""
    p = torch.arange(total)
    first = (p // segment) * segment - (mem_len if mem_len is not None else total)
    return (p[None, :] <= p[:, None]) & (p[None, :] >= first[:, None])


def one_pass(model, ids, mask):
    """The backbone's layers over the whole text at once under ``mask`` (no memory)."""
    backbone = model.backbone
    x = backbone.embeddings(ids)
    positions = backbone.relative_positions(ids.shape[1], ids.shape[1], ids.device)
    for layer in backbone.layers:
        x = layer(x, AttentionMask(mask=mask[None, None]), positions)
    return x


def token_losses(model, hidden, ids):
    """-log p(next token) at every position but the last."""
    log_probs = model.heads["xl_lm"].softmax.log_probs(hidden[:, :-1])
    return -log_probs.gather(-1, ids[:, 1:, None])[..., 0]


@pytest.mark.parametrize("mem_len,cutoffs", [(None, []), (6, []), (4, [20, 40]), (12, [30])])
def test_segments_with_memory_equal_one_pass_under_the_xl_mask(mem_len, cutoffs):
    """A 24-token text in segments of 5 (the last one shorter) with the memory carried: the same
    states and next-token losses as one pass over the whole text, each token seeing the last
    mem_len tokens before its segment and its segment up to itself (mem_len None: everything)."""
    model = xl(mem_len=mem_len, cutoffs=cutoffs, div_val=2 if cutoffs else 1)
    ids = torch.randint(0, 61, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pieces, mems = [], None
        for start in range(0, 24, 5):
            out = model(ids[:, start:start + 5], mems=mems)
            pieces.append(out.last_hidden_state)
            mems = out.mems
            assert mems[0].shape[1] == (start + ids[:, start:start + 5].shape[1] if mem_len is None
                                        else min(mem_len, start + ids[:, start:start + 5].shape[1]))
        segmented = torch.cat(pieces, dim=1)
        whole = one_pass(model, ids, xl_mask(24, 5, mem_len))
        torch.testing.assert_close(segmented, whole, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(token_losses(model, segmented, ids), token_losses(model, whole, ids),
                                   atol=1e-5, rtol=1e-5)
        if mem_len is None:  # a memory of everything: exactly the plain causal pass of the backbone
            torch.testing.assert_close(segmented, model(ids).last_hidden_state, atol=1e-5, rtol=1e-5)
        else:  # and a bounded memory really forgets: the plain causal pass differs
            assert (segmented - model(ids).last_hidden_state).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["transfo_xl", "xlnet"])
def test_no_gradient_flows_into_the_memory(family):
    torch.manual_seed(0)
    model = build_model(family, SMALL).train()
    ids = torch.randint(0, 61, (2, 10))
    first = model(ids[:, :5])
    assert all(not m.requires_grad for m in first.mems if first.mems is not None)
    # even a memory that asks for gradients gets none: the previous segment is a constant
    memory = tuple(torch.randn(2, 5, 24, requires_grad=True) for _ in range(3))
    model(ids[:, 5:], mems=memory).last_hidden_state.sum().backward()
    assert all(m.grad is None for m in memory)
    assert all(p.grad is not None for p in model.backbone.layers[0].attention.parameters())


def test_padded_memory_slots_and_left_padding_change_nothing():
    """Relative positions: left padding (masked) moves no real token, and memory slots marked
    as padding are as good as absent."""
    model = xl(mem_len=8)
    ids = torch.randint(1, 61, (1, 6))
    with torch.no_grad():
        alone = model(ids).last_hidden_state
        padded = model(torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1),
                       attention_mask=torch.tensor([[0, 0, 0] + [1] * 6])).last_hidden_state[:, 3:]
        torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
        first = model(ids[:, :3])
        fake = tuple(torch.cat([torch.randn(1, 4, 24), m], 1) for m in first.mems)
        real = torch.tensor([[0] * 4 + [1] * 3 + [1] * 3])
        with_fake = model(ids[:, 3:], attention_mask=real, mems=fake).last_hidden_state
        torch.testing.assert_close(with_fake, model(ids[:, 3:], mems=first.mems).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)


def test_adaptive_softmax_is_a_distribution_and_its_loss_is_its_log_probability():
    embedding = AdaptiveEmbedding(100, 16, 16, cutoffs=[10, 40], div_val=2)
    softmax = AdaptiveSoftmax(embedding)
    assert softmax.weights[1] is embedding.layers[1].weight  # tied to the input embeddings
    with torch.no_grad():
        for bias in (*softmax.biases, softmax.cluster_bias):
            bias.normal_()
        softmax.cluster_weight.normal_()
    hidden = torch.randn(7, 16, requires_grad=True)
    targets = torch.tensor([3, 12, 55, 99, 0, 39, -100])
    log_probs = softmax.log_probs(hidden)
    assert log_probs.shape == (7, 100)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(7), atol=1e-5, rtol=0)
    expected = -log_probs[torch.arange(6), targets[:6]].sum()
    loss = softmax.nll_sum(hidden, targets)
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    grad_loss, = torch.autograd.grad(loss, hidden, retain_graph=True)
    grad_expected, = torch.autograd.grad(expected, hidden)
    torch.testing.assert_close(grad_loss, grad_expected, atol=1e-5, rtol=1e-4)
    # the input side: cluster i is embedded in 16 / 2**i dimensions and projected up, times sqrt(16)
    ids = torch.tensor([[5, 20, 70]])
    direct = torch.stack([embedding.layers[0].weight[5],
                          embedding.projections[1](embedding.layers[1].weight[10]),
                          embedding.projections[2](embedding.layers[2].weight[30])]) * 4.0
    torch.testing.assert_close(embedding(ids)[0], direct)


def test_generation_with_the_memory_equals_recomputing_the_text():
    from ptmzoo.generation import generate

    model = xl(mem_len=None)  # a memory of everything: each step must give the full-recompute logits
    prompts = [[5, 9, 11, 3], [7, 2]]
    result = generate(model, prompts, max_new_tokens=6, ignore_eos=True)  # the memory stepper: it reads mems
    for prompt, new in zip(prompts, result.token_ids):
        text = list(prompt)
        for _ in range(6):
            with torch.no_grad():
                log_probs = model(torch.tensor([text])).logits[0, -1]
            text.append(int(log_probs.argmax()))
        assert new == text[len(prompt):]


def test_transfo_xl_base_has_the_papers_151m_parameters():
    """16 layers x (qkv 3 x 410 x 410, W_R and output 410 x 410 each, feed-forward 410 x 2100 x 2
    with biases, two LayerNorms) + u, v (shared) + the WikiText-103 adaptive embedding (div_val 1:
    one 267,735 x 410 table, no projections) tied to the softmax (its per-token biases and the 3
    cluster vectors and biases of the head)."""
    layer = 3 * 410 * 410 + 2 * 410 * 410 + (410 * 2100 + 2100) + (2100 * 410 + 410) + 4 * 410
    expected = 16 * layer + 2 * 410 + 267735 * 410 + 267735 + 3 * 410 + 3
    assert count_parameters(get_preset("transfo-xl-base")) == expected == 151_107_538


def test_backbone_declares_its_memory_and_no_position_table():
    assert TransfoXLModel.inputs == ("input_ids", "attention_mask", "mems") and TransfoXLModel.causal
    assert build_model("transfo_xl", SMALL).backbone.max_length is None
