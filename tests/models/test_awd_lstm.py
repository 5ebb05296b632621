"""AWD-LSTM: dropout placement, the carried state as a generation cache, BPT3C, recurrent perplexity."""

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.catalog import build_model
from ptmzoo.evaluation.perplexity import perplexity
from ptmzoo.generation.decoding import CachedLM, GenerationOptions, sampling_steps
from ptmzoo.objectives.clm import LMHead

TINY = {"vocab_size": 40, "hidden_size": 8, "lstm_size": 12, "num_layers": 3}


def awd(**changes):
    torch.manual_seed(0)
    model = build_model("awd_lstm", {**TINY, **changes})
    model.add_head("clm", LMHead)
    return model


def test_layers_hidden_states_tied_softmax_and_dropout_only_in_training():
    model = awd()
    ids = torch.randint(0, 40, (2, 9))
    out = model.backbone(ids, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 9, 8)
    assert [h.shape[-1] for h in out.hidden_states] == [8, 12, 12, 8]  # embeddings + 3 layers (last: tied width)
    assert model.heads["clm"].decoder.weight is model.backbone.embedding.weight
    assert not torch.allclose(model.backbone(ids).last_hidden_state, model.backbone(ids).last_hidden_state)
    model.eval()
    first, second = model.backbone(ids, output_hidden_states=True), model.backbone(ids)
    torch.testing.assert_close(first.last_hidden_state, second.last_hidden_state)
    torch.testing.assert_close(first.hidden_states[-1], first.last_hidden_state)
    assert model.backbone.causal and model.backbone.max_length is None


def test_causal():
    model = awd().eval()
    ids = torch.randint(0, 40, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 40
    a, b = model.backbone(ids).last_hidden_state, model.backbone(changed).last_hidden_state
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_generation_with_the_state_equals_rerunning_the_whole_text():
    """The state is the recurrent model's cache: a left-padded batch, one token per step, gives
    the argmax of a full forward pass over each prompt and its continuation."""
    model = awd().eval()
    prompts = [[5, 6, 7, 8], [9, 10]]
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    lm = CachedLM(model, 2, 16)
    steps = [tokens for tokens, _ in sampling_steps(lm, ids, mask, GenerationOptions(max_new_tokens=5))]
    generated = torch.stack(steps, 1).tolist()
    for prompt, continuation in zip(prompts, generated):
        text = list(prompt)
        for token in continuation:
            logits = model(torch.tensor([text])).logits[0, -1]
            assert int(logits.argmax()) == token
            text.append(token)


def test_bpt3c_reads_long_inputs_in_chunks_with_a_truncated_gradient():
    model = awd(bptt_chunk=4).eval()
    plain = awd().eval()
    ids = torch.randint(0, 40, (2, 11))
    torch.testing.assert_close(model.backbone(ids).last_hidden_state, plain.backbone(ids).last_hidden_state)
    embedding = model.backbone.embedding.weight
    out = model.backbone(ids)
    (grad,) = torch.autograd.grad(out.last_hidden_state[:, -1].sum(), embedding)
    first_chunk_only = set(ids[:, :8].flatten().tolist()) - set(ids[:, 8:].flatten().tolist())
    assert all(grad[token].abs().sum() == 0 for token in first_chunk_only)  # the state was detached
    (grad,) = torch.autograd.grad(plain.backbone(ids).last_hidden_state[:, -1].sum(), plain.backbone.embedding.weight)
    assert any(grad[token].abs().sum() > 0 for token in first_chunk_only)


def test_recurrent_perplexity_reads_the_text_once_with_the_state_carried():
    model = awd().eval()
    ids = torch.randint(0, 40, (300,)).tolist()
    result = perplexity(model, ids, context=16, batch_size=1)
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0]
    expected = F.cross_entropy(logits, torch.tensor(ids[1:]))
    assert result["scored_tokens"] == 299
    assert result["nll"] == pytest.approx(float(expected), rel=1e-5)
    two = perplexity(model, ids, context=16, batch_size=2)
    assert two["streams"] == 2 and two["scored_tokens"] == 2 * 149


def test_compile_is_refused_in_one_line_for_a_recurrent_model():
    from ptmzoo.errors import UserError
    from ptmzoo.generation import generate

    with pytest.raises(UserError, match="recurrent model keeps its state"):
        generate(awd(), [[1, 2, 3]], max_new_tokens=2, compile=True)
