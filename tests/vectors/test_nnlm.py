"""Bengio et al.'s NNLM: the windows, the shapes, the loss of y = b + Wx + U tanh(d + Hx), and
training that lowers it."""

import numpy as np
import pytest
import torch

from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
from ptmzoo.vectors.nnlm import NNLM, NNLMNetwork, NNLMOptions, windows
from ptmzoo.vectors.train import train_vectors
from tests.vectors.helpers import topic_corpus, topic_separation


def test_windows_hold_the_previous_words_and_pad_at_sentence_starts():
    ids = np.asarray([5, 6, 7, 8, 9], np.int32)
    contexts, targets = windows(ids, np.asarray([3, 5]), context=2, pad=99)
    assert targets.tolist() == [5, 6, 7, 8, 9]
    assert contexts.tolist() == [[99, 99], [99, 5], [5, 6], [99, 99], [99, 8]]


@pytest.mark.parametrize("direct", [True, False])
def test_shapes_and_loss_follow_the_paper(direct):
    torch.manual_seed(0)
    V, m, n1, h = 11, 4, 3, 5
    net = NNLMNetwork(V, m, n1, h, direct)
    contexts = torch.tensor([[V, 2, 3], [1, 2, 3], [V, V, 0]])
    targets = torch.tensor([4, 0, 10])
    logits = net(contexts)
    assert logits.shape == (3, V) and net.C.weight.shape == (V + 1, m)
    x = net.C.weight[contexts].reshape(3, n1 * m)  # the features concatenated
    y = net.U.bias + torch.tanh(net.H.bias + x @ net.H.weight.T) @ net.U.weight.T
    if direct:
        net.W.weight.data.normal_()  # zero at initialisation: make the direct path count
        y = y + x @ net.W.weight.T
        logits = net(contexts)
    assert torch.allclose(logits, y, atol=1e-6)
    expected = -torch.log_softmax(y, dim=1)[torch.arange(3), targets].mean()
    assert torch.allclose(net.loss(contexts, targets), expected, atol=1e-6)
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters == (V + 1) * m + (n1 * m * h + h) + (h * V + V) + (n1 * m * V if direct else 0)


def test_training_lowers_the_loss_and_learns_topics(tmp_path):
    path = topic_corpus(tmp_path / "c.txt", sentences=1500)
    corpus = LineCorpus(path)
    model = NNLM(Vocabulary.build(corpus, 1), NNLMOptions(dim=16, context=3, hidden=32, epochs=4, workers=1,
                                                          batch_size=64))
    report = model.train(corpus, progress=False)
    losses = report["epoch_losses"]
    assert losses[-1] < losses[0] < np.log(24) + 0.1  # below a uniform guess over the 24 words, and falling
    vectors, _ = train_vectors("nnlm", path, dim=16, context=3, hidden=32, epochs=4, batch_size=64, min_count=1,
                               workers=1, progress=False)
    assert vectors.matrix.shape == (24, 16) and topic_separation(vectors) > 0.2
