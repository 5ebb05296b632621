"""The KV cache changes nothing: logits step by step with the cache = logits of full forwards."""

import pytest
import torch

from ptmzoo.generation import KVCache
from tests.generation.generation_helpers import assert_cache_equals_full_pass, step_by_step, tiny_gpt2


@pytest.fixture(scope="module")
def model():
    return tiny_gpt2()


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 3, 2], [12]])
def test_cached_logits_equal_full_forward(model, static, chunks):
    torch.manual_seed(1)
    ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones_like(ids)
    positions = torch.arange(12)[None].expand(3, -1)
    cache = KVCache.for_backbone(model.backbone, 3, 16, static=static)
    with torch.no_grad():
        cached = step_by_step(model, ids, mask, positions, cache, chunks)
        full = model(ids).logits
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    assert cache.length == 12


@pytest.mark.parametrize("static", [False, True])
def test_left_padded_batch_with_cache_equals_each_row_alone(model, static):
    assert_cache_equals_full_pass(model, lengths=(9, 4, 7), new=4, chunkings=[(9, 1, 1, 1, 1)], static=static, seed=2)


def test_reorder_moves_whole_rows(model):
    torch.manual_seed(3)
    ids = torch.randint(0, 97, (3, 6))
    cache = KVCache.for_backbone(model.backbone, 3, 8)
    with torch.no_grad():
        model(ids, cache=cache)
        cache.reorder(torch.tensor([2, 2, 0]))
        step = torch.tensor([[5], [6], [7]])
        cached = model(step, cache=cache).logits[:, -1]
        full = model(torch.cat([ids[[2, 2, 0]], step], dim=1)).logits[:, -1]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


def test_full_cache_and_context_are_clear_errors(model):
    from ptmzoo.errors import UserError

    cache = KVCache.for_backbone(model.backbone, 1, 4)
    with pytest.raises(ValueError, match="is full"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    long_cache = KVCache.for_backbone(model.backbone, 1, 200)
    model(torch.zeros(1, 100, dtype=torch.long), cache=long_cache)
    with pytest.raises(UserError, match="longer than the model's context"):
        model(torch.zeros(1, 29, dtype=torch.long), cache=long_cache)
