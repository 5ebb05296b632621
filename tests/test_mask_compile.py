"""The mask builders read no tensor value inside torch.compile (no graph break), and build the
same attention there as in eager mode."""

import torch

from ptmzoo.nn.attention import causal_mask, no_padding, padding_mask


def _masks(x, attention_mask):
    causal, padded = causal_mask(x.shape[1], attention_mask), padding_mask(attention_mask)
    return causal.mask, causal.is_causal, padded.mask


def test_no_graph_break_and_same_visibility():
    x, ones = torch.randn(2, 5), torch.ones(2, 5, dtype=torch.long)
    explained = torch._dynamo.explain(_masks)(x, ones)
    assert explained.graph_break_count == 0
    causal, _, padded = torch.compile(_masks, fullgraph=True)(x, ones)
    assert torch.equal(causal[:, 0], torch.ones(2, 5, 5, dtype=torch.bool).tril())  # = is_causal
    assert bool(padded.all())


def test_eager_keeps_the_mask_free_paths():
    ones = torch.ones(2, 5, dtype=torch.long)
    assert no_padding(None) and no_padding(ones)
    assert causal_mask(5, ones).is_causal and causal_mask(5, ones).mask is None
    assert padding_mask(ones).mask is None
    padded = ones.clone()
    padded[1, 3:] = 0
    assert not no_padding(padded) and causal_mask(5, padded).mask is not None
