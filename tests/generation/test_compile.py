"""The static KV cache works under torch.compile: one compiled graph serves every decoding step
(no recompilation as the cache fills), and it gives the eager model's logits and tokens."""

import pytest
import torch

from ptmzoo.generation import generate
from ptmzoo.generation.decoding import CachedLM
from tests.generation.generation_helpers import tiny_gpt2


@pytest.mark.slow
def test_compiled_decoding_step_equals_eager_without_recompiling():
    model = tiny_gpt2(preset="gpt3-tiny", attention_window=4)  # dense and banded layers alternate
    torch._dynamo.reset()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]  # the second row is left-padded
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 13]])
    mask = (torch.arange(6) >= torch.tensor([[0], [3]])).long()
    eager_lm, compiled_lm = CachedLM(model, 2, 20, static=True), CachedLM(model, 2, 20, compiled=True)
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        torch.testing.assert_close(compiled_lm.prefill(ids, mask), eager_lm.prefill(ids, mask), rtol=0, atol=0)
        tokens = torch.tensor([3, 4])
        for _ in range(10):  # past the band of 4 keys: the banded layers' masks change step by step
            eager, compiled = eager_lm.step(tokens), compiled_lm.step(tokens)
            torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
            tokens = eager.argmax(-1)
    assert compiled_lm.cache.length == 16
    # generate(compile=True) compiles a step once, keeps it on the model and reuses it
    greedy = generate(model, prompts, max_new_tokens=8, static_cache=True)
    assert generate(model, prompts, max_new_tokens=8, compile=True).token_ids == greedy.token_ids
    other = [[7, 8], [9, 10, 11, 12]]
    with torch._dynamo.config.patch(error_on_recompile=True):
        again = generate(model, other, max_new_tokens=12, compile=True)
    assert again.token_ids == generate(model, other, max_new_tokens=12).token_ids
