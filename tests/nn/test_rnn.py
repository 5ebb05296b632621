"""The recurrent building blocks: weight drop, locked and embedding dropout, padding-aware LSTM runs."""

import torch
from torch import nn

from ptmzoo.nn.rnn import (
    BidirectionalLSTM,
    LockedDropout,
    LSTMLayer,
    RecurrentState,
    embedding_dropout,
)


def test_weight_drop_really_drops_hidden_to_hidden_weights_in_training_only():
    torch.manual_seed(0)
    layer = LSTMLayer(6, 10, weight_dropout=0.5)
    x = torch.randn(3, 7, 6)
    plain = nn.LSTM(6, 10, batch_first=True)
    plain.load_state_dict(layer.lstm.state_dict())
    layer.eval()  # no drop: exactly the LSTM with its own weights, every time
    torch.testing.assert_close(layer(x)[0], plain(x)[0])
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    out, _ = layer(x)
    assert not torch.allclose(out, plain(x)[0])
    out.sum().backward()
    grad = layer.lstm.weight_hh_l0.grad
    dropped = (grad == 0).float().mean().item()
    assert 0.4 < dropped < 0.6  # DropConnect: about half of W_hh takes no part (and gets no gradient)
    assert (layer.lstm.weight_ih_l0.grad != 0).float().mean() > 0.95  # the input weights are not dropped
    # one mask per call, shared by every time step and sequence: redo the call with that mask by hand
    torch.manual_seed(1)
    first, _ = layer(x)
    torch.manual_seed(1)
    mask = torch.nn.functional.dropout(torch.ones_like(layer.lstm.weight_hh_l0), 0.5, training=True)
    with torch.no_grad():
        plain.weight_hh_l0.copy_(layer.lstm.weight_hh_l0 * mask)
    torch.testing.assert_close(first, plain(x)[0])


def test_locked_dropout_uses_one_mask_for_all_time_steps():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    x = torch.ones(4, 9, 32)
    out = drop(x)
    assert torch.equal(out, out[:, :1].expand_as(out))  # constant over time
    assert not torch.equal(out[0], out[1])  # a mask per sequence
    assert set(out.unique().tolist()) <= {0.0, 2.0} and 0.3 < (out == 0).float().mean() < 0.7
    drop.eval()
    assert torch.equal(drop(x), x)


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    embedding = nn.Embedding(50, 8)
    ids = torch.tensor([[3, 3, 7, 3, 9] * 4])
    out = embedding_dropout(embedding, ids, 0.5, training=True)
    zero = (out == 0).all(-1)[0]
    for word in (3, 7, 9):  # every occurrence of a word shares its fate
        assert len(set(zero[ids[0] == word].tolist())) == 1
    kept = ~zero
    torch.testing.assert_close(out[0, kept], 2 * embedding(ids)[0, kept])
    torch.testing.assert_close(embedding_dropout(embedding, ids, 0.5, training=False), embedding(ids))


def test_padding_is_skipped_and_the_state_is_after_the_last_real_token():
    torch.manual_seed(0)
    layer = LSTMLayer(4, 5).eval()
    x = torch.randn(2, 6, 4)
    alone_out, (alone_h, alone_c) = layer(x[:1, 2:])
    left = torch.ones(2, 6, dtype=torch.long)
    left[0, :2] = 0  # row 0 left-padded (a generation prompt)
    out, (h, c) = layer(x, mask=left)
    torch.testing.assert_close(out[0, 2:], alone_out[0])
    assert torch.equal(out[0, :2], torch.zeros(2, 5))
    torch.testing.assert_close(h[0], alone_h[0])
    torch.testing.assert_close(c[0], alone_c[0])
    right = torch.ones(2, 6, dtype=torch.long)
    right[1, 4:] = 0
    out, (h, _) = layer(x, mask=right)
    torch.testing.assert_close(h[1], layer(x[1:, :4])[1][0][0])


def test_reverse_reads_each_row_right_to_left_within_its_length():
    torch.manual_seed(0)
    layer = LSTMLayer(4, 5).eval()
    x = torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 3:] = 0
    out, _ = layer(x, mask=mask, reverse=True, final_state=False)
    for row, length in ((0, 6), (1, 3)):
        expected = layer(x[row : row + 1, :length].flip(1))[0].flip(1)
        torch.testing.assert_close(out[row, :length], expected[0])
    bidirectional = BidirectionalLSTM(4, 5).eval()
    both = bidirectional(x, mask)
    assert both.shape == (2, 6, 10) and torch.equal(both[1, 3:], torch.zeros(3, 10))


def test_a_carried_state_continues_the_sequence():
    torch.manual_seed(0)
    layer = LSTMLayer(4, 5).eval()
    x = torch.randn(2, 8, 4)
    whole, _ = layer(x)
    first, state = layer(x[:, :5])
    second, _ = layer(x[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    carried = RecurrentState(1)
    carried.layers[0] = state
    carried.reorder(torch.tensor([1, 0]))
    assert torch.equal(carried.layers[0][0], state[0].flip(0))
