"""Continuous batching: rows that join and leave a running batch decode what they decode alone."""

import pytest
import torch

from ptmzoo.errors import UserError
from ptmzoo.generation import GenerationOptions, KVCache, generate
from ptmzoo.generation.continuous import (
    ContinuousBatch,
    batches_continuously,
    supports_continuous,
)
from ptmzoo.generation.decoding import CachedLM
from tests.generation.generation_helpers import tiny_gpt2


@pytest.fixture(scope="module")
def model():
    return tiny_gpt2(max_position_embeddings=40)


def _prompts(lengths, seed=5):
    torch.manual_seed(seed)
    return [torch.randint(1, 97, (n,)).tolist() for n in lengths]


def _run(batch, arrivals):
    """``arrivals``: (step, key, prompts, options); join at that step; every request's Generation."""
    done, step, arrivals = {}, 0, sorted(arrivals, key=lambda a: a[0])
    while len(batch) or arrivals:
        while arrivals and arrivals[0][0] <= step:
            _, key, prompts, options = arrivals.pop(0)
            batch.add(key, prompts, options)
        done.update(batch.step())
        step += 1
    return done


def test_cache_rows_appended_kept_and_compacted_give_the_logits_of_full_passes(model):
    a, b = _prompts((7, 3))
    with torch.no_grad():
        caches = []
        for ids in (a, b):
            cache = KVCache.for_backbone(model.backbone, 1, len(ids))
            model(torch.tensor([ids]), cache=cache)
            caches.append(cache)
        shared = KVCache.for_backbone(model.backbone, 0, 1)
        shared.append_rows(caches[1], 12)  # the short one first: the long one shifts it right
        shared.append_rows(caches[0], 12)
        assert shared.length == 7 and shared.batch_size == 2 and shared.valid.sum(1).tolist() == [3, 7]
        shared.keep_rows(torch.tensor([1, 0]))  # now a, b
        positions = torch.tensor([[7], [3]])
        step = model(torch.tensor([[11], [12]]), cache=shared, position_ids=positions).logits[:, -1]
        shared.keep_rows(torch.tensor([1]))  # a leaves: b's first 4 slot columns are unused
        assert shared.first_used_slot() == 4 and shared.compact(6) == 4 and shared.length == 4
        again = model(torch.tensor([[13]]), cache=shared, position_ids=torch.tensor([[4]])).logits[:, -1]
        full_a = model(torch.tensor([a + [11]])).logits[:, -1]
        full_b = model(torch.tensor([b + [12, 13]])).logits[:, -2:]
    torch.testing.assert_close(step, torch.cat([full_a, full_b[:, 0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(again, full_b[:, 1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="do not fit"):
        shared.compact(3)


def test_joining_rows_decode_the_tokens_of_a_run_alone(model):
    prompts, news = _prompts((3, 9, 5, 12, 2)), [6, 10, 4, 20, 25]
    alone = [generate(model, [p], max_new_tokens=k, ignore_eos=True).token_ids[0] for p, k in zip(prompts, news)]
    arrivals = [(at, i, [prompts[i]], GenerationOptions(max_new_tokens=news[i], ignore_eos=True))
                for i, at in enumerate((0, 0, 2, 5, 9))]
    batch = ContinuousBatch(model)
    done = _run(batch, arrivals)
    assert [done[i].token_ids[0] for i in range(5)] == alone
    assert [done[i].finish_reasons[0] for i in range(5)] == ["length"] * 5
    # a 12-token prompt that wants 20 more joined late behind rows that started at slot 0: the
    # write position reached the context of 40 and the cache was compacted to go on
    assert batch.compactions >= 1 and batch.cache.max_len <= 40
    assert len(batch) == 0 and batch.requests == {}


def test_rows_keep_their_own_sampling_options_and_seeds(model):
    prompts = _prompts((4, 6, 5, 3), seed=7)
    options = [{"max_new_tokens": 12, "temperature": 0.9, "seed": 3}, {"max_new_tokens": 8},
               {"max_new_tokens": 10, "top_k": 5, "top_p": 0.8, "seed": 4},
               {"max_new_tokens": 9, "repetition_penalty": 1.5}]
    alone = [generate(model, [p], ignore_eos=True, **o).token_ids[0] for p, o in zip(prompts, options)]
    arrivals = [(at, i, [prompts[i]], GenerationOptions(ignore_eos=True, **options[i]))
                for i, at in enumerate((0, 1, 3, 4))]
    first = _run(ContinuousBatch(model), arrivals)
    assert [first[i].token_ids[0] for i in range(4)] == alone  # seeded draws are those of a run alone
    # another seed, another text (the seed is really used)
    other = generate(model, [prompts[0]], ignore_eos=True, **{**options[0], "seed": 99}).token_ids[0]
    assert other != alone[0]


def test_a_request_of_several_prompts_and_eos(model):
    prompts = _prompts((5, 2, 8), seed=9)
    full = generate(model, [prompts[1]], max_new_tokens=6, ignore_eos=True).token_ids[0]
    eos = full[2]  # the second prompt ends early, at the first occurrence of this token
    alone = [generate(model, [p], max_new_tokens=6, eos_token_id=eos) for p in prompts]
    batch = ContinuousBatch(model)
    batch.add("early", [prompts[0]], GenerationOptions(max_new_tokens=3, ignore_eos=True))
    batch.step()
    batch.add("many", prompts, GenerationOptions(max_new_tokens=6, eos_token_id=eos))
    assert len(batch) == 4
    done = {}
    while len(batch):
        done.update(batch.step())
    assert done["many"].token_ids == [g.token_ids[0] for g in alone]
    assert done["many"].finish_reasons[1] == "eos" and len(done["many"].token_ids[1]) == full.index(eos) + 1
    assert len(done["early"].token_ids[0]) == 3


def test_remove_frees_the_rows_and_errors_add_nothing(model):
    prompts = _prompts((4, 4), seed=3)
    batch = ContinuousBatch(model)
    batch.add("gone", [prompts[0]], GenerationOptions(max_new_tokens=30, ignore_eos=True))
    batch.add("stays", [prompts[1]], GenerationOptions(max_new_tokens=5, ignore_eos=True))
    batch.step()
    batch.remove("gone")
    assert len(batch) == 1 and batch.cache.batch_size == 1
    with pytest.raises(UserError, match="context"):
        batch.add("long", [prompts[0] * 9], GenerationOptions(max_new_tokens=10))
    with pytest.raises(UserError, match="beam"):
        batch.add("beams", [prompts[0]], GenerationOptions(num_beams=2))
    assert set(batch.requests) == {"stays"}
    done = {}
    while len(batch):
        done.update(batch.step())
    expected = generate(model, [prompts[1]], max_new_tokens=5, ignore_eos=True).token_ids[0]
    assert list(done) == ["stays"] and done["stays"].token_ids[0] == expected


@pytest.mark.parametrize("family", ["transfo_xl", "t5", "unilm"])
def test_which_models_and_options_batch_continuously(model, family):
    from ptmzoo.catalog import build_model

    assert supports_continuous(model) and batches_continuously(GenerationOptions())
    assert not batches_continuously(GenerationOptions(num_beams=2))
    other = build_model(family, {"vocab_size": 50, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                 "intermediate_size": 64}, heads={"clm": {"kind": "clm"}} if family == "unilm" else {})
    assert not supports_continuous(other)
    with pytest.raises(UserError, match="cannot batch continuously"):
        ContinuousBatch(other)


def test_stop_strings_and_streamed_text(model, bpe_tokenizer):
    gpt = tiny_gpt2(bpe_tokenizer.vocab_size, seed=11, max_position_embeddings=64)
    prompts = ["Once upon a time", "The king said"]
    full = generate(gpt, prompts[1], bpe_tokenizer, max_new_tokens=12, ignore_eos=True).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = [generate(gpt, prompts[0], bpe_tokenizer, max_new_tokens=10, ignore_eos=True).text,
                generate(gpt, prompts[1], bpe_tokenizer, max_new_tokens=12, ignore_eos=True, stop=[stop])]
    pieces: dict[int, list[str]] = {0: [], 1: []}
    batch = ContinuousBatch(gpt, bpe_tokenizer)
    batch.add("a", [prompts[0]], GenerationOptions(max_new_tokens=10, ignore_eos=True),
              lambda index, piece: pieces[0].append(piece))
    batch.step()
    batch.add("b", [prompts[1]], GenerationOptions(max_new_tokens=12, ignore_eos=True, stop=[stop]),
              lambda index, piece: pieces[1].append(piece))
    done = {}
    while len(batch):
        done.update(batch.step())
    assert done["a"].texts == [expected[0]] and "".join(pieces[0]) == expected[0] and len(pieces[0]) >= 2
    assert done["b"].texts == expected[1].texts and done["b"].finish_reasons == ["stop"]
    assert "".join(pieces[1]) == expected[1].text and stop not in expected[1].text


def test_a_static_cache_keeps_its_rows(model):
    lm = CachedLM(model, 1, 4, static=True)
    with pytest.raises(ValueError, match="static"):
        lm.cache.keep_rows(torch.tensor([0]))
