"""Decoding: filters on hand-made logits, greedy against repeated full forwards, beam search on a
known case, stop strings and streaming."""

import itertools
import math

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS
from ptmzoo.errors import UserError
from ptmzoo.generation import (
    GenerationOptions,
    beam_search,
    choose_tokens,
    generate,
    repetition_penalty,
    stream,
    top_k_filter,
    top_p_filter,
)
from tests.generation.generation_helpers import TableLM, tiny_gpt2

INF = float("-inf")

@pytest.fixture(scope="module")
def model():
    return tiny_gpt2()


# ---- filters --------------------------------------------------------------------------------------
def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0], [0.0, 0.0, 1.0, 0.0, 2.0]])
    kept = top_k_filter(logits, 2)
    assert kept[0].tolist() == [INF, 5.0, INF, INF, 4.0]
    assert kept[1].tolist() == [INF, INF, 1.0, INF, 2.0]
    assert torch.equal(top_k_filter(logits, 0), logits) and torch.equal(top_k_filter(logits, 5), logits)


@pytest.mark.parametrize("p, kept", [(0.45, {0}), (0.7, {0, 1}), (0.81, {0, 1, 2}), (0.97, {0, 1, 2, 3}),
                                     (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    order = torch.tensor([2, 0, 3, 1])  # shuffled, so that the filter has to sort
    logits = probs[order].log()[None]
    filtered = top_p_filter(logits, p)[0]
    survivors = {int(order[i]) for i in range(4) if filtered[i] > INF}
    assert survivors == kept
    mass = sum(probs[i].item() for i in kept)
    assert mass >= p - 1e-6 and mass - min(probs[i].item() for i in kept) < p  # reaches p, and minimal
    renormalised = filtered.softmax(-1)
    for i in range(4):
        expected = probs[order[i]].item() / mass if int(order[i]) in kept else 0.0
        assert renormalised[i].item() == pytest.approx(expected, abs=1e-6)


def test_sampling_draws_from_the_filtered_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    options = GenerationOptions(top_p=0.7)  # keeps tokens 0 and 1: 5/8 and 3/8
    draws = choose_tokens(probs.log().expand(4000, -1), options, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4) / 4000
    assert counts[2] == 0 and counts[3] == 0
    assert counts[0].item() == pytest.approx(5 / 8, abs=0.03)
    top1 = choose_tokens(probs.log().expand(4000, -1), GenerationOptions(top_k=1))
    assert (top1 == 0).all()  # top-k 1 is greedy


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(6000, -1)
    rng = torch.Generator().manual_seed(0)
    cold = choose_tokens(logits, GenerationOptions(temperature=0.25), generator=rng)
    hot = choose_tokens(logits, GenerationOptions(temperature=4.0), generator=rng)
    expected_cold = torch.softmax(torch.tensor([8.0, 4.0, 0.0]), -1)[0].item()
    assert (cold == 0).float().mean().item() == pytest.approx(expected_cold, abs=0.02)
    assert (hot == 0).float().mean().item() == pytest.approx(torch.softmax(torch.tensor([0.5, 0.25, 0.0]), -1)[0].item(),
                                                             abs=0.03)
    assert torch.equal(choose_tokens(logits[:2], GenerationOptions(temperature=0)), torch.tensor([0, 0]))


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, -0.5, 3.0]])
    seen = torch.tensor([[True, True, False, False, True]])
    assert repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -2.0, 0.5, -0.5, 1.5]]
    # penalty 2: 4 (3.0 -> 1.5) still wins; penalty 10: 4 (-> 0.3) loses to the unseen 2 (0.5)
    assert choose_tokens(logits, GenerationOptions(repetition_penalty=2.0), seen).item() == 4
    assert choose_tokens(logits, GenerationOptions(repetition_penalty=10.0), seen).item() == 2


def test_invalid_options_are_user_errors():
    for bad in [{"top_p": 0}, {"top_p": 1.5}, {"temperature": -1}, {"max_new_tokens": 0}, {"num_beams": 0},
                {"repetition_penalty": 0}, {"stop": [""]}, {"num_beams": 2, "temperature": 0.7}]:
        with pytest.raises(UserError):
            GenerationOptions(**bad)


# ---- greedy and sampling with a model ---------------------------------------------------------------
def test_greedy_equals_argmax_of_repeated_full_forwards(model):
    torch.manual_seed(4)
    prompts = [torch.randint(0, 97, (n,)).tolist() for n in (7, 3, 11)]
    result = generate(model, prompts, max_new_tokens=12)
    for prompt, new in zip(prompts, result.token_ids):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(12):
                ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        assert new == ids[len(prompt):]
    assert result.finish_reasons == ["length"] * 3 and result.texts is None
    static = generate(model, prompts, max_new_tokens=12, static_cache=True)
    assert static.token_ids == result.token_ids


def test_seeded_sampling_is_reproducible_and_eos_ends_a_row(model):
    prompts = [[1, 2, 3], [4, 5]]
    a = generate(model, prompts, max_new_tokens=20, temperature=1.5, seed=7)
    b = generate(model, prompts, max_new_tokens=20, temperature=1.5, generator=torch.Generator().manual_seed(7))
    assert a.token_ids == b.token_ids
    assert a.token_ids != generate(model, prompts, max_new_tokens=20, temperature=1.5, seed=8).token_ids
    eos = a.token_ids[0][5]
    ended = generate(model, prompts, max_new_tokens=20, temperature=1.5, seed=7, eos_token_id=eos)
    first = a.token_ids[0].index(eos)
    assert ended.token_ids[0] == a.token_ids[0][: first + 1] and ended.finish_reasons[0] == "eos"


def test_repetition_penalty_in_generation(model):
    prompts = [[3, 1, 4, 1, 5], [9, 2, 6]]
    result = generate(model, prompts, max_new_tokens=15, repetition_penalty=1.8)
    for prompt, new in zip(prompts, result.token_ids):
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(15):
                logits = model(torch.tensor([ids])).logits[0, -1]
                for token in set(ids):  # every token of the text so far, prompt included, once
                    logits[token] = logits[token] / 1.8 if logits[token] > 0 else logits[token] * 1.8
                ids.append(int(logits.argmax()))
        assert new == ids[len(prompt):]
    assert result.token_ids != generate(model, prompts, max_new_tokens=15).token_ids


def test_context_overflow_and_missing_head_are_user_errors(model):
    with pytest.raises(UserError, match="exceed the model's context of 128"):
        generate(model, [[1] * 100], max_new_tokens=29)
    from ptmzoo.catalog import build_backbone
    from ptmzoo.models.model import PtmModel

    bert = PtmModel("bert", build_backbone("bert", {"vocab_size": 50, "hidden_size": 16, "num_layers": 1,
                                                    "num_heads": 2, "intermediate_size": 32}))
    bert.add_head("mlm", HEADS["mlm"])
    with pytest.raises(UserError, match="cannot generate text.*heads: mlm"):
        generate(bert, [[1, 2]])
    headless = tiny_gpt2()
    del headless.heads["clm"]
    with pytest.raises(UserError, match="causal LM head"):
        generate(headless, [[1, 2]])


# ---- beam search ----------------------------------------------------------------------------------
EOS, A, B, C, S = 0, 1, 2, 3, 4


def _table(rows: dict[int, list[float]], vocab: int = 5) -> torch.Tensor:
    table = torch.full((vocab, vocab), 1e-6)
    for token, probs in rows.items():
        table[token] = torch.tensor(probs)
    return table / table.sum(-1, keepdim=True)


def test_beam_search_finds_the_best_sequence_where_greedy_does_not():
    # After S, A is likelier than B, but B is almost surely followed by EOS: S B EOS (0.36) beats S A EOS (0.175).
    table = _table({S: [0.0, 0.5, 0.4, 0.05, 0.05], A: [0.35, 0.1, 0.2, 0.2, 0.15], B: [0.9, 0.025, 0.025, 0.025, 0.025]})
    prompt, mask = torch.tensor([[S]]), torch.ones(1, 1, dtype=torch.long)
    greedy = list(itertools.islice((int(t) for t, _ in _greedy(table, prompt, mask)), 2))
    assert greedy == [A, EOS]
    assert beam_search(TableLM(table), prompt, mask, GenerationOptions(num_beams=2, max_new_tokens=5), EOS) == [[B, EOS]]


def _greedy(table, prompt, mask):
    from ptmzoo.generation import sampling_steps

    return sampling_steps(TableLM(table), prompt, mask, GenerationOptions(max_new_tokens=5), EOS)


def test_length_penalty_decides_between_short_and_long():
    # S EOS has p = 0.45; S A EOS has p = 0.55 * 0.7 = 0.385: better only per token.
    table = _table({S: [0.45, 0.55, 0.0, 0.0, 0.0], A: [0.7, 0.1, 0.1, 0.1, 0.0]})
    prompt, mask = torch.tensor([[S]]), torch.ones(1, 1, dtype=torch.long)

    def best(alpha):
        options = GenerationOptions(num_beams=2, max_new_tokens=4, length_penalty=alpha)
        return beam_search(TableLM(table), prompt, mask, options, EOS)[0]

    assert best(0.0) == [EOS]
    assert best(1.0) == [A, EOS]


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_wide_beam_search_equals_exhaustive_search(alpha):
    """With as many beams as sequences, beam search must return the best-scoring sequence."""
    torch.manual_seed(int(10 * alpha))
    vocab, steps = 4, 3
    table = torch.rand(vocab, vocab) ** 3 + 0.01
    table /= table.sum(-1, keepdim=True)
    prompt, mask = torch.tensor([[1, 2], [3, 1]]), torch.ones(2, 2, dtype=torch.long)
    found = beam_search(TableLM(table), prompt, mask, GenerationOptions(num_beams=vocab ** steps,
                                                                        max_new_tokens=steps, length_penalty=alpha), 0)
    for row, last in enumerate([2, 1]):
        candidates = []
        for n in range(1, steps + 1):
            for seq in itertools.product(range(vocab), repeat=n):
                if 0 in seq[:-1] or (n < steps and seq[-1] != 0):
                    continue  # EOS only at the end; shorter than max only when ended by EOS
                logp = sum(math.log(table[prev, tok]) for prev, tok in zip((last,) + seq[:-1], seq))
                candidates.append((logp / n ** alpha, list(seq)))
        assert found[row] == max(candidates)[1]


def test_beam_search_through_generate_with_the_model(model):
    prompts = [[5, 6, 7], [8, 9]]
    one_beam = generate(model, prompts, max_new_tokens=6, num_beams=1)
    beams = generate(model, prompts, max_new_tokens=6, num_beams=4)
    wide = generate(model, prompts[1:], max_new_tokens=6, num_beams=4)
    assert beams.token_ids[1] == wide.token_ids[0]  # batching does not change a prompt's result
    for p, seq, greedy in zip(prompts, beams.token_ids, one_beam.token_ids):
        assert len(seq) == 6 and _logprob(model, p, seq) >= _logprob(model, p, greedy) - 1e-5


def _logprob(model, prompt, new):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + new])).logits[0, len(prompt) - 1:-1]
    return logits.log_softmax(-1).gather(1, torch.tensor(new)[:, None]).sum().item()


# ---- text: stop strings, streaming ----------------------------------------------------------------
@pytest.fixture(scope="module")
def text_model(bpe_tokenizer):
    from ptmzoo.checkpoint import Pretrained

    return Pretrained(tiny_gpt2(bpe_tokenizer.vocab_size, seed=5), bpe_tokenizer, {}, "")


def test_stop_strings_cut_the_text_and_the_tokens(text_model):
    tokenizer = text_model.tokenizer
    full = ptmzoo.generate(text_model, "The history of", max_new_tokens=20, ignore_eos=True)
    text = full.text
    assert text and full.finish_reasons == ["length"]
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = ptmzoo.generate(text_model, "The history of", max_new_tokens=20, stop=["@@never", stop], ignore_eos=True)
    assert cut.text == text[: text.index(stop)] and cut.finish_reasons == ["stop"]
    ids = cut.token_ids[0]
    assert ids == full.token_ids[0][: len(ids)]  # the same tokens, up to the one that completed the stop string
    assert stop in tokenizer.decode(ids) and stop not in tokenizer.decode(ids[:-1])


def test_streamed_pieces_add_up_to_the_text(text_model):
    for options in [{}, {"top_p": 0.9, "seed": 3}, {"num_beams": 3}]:
        pieces = []
        result = ptmzoo.generate(text_model, ["A", "The history of"], max_new_tokens=15, ignore_eos=True,
                                 on_text=lambda i, piece, pieces=pieces: pieces.append((i, piece)), **options)
        for i, text in enumerate(result.texts):
            assert "".join(piece for j, piece in pieces if j == i) == text
        if not options:
            assert len(pieces) > 2  # greedy and sampling stream while generating
        alone = ptmzoo.generate(text_model, "A", max_new_tokens=15, ignore_eos=True, **options).text
        assert "".join(stream(text_model, "A", max_new_tokens=15, ignore_eos=True, **options)) == alone
    sampled = {"top_p": 0.9, "seed": 3, "max_new_tokens": 15, "ignore_eos": True}
    text = ptmzoo.generate(text_model, "A", **sampled).text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    streamed = "".join(stream(text_model, "A", stop=stop, **sampled))
    assert streamed == text[: text.index(stop)]  # nothing past or of the stop string was shown


def test_empty_prompt_and_batch_of_texts(text_model):
    result = ptmzoo.generate(text_model, ["", "The history of philosophy is long"], max_new_tokens=5, ignore_eos=True)
    assert [len(ids) for ids in result.token_ids] == [5, 5]
    alone = ptmzoo.generate(text_model, "The history of philosophy is long", max_new_tokens=5, ignore_eos=True)
    assert alone.token_ids[0] == result.token_ids[1]  # left padding does not change the continuation


def test_streaming_holds_back_a_possible_stop_string(bpe_tokenizer):
    from ptmzoo.generation.decoding import _Continuations

    ids = bpe_tokenizer.encode("the history of the world, in brief", add_special_tokens=False)
    rows = _Continuations([[]], bpe_tokenizer, None, ["world, in X", "in brief"], live=True)
    shown = []
    for token in ids:
        ended = rows.add(0, token)
        shown.append(rows.new_text(0))
        if ended:
            break
    rows.finish()
    shown.append(rows.new_text(0))
    assert "".join(shown) == rows.texts[0] == "the history of the world, "
    assert rows.reasons == ["stop"] and bpe_tokenizer.decode(rows.ids[0]).endswith("in brief")
