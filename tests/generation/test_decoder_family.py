"""GPT-1 (post-LN) and GPT-3-style (dense and locally banded layers) decoders: the banded mask,
the KV cache giving the logits of full forwards, and the GPT-3 size table."""

import pytest
import torch

from ptmzoo.catalog import count_parameters
from ptmzoo.generation import generate
from ptmzoo.nn import AttentionMask, banded_mask, causal_mask
from ptmzoo.presets import get_preset
from ptmzoo.presets.gpt import GPT3_SIZES
from tests.generation.generation_helpers import assert_cache_equals_full_pass, tiny_gpt2

DECODERS = {"gpt1": {"preset": "gpt1-tiny"}, "gpt3-banded": {"preset": "gpt3-tiny", "attention_window": 4}}


def test_banded_mask_is_causal_band_of_window_keys():
    mask = banded_mask(AttentionMask(is_causal=True), 3, torch.arange(6), 6).mask
    expected = torch.tensor([[int(0 <= q - k < 3) for k in range(6)] for q in range(6)], dtype=torch.bool)
    assert torch.equal(mask, expected)
    # queries appended after cached keys (positions 4, 5 of 6 keys) and combined with padding
    padded = causal_mask(6, torch.tensor([[0, 1, 1, 1, 1, 1]]))
    rows = banded_mask(padded, 2, torch.arange(6), 6).mask[0, 0]
    assert rows[5].tolist() == [False, False, False, False, True, True]
    assert rows[1].tolist() == [False, True, False, False, False, False]
    step = banded_mask(AttentionMask(), 2, torch.tensor([4, 5]), 6).mask
    assert step.tolist() == [[False, False, False, True, True, False], [False, False, False, False, True, True]]


def test_banded_layers_see_only_the_window():
    dense = tiny_gpt2(preset="gpt3-tiny", attention_window=0, num_layers=2)
    banded = tiny_gpt2(preset="gpt3-tiny", attention_window=4, num_layers=2)
    assert [banded.config.is_local(i) for i in range(2)] == [False, True]
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        # as long as the text fits in the band, both are the same network
        torch.testing.assert_close(dense(ids[:, :4]).logits, banded(ids[:, :4]).logits)
        assert not torch.allclose(dense(ids).logits[:, 4:], banded(ids).logits[:, 4:])
        # only layer 1 is banded: with layer 0 skipped, a token outside the window changes nothing
        banded.backbone.blocks[0].forward = lambda x, *args: x
        changed = ids.clone()
        changed[:, 0] = (changed[:, 0] + 1) % 97
        torch.testing.assert_close(banded(ids).logits[:, 4:], banded(changed).logits[:, 4:])


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("decoder", list(DECODERS))
def test_cache_equals_full_forward(decoder, static):
    assert_cache_equals_full_pass(tiny_gpt2(**DECODERS[decoder]), lengths=(9, 4, 7), new=5,
                                  chunkings=[(9, 1, 1, 1, 1, 1), (3, 4, 2, 2, 3)], static=static)


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_generate_equals_uncached_greedy(decoder):
    model = tiny_gpt2(seed=3, initializer_range=0.3, **DECODERS[decoder])
    prompt = torch.randint(1, 97, (6,)).tolist()
    ours = generate(model, [prompt], max_new_tokens=10).token_ids[0]
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(10):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert ours == ids[len(prompt):]


def test_gpt3_presets_match_the_paper_parameter_counts():
    for name, (_, _, _, paper) in GPT3_SIZES.items():
        assert abs(count_parameters(get_preset(name)) / paper - 1) < 0.02, name
    assert get_preset("gpt3-175b").model["num_layers"] == 96
    assert abs(count_parameters(get_preset("gpt1")) / 117e6 - 1) < 0.01
