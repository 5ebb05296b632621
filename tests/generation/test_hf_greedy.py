"""Greedy continuations are token-identical to ``transformers``' ``generate`` for the same weights."""

import pytest
import torch

from ptmzoo.generation import generate
from tests.generation.generation_helpers import tiny_gpt2

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("tied", [True, False])
def test_greedy_tokens_equal_transformers_generate(tied):
    from ptmzoo.interop.hf import to_hf_model

    # Weights larger than at initialisation, so that the logits are far from ties.
    model = tiny_gpt2(vocab_size=101, seed=3, initializer_range=0.3, tie_word_embeddings=tied)
    hf = to_hf_model(model)
    torch.manual_seed(0)
    prompts = [torch.randint(1, 101, (n,)).tolist() for n in (9, 4, 6)]
    ours = generate(model, prompts, max_new_tokens=20).token_ids
    # transformers' batch, left-padded the same way (pad id 0, masked out)
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=20,
                             pad_token_id=0, eos_token_id=None)
    assert ours == theirs[:, width:].tolist()
    for prompt, expected in zip(prompts, ours):  # and one prompt at a time
        with torch.no_grad():
            alone = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=20, pad_token_id=0,
                                eos_token_id=None)
        assert alone[0, len(prompt):].tolist() == expected


@pytest.mark.parametrize("eos, length_penalty, early_stopping", [(None, 1.0, False), (24, 2.0, False),
                                                                 (24, 0.0, True), (14, -1.0, False)])
def test_beam_search_equals_transformers(eos, length_penalty, early_stopping):
    from ptmzoo.interop.hf import to_hf_model

    model = tiny_gpt2(vocab_size=101, seed=3, initializer_range=0.3)
    hf = to_hf_model(model)
    torch.manual_seed(0)
    prompts = [torch.randint(1, 101, (n,)).tolist() for n in (9, 4, 6)]
    options = {"num_beams": 3, "max_new_tokens": 12, "length_penalty": length_penalty,
               "early_stopping": early_stopping}
    ours = generate(model, prompts, eos_token_id=eos, **options).token_ids
    for prompt, expected in zip(prompts, ours):
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([prompt]), do_sample=False, pad_token_id=0, eos_token_id=eos,
                                 **options)[0, len(prompt):].tolist()
        if eos in theirs:  # transformers pads after the EOS
            theirs = theirs[: theirs.index(eos) + 1]
        assert theirs == expected
