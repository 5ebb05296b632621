import pytest
import torch
import torch.nn.functional as F

from ptmzoo.nn import losses
from ptmzoo.nn.losses import linear_cross_entropy


@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_cross_entropy_of_the_full_logits_in_value_and_gradients(with_bias, monkeypatch):
    monkeypatch.setattr(losses, "_CHUNK_BYTES", 4 * 300 * 64)  # force several chunks
    torch.manual_seed(0)
    hidden = torch.randn(333, 24, dtype=torch.float64, requires_grad=True)
    weight = (0.3 * torch.randn(300, 24, dtype=torch.float64)).requires_grad_()
    bias = torch.randn(300, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 300, (333,))
    targets[::7] = -100
    reference = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum", ignore_index=-100)
    expected = torch.autograd.grad(2.5 * reference, [hidden, weight] + ([bias] if with_bias else []))
    value = linear_cross_entropy(hidden, weight, bias, targets)
    got = torch.autograd.grad(2.5 * value, [hidden, weight] + ([bias] if with_bias else []))
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.double(), e, rtol=1e-5, atol=1e-6)


def test_no_grad_path_and_shapes():
    hidden = torch.randn(4, 5, 8)
    weight = torch.randn(11, 8)
    targets = torch.randint(0, 11, (4, 5))
    with torch.no_grad():
        value = linear_cross_entropy(hidden, weight, None, targets)
    reference = F.cross_entropy((hidden @ weight.T).flatten(0, 1), targets.flatten(), reduction="sum")
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
