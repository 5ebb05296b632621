"""ERNIE-THU backbone: T-Encoder of BERT layers, K-Encoder of aggregators whose information fusion
adds W_e·e inside the feed-forward activation only where an entity is aligned; runs without
entities (then it is BERT); entity attention stays within packed documents; frozen entity table;
presets with exact parameter counts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptmzoo.catalog import count_parameters
from ptmzoo.errors import UserError
from ptmzoo.models.bert import BertLayer
from ptmzoo.models.ernie import ErnieConfig, ErnieModel, entity_attention_mask
from ptmzoo.nn import padding_mask
from ptmzoo.presets import PRESETS, get_preset


def tiny(**changes) -> ErnieModel:
    config = ErnieConfig(vocab_size=50, hidden_size=32, num_layers=3, knowledge_layers=2, num_heads=2,
                         intermediate_size=64, num_entities=11, entity_size=8, entity_heads=2, hidden_dropout=0.0,
                         attention_dropout=0.0, max_position_embeddings=64)
    torch.manual_seed(0)
    model = ErnieModel(dataclasses.replace(config, **changes))
    model.set_entity_vectors(torch.randn(10, 8))
    return model.eval()


def inputs(length: int = 12):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (2, length), generator=generator)
    entities = torch.zeros(2, length, dtype=torch.long)
    entities[0, 2], entities[0, 7], entities[1, 4] = 3, 9, 5
    return ids, entities


def test_layers_outputs_and_hidden_states():
    model = tiny()
    assert len(model.layers) == 1 and len(model.aggregators) == 2
    assert model.aggregators[0].entity_out is not None and model.aggregators[1].entity_out is None
    ids, entities = inputs()
    out = model(ids, entity_ids=entities, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 12, 32) and out.pooler_output.shape == (2, 32)
    assert len(out.hidden_states) == model.config.num_layers + 1  # embeddings + every layer (layer mixes)


def test_entities_enter_only_the_knowledge_encoder_and_none_equals_all_zero():
    model = tiny()
    ids, entities = inputs()
    plain = model(ids, output_hidden_states=True)
    zero = model(ids, entity_ids=torch.zeros_like(entities), output_hidden_states=True)
    fused = model(ids, entity_ids=entities, output_hidden_states=True)
    assert torch.allclose(plain.last_hidden_state, zero.last_hidden_state, atol=1e-6)
    for layer in range(2):  # embeddings and the T-Encoder layer never see entities
        assert torch.equal(plain.hidden_states[layer], fused.hidden_states[layer])
    assert not torch.allclose(plain.hidden_states[2], fused.hidden_states[2], atol=1e-4)


def test_aggregator_is_a_bert_layer_where_nothing_is_aligned_and_fuses_where_something_is():
    model = tiny()
    aggregator = model.aggregators[0]
    bert = BertLayer(model.config)
    bert.load_state_dict({k: v for k, v in aggregator.state_dict().items() if k in bert.state_dict()})
    bert.eval()
    torch.manual_seed(2)
    x, e = torch.randn(1, 6, 32), torch.randn(1, 6, 8)
    aligned = torch.zeros(1, 6, dtype=torch.bool)
    aligned[0, [1, 4]] = True
    mask = padding_mask(None)
    out, entity_out = aggregator(x, mask, e, entity_attention_mask(aligned, mask), aligned[..., None].float())
    expected = bert(x, mask)
    assert torch.allclose(out[0, ~aligned[0]], expected[0, ~aligned[0]], atol=1e-5)
    assert not torch.allclose(out[0, aligned[0]], expected[0, aligned[0]], atol=1e-3)
    # h = gelu(W_t w~ + b + W_e e~) at aligned positions, with e~ = LN(e + attention among aligned entities)
    w = aggregator.attention_norm(x + aggregator.attention(x, mask))
    keys = e[:, [1, 4]]
    ent = aggregator.entity_attention
    q, k, v = (ent.qkv(keys).view(1, 2, 3, 2, 4).permute(2, 0, 3, 1, 4)).unbind(0)
    attended = ent.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 2, 8))
    e_tilde = aggregator.entity_attention_norm(keys + attended)
    h = F.gelu(aggregator.ffn.up(w[:, [1, 4]]) + aggregator.fuse_entity(e_tilde))
    assert torch.allclose(out[:, [1, 4]], aggregator.ffn_norm(w[:, [1, 4]] + aggregator.ffn.down(h)), atol=1e-5)
    assert torch.allclose(entity_out[:, [1, 4]], aggregator.entity_norm(e_tilde + aggregator.entity_out(h)), atol=1e-5)


def test_entity_attention_stays_within_packed_documents():
    model = tiny()
    ids, entities = (t[:1] for t in inputs())
    documents = torch.tensor([[0] * 6 + [1] * 6])
    base = model(ids, entity_ids=entities, document_ids=documents).last_hidden_state
    other = entities.clone()
    other[0, 7] = 4  # another entity in the second document
    changed = model(ids, entity_ids=other, document_ids=documents).last_hidden_state
    assert torch.allclose(base[0, :6], changed[0, :6], atol=1e-6) and not torch.allclose(base[0, 6:], changed[0, 6:])
    padded = model(ids, attention_mask=torch.ones_like(ids), entity_ids=torch.zeros_like(ids))
    assert torch.isfinite(padded.last_hidden_state).all()  # no entity anywhere: no NaN from empty attention


def test_entity_table_is_frozen_unless_asked():
    model = tiny().train()
    vectors = torch.randn(10, 8)
    model.set_entity_vectors(vectors)
    table = model.entity_embeddings.weight
    assert torch.equal(table[1:], vectors) and not table[0].any() and not table.requires_grad
    ids, entities = inputs()
    model(ids, entity_ids=entities).last_hidden_state.sum().backward()
    assert table.grad is None and model.aggregators[0].fuse_entity.weight.grad is not None
    assert tiny(train_entities=True).entity_embeddings.weight.requires_grad
    with pytest.raises(UserError, match="do not fit the model's entity table"):
        model.set_entity_vectors(np.zeros((10, 5)))


def test_config_errors():
    with pytest.raises(UserError, match="knowledge_layers"):
        ErnieConfig.from_dict({"num_layers": 4, "knowledge_layers": 4})  # no T-Encoder layer left
    with pytest.raises(UserError, match="divisible by model.entity_heads"):
        ErnieConfig.from_dict({"entity_size": 50, "entity_heads": 4})


def test_presets_and_parameter_counts():
    assert {"ernie-thu-base", "ernie-thu-tiny"} <= set(PRESETS)
    base = get_preset("ernie-thu-base").model
    assert (base["num_layers"] - base["knowledge_layers"], base["knowledge_layers"]) == (6, 6)
    assert (base["hidden_size"], base["num_heads"], base["entity_size"], base["entity_heads"]) == (768, 12, 100, 4)
    # BERT-base (+ MLM, NSP heads) plus, per aggregator, entity attention (qkv + out), its LayerNorm,
    # W_e (100 -> 3072, no bias), and except in the last one W'_e (3072 -> 100) and its LayerNorm;
    # the dEA head (768 -> 100 + LayerNorm) and the one-row entity table of an entity-less preset
    entity_attention = 100 * 300 + 300 + 100 * 100 + 100 + 2 * 100
    fusion_in, fusion_out = 100 * 3072, 3072 * 100 + 100 + 2 * 100
    extra = 6 * (entity_attention + fusion_in) + 5 * fusion_out + (768 * 100 + 100 + 2 * 100) + 100
    assert count_parameters(get_preset("ernie-thu-base")) == count_parameters(get_preset("bert-base")) + extra
