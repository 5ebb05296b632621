"""Decoding one or two rows re-lays the weights input-major (nn/layout.py): same shapes,
same values, same tokens; more rows, training and saving get the usual layout back."""

import torch

from ptmzoo.checkpoint import write_model_files
from ptmzoo.generation import generate
from ptmzoo.nn.layout import use_standard_layout
from tests.generation.generation_helpers import tiny_gpt2


def _input_major(model) -> bool:
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]
    return all(w.t().is_contiguous() and not w.is_contiguous() for w in weights)


def test_one_row_decodes_input_major_with_the_same_tokens_and_more_rows_go_back():
    model = tiny_gpt2().eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12], [3, 4, 5, 6], [7, 7, 2, 1]]
    usual = generate(model, prompts[:1], max_new_tokens=12, ignore_eos=True).token_ids
    assert _input_major(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, before[name], rtol=0, atol=0)
    use_standard_layout(model)
    assert all(p.is_contiguous() for p in model.parameters())
    # the same tokens as each row computed with contiguous weights, which a 4-row batch keeps
    batched = generate(model, prompts, max_new_tokens=12, ignore_eos=True).token_ids
    assert all(p.is_contiguous() for p in model.parameters())
    assert batched[0] == usual[0]
    for prompt, row in zip(prompts[1:], batched[1:]):
        assert generate(model, [prompt], max_new_tokens=12, ignore_eos=True).token_ids[0] == row


def test_a_re_laid_model_saves_and_reloads_its_weights(tmp_path):
    from ptmzoo.loading import load

    model = tiny_gpt2().eval()
    generate(model, [[1, 2, 3]], max_new_tokens=2, ignore_eos=True)
    assert _input_major(model)
    write_model_files(str(tmp_path / "m"), model, None)
    reloaded = load(str(tmp_path / "m")).model
    for (name, param), (_, again) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(again, param, rtol=0, atol=0, msg=name)


def test_a_model_that_generated_can_be_trained():
    """Weights re-laid inside generation's inference mode must still take part in autograd."""
    model = tiny_gpt2().eval()
    generate(model, [[1, 2, 3]], max_new_tokens=2, ignore_eos=True)
    assert _input_major(model)
    model.train()
    out = model.backbone(torch.tensor([[1, 2, 3, 4]]))
    out.last_hidden_state.sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
