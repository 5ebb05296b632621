"""ELMo: characters of each token, the character CNN and highway layers, the biLSTM's shapes and
directions, the tied bidirectional softmax and the scalar mix of its layers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptmzoo.catalog import build_model
from ptmzoo.data.derived import BOW, EOW, SPECIAL, char_ids, character_table
from ptmzoo.finetune.strategies import LayerMixHead
from ptmzoo.models.elmo import CharacterEncoder, ElmoConfig, Highway
from ptmzoo.objectives.bilm import BidirectionalLM, BiLMHead
from ptmzoo.tasks.classification import ClassificationHead

TINY = {"vocab_size": 60, "hidden_size": 16, "lstm_size": 24, "num_layers": 2, "filters": [[1, 4], [2, 6], [3, 8]],
        "num_highway": 2, "max_chars": 12, "dropout": 0.0}


def elmo(**changes):
    torch.manual_seed(0)
    model = build_model("elmo", {**TINY, **changes})
    model.add_head("bilm", BiLMHead)
    return model.eval()


def chars(batch=2, length=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 259, (batch, length, TINY["max_chars"]), generator=generator)


def test_shapes_layers_and_the_token_layer():
    model = elmo()
    out = model(chars(), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 7, 16)
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 7, 16) for h in out.hidden_states)
    token = out.hidden_states[0]
    torch.testing.assert_close(token[..., :8], token[..., 8:])  # [x; x], as AllenNLP
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.logits.shape == (2, 7, 2, 60)


def test_highway_layer_against_its_formula():
    torch.manual_seed(0)
    highway = Highway(5, 1)
    x = torch.randn(3, 5)
    weight, bias = highway.layers[0].weight, highway.layers[0].bias
    nonlinear = F.relu(x @ weight[:5].T + bias[:5])
    gate = torch.sigmoid(x @ weight[5:].T + bias[5:])
    torch.testing.assert_close(highway(x), gate * x + (1 - gate) * nonlinear)
    assert torch.equal(bias[5:], torch.ones(5))  # gates start open to the input (carry)


def test_character_cnn_max_pools_each_filter_over_the_characters():
    config = ElmoConfig(**TINY)
    torch.manual_seed(0)
    encoder = CharacterEncoder(config)
    ids = chars(1, 3)[0]
    expected = []
    embedded = encoder.embedding(ids)  # [tokens, chars, dim]
    for (width, count), conv in zip(config.filters, encoder.convolutions):
        windows = embedded.unfold(1, width, 1)  # [tokens, positions, dim, width]
        scores = torch.einsum("tpdw,fdw->tpf", windows, conv.weight) + conv.bias
        assert scores.shape[-1] == count
        expected.append(F.relu(scores.max(dim=1).values))
    expected = encoder.projection(encoder.highway(torch.cat(expected, -1)))
    torch.testing.assert_close(encoder(ids), expected, atol=1e-5, rtol=1e-5)


def test_forward_and_backward_lms_read_their_own_direction():
    model = elmo()
    ids, changed = chars(1, 9), chars(1, 9, seed=1)
    changed[0, :4] = ids[0, :4]
    changed[0, 5:] = ids[0, 5:]  # only token 4 differs
    a, b = model.backbone(ids).last_hidden_state, model.backbone(changed).last_hidden_state
    half = 8
    torch.testing.assert_close(a[0, :4, :half], b[0, :4, :half])  # forward: before 4 unchanged
    torch.testing.assert_close(a[0, 5:, half:], b[0, 5:, half:])  # backward: after 4 unchanged
    assert not torch.allclose(a[0, 5:, :half], b[0, 5:, :half])
    assert not torch.allclose(a[0, :4, half:], b[0, :4, half:])


def test_padding_does_not_change_real_tokens_in_either_direction():
    model = elmo()
    ids = chars(2, 8)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    padded = model.backbone(ids, mask, output_hidden_states=True)
    alone = model.backbone(ids[1:, :5], output_hidden_states=True)
    for p, a in zip(padded.hidden_states, alone.hidden_states):
        torch.testing.assert_close(p[1, :5], a[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(p[1, 5:], torch.zeros_like(p[1, 5:]))


def test_the_softmax_is_tied_between_directions_and_the_loss_is_both_lms():
    model = elmo()
    head = model.heads["bilm"]
    assert [name for name, _ in head.named_parameters()] == ["softmax.weight", "softmax.bias"]  # one layer for both
    ids = chars(2, 6)
    labels = torch.randint(0, 60, (2, 6))
    labels[1, 4:] = -100
    mask = (labels != -100).long()
    out = model.backbone(ids, mask)
    forward, backward = out.last_hidden_state.chunk(2, -1)
    logits_f, logits_b = head.softmax(forward), head.softmax(backward)
    expected = 0
    for row, length in ((0, 6), (1, 4)):  # forward: t predicts t + 1; backward: t predicts t - 1
        expected = expected + F.cross_entropy(logits_f[row, : length - 1], labels[row, 1:length], reduction="sum")
        expected = expected + F.cross_entropy(logits_b[row, 1:length], labels[row, : length - 1], reduction="sum")
    batch = {"lm_labels": labels}
    torch.testing.assert_close(head.loss_sum(out, batch), expected, atol=1e-4, rtol=1e-5)
    assert int(head.count_targets(batch)) == 2 * (5 + 3)


def test_scalar_mix_weights_every_layer_with_gamma():
    model = elmo()
    model.add_head("cls", ClassificationHead, num_labels=3, pooling="mean", dropout=0.0)
    mixed = LayerMixHead(model.backbone, ClassificationHead, {"num_labels": 3, "pooling": "mean", "dropout": 0.0})
    model.heads["cls"] = mixed
    with torch.no_grad():
        mixed.mix_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
        mixed.gamma.fill_(0.7)
    ids = chars()
    out = model.backbone(ids, output_hidden_states=True)
    weights = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0)
    expected = 0.7 * sum(w * h for w, h in zip(weights, out.hidden_states))
    torch.testing.assert_close(mixed.features(out), expected)
    logits = model(ids).head_logits["cls"]
    logits.sum().backward()
    assert mixed.mix_logits.grad.abs().sum() > 0 and mixed.gamma.grad is not None


def test_scalar_mix_with_layer_norm_mixes_normalised_layers_of_any_scale():
    model = elmo()
    head = LayerMixHead(model.backbone, ClassificationHead, {"num_labels": 2, "pooling": "mean", "dropout": 0.0},
                        layer_norm=True)
    out = model.backbone(chars(), output_hidden_states=True)
    scaled = type(out)(out.last_hidden_state, None, (out.hidden_states[0] * 1000, *out.hidden_states[1:]))
    def normalised(h):
        return (h - h.mean(-1, keepdim=True)) / (h.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()

    expected = sum(normalised(h) for h in out.hidden_states) / 3  # equal weights, gamma 1 at first
    torch.testing.assert_close(head.features(out), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(head.features(scaled), expected, atol=1e-3, rtol=1e-3)  # the scale is gone
    assert head.options["layer_norm"] is True  # saved with the head, rebuilt on load


def test_character_ids_of_wordpiece_and_byte_level_tokens(wordpiece_tokenizer, bpe_tokenizer):
    table = character_table(wordpiece_tokenizer, 12)
    word = wordpiece_tokenizer.backend.token_to_id("the")
    assert table[word, :5].tolist() == [BOW, ord("t") + 1, ord("h") + 1, ord("e") + 1, EOW]
    piece = next(i for t, i in wordpiece_tokenizer.backend.get_vocab().items() if t.startswith("##") and len(t) == 4)
    text = wordpiece_tokenizer.backend.id_to_token(piece)[2:]
    assert table[piece, :3].tolist() == [ord(text[0]) + 1, ord(text[1]) + 1, EOW]  # continuation: no BOW
    cls = wordpiece_tokenizer.cls_id
    assert table[cls, :2].tolist() == [BOW, SPECIAL]
    bpe = character_table(bpe_tokenizer, 12)
    spaced = bpe_tokenizer.backend.token_to_id("Ġthe")
    assert bpe[spaced, :5].tolist() == [BOW, ord("t") + 1, ord("h") + 1, ord("e") + 1, EOW]
    batch = {"input_ids": np.array([[word, piece, 0]]), "attention_mask": np.array([[1, 1, 0]])}
    derived = char_ids(batch, wordpiece_tokenizer, 12)
    assert derived.shape == (1, 3, 12) and not derived[0, 2].any()
    assert np.array_equal(derived[0, 0], table[word])


def test_bilm_labels_and_characters_come_from_the_collator(wordpiece_tokenizer):
    from ptmzoo.objectives import PretrainCollator

    objective = BidirectionalLM(None, wordpiece_tokenizer)
    collate = PretrainCollator([objective], 0, {"char_ids": {"max_chars": 50}}, wordpiece_tokenizer)
    batch = collate([{"input_ids": np.array([5, 6, 7]), "index": 0, "epoch": 0},
                     {"input_ids": np.array([8, 9]), "index": 1, "epoch": 0}])
    assert batch["char_ids"].shape == (2, 3, 50)
    assert batch["lm_labels"].tolist() == [[5, 6, 7], [8, 9, -100]]
    model = build_model("elmo", {**TINY, "vocab_size": wordpiece_tokenizer.vocab_size, "max_chars": 50})
    objective.attach(model)
    out = model(**model.select_inputs(batch), targets=batch)
    assert out.loss.item() > 0 and set(out.loss_sums) == {"bilm"}


def test_elmo_refuses_a_token_embedding_in_one_line():
    from ptmzoo.errors import UserError

    with pytest.raises(UserError, match="reads characters"):
        _ = elmo().backbone.input_embeddings
