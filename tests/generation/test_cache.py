"""The KV cache changes nothing: logits step by step with the cache = logits of full forwards."""

import pytest
import torch
from generation_helpers import tiny_gpt2

from ptmzoo.generation import KVCache


@pytest.fixture(scope="module")
def model():
    return tiny_gpt2()


def _step_by_step(model, ids, mask, positions, cache, chunks):
    """Logits of ``ids`` fed through the cache in chunks of the given sizes."""
    logits, start = [], 0
    for size in chunks:
        end = start + size
        out = model(ids[:, start:end], attention_mask=mask[:, :end], position_ids=positions[:, start:end],
                    cache=cache)
        logits.append(out.logits)
        start = end
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 1, 1, 3, 2], [12]])
def test_cached_logits_equal_full_forward(model, static, chunks):
    torch.manual_seed(1)
    ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones_like(ids)
    positions = torch.arange(12)[None].expand(3, -1)
    cache = KVCache.for_backbone(model.backbone, 3, 16, static=static)
    with torch.no_grad():
        cached = _step_by_step(model, ids, mask, positions, cache, chunks)
        full = model(ids).logits
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    assert cache.length == 12


@pytest.mark.parametrize("static", [False, True])
def test_left_padded_batch_with_cache_equals_each_row_alone(model, static):
    torch.manual_seed(2)
    lengths = [9, 4, 7]
    rows = [torch.randint(1, 97, (n,)) for n in lengths]
    new = torch.randint(1, 97, (3, 4))  # continued a token at a time after the prompts
    width = max(lengths)
    ids = torch.zeros(3, width + 4, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):width] = row
        mask[i, width - len(row):] = 1
    ids[:, width:] = new
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = KVCache.for_backbone(model.backbone, 3, width + 4, static=static)
    with torch.no_grad():
        cached = _step_by_step(model, ids, mask, positions, cache, [width, 1, 1, 1, 1])
        for i, row in enumerate(rows):
            alone = model(torch.cat([row, new[i]])[None]).logits[0]
            torch.testing.assert_close(cached[i, width - len(row):], alone, atol=1e-5, rtol=0)
    assert torch.isfinite(cached).all()  # padded query rows too


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
