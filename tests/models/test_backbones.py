import pytest
import torch

from ptmzoo.catalog import build_backbone, count_parameters
from ptmzoo.presets import PRESETS, get_preset

SMALL = {"vocab_size": 120, "hidden_size": 48, "num_layers": 2, "num_heads": 3, "intermediate_size": 96,
         "max_position_embeddings": 64}


@pytest.fixture(params=["bert", "gpt2"])
def backbone(request):
    torch.manual_seed(0)
    return build_backbone(request.param, SMALL).eval()


def test_shapes_and_hidden_states(backbone):
    ids = torch.randint(5, 120, (3, 17))
    out = backbone(ids, output_hidden_states=True)
    assert out.last_hidden_state.shape == (3, 17, 48)
    assert len(out.hidden_states) == 3 and torch.equal(out.hidden_states[-1], out.last_hidden_state)
    if backbone.has_pooler:
        assert out.pooler_output.shape == (3, 48)


def test_padding_does_not_change_real_tokens(backbone):
    ids = torch.randint(5, 120, (2, 12))
    alone = backbone(ids[:1, :7]).last_hidden_state
    padded_ids = ids.clone()
    padded_ids[0, 7:] = 0
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    padded = backbone(padded_ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(padded[0, :7], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(padded).all()  # padded rows stay finite


def test_decoder_is_causal_encoder_is_not():
    torch.manual_seed(0)
    ids = torch.randint(5, 120, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 120
    gpt = build_backbone("gpt2", SMALL).eval()
    a, b = gpt(ids).last_hidden_state, gpt(changed).last_hidden_state
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    bert = build_backbone("bert", SMALL).eval()
    assert not torch.allclose(bert(ids).last_hidden_state[:, :6], bert(changed).last_hidden_state[:, :6])


def test_too_long_input_for_gpt2_is_a_clear_error():
    from ptmzoo.errors import UserError

    gpt = build_backbone("gpt2", SMALL)
    with pytest.raises(UserError, match="longer than the model's context"):
        gpt(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("name", ["bert-base", "bert-tiny", "gpt2-small", "gpt2-medium"])
def test_preset_parameter_counts_match_transformers(name):
    transformers = pytest.importorskip("transformers")
    preset = get_preset(name)
    m = preset.model
    with torch.device("meta"):
        if preset.family == "bert":
            config = transformers.BertConfig(hidden_size=m["hidden_size"], num_hidden_layers=m["num_layers"],
                                             num_attention_heads=m["num_heads"], intermediate_size=m["intermediate_size"])
            reference = transformers.BertForPreTraining(config)
        else:
            config = transformers.GPT2Config(n_embd=m["hidden_size"], n_layer=m["num_layers"], n_head=m["num_heads"])
            reference = transformers.GPT2LMHeadModel(config)
    expected = sum(p.numel() for p in reference.parameters())
    assert count_parameters(preset) == expected
    if name == "gpt2-small":
        assert expected == 124_439_808  # the paper's "117M" model as released


def test_every_preset_builds():
    assert {"bert-tiny", "bert-base", "gpt2-tiny", "gpt2-small", "gpt2-xl"} <= set(PRESETS)
    assert count_parameters(get_preset("gpt2-xl")) > 1.5e9


def test_document_attention_equals_running_each_document_alone(backbone):
    """A packed row with document ids and restarted positions = the documents run separately."""
    docs = [torch.randint(5, 120, (n,)) for n in (6, 4, 7)]
    ids = torch.cat(docs)[None]
    document_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])[None]
    position_ids = torch.cat([torch.arange(len(d)) for d in docs])[None]
    packed = backbone(ids, position_ids=position_ids, document_ids=document_ids).last_hidden_state[0]
    start = 0
    for doc in docs:
        alone = backbone(doc[None]).last_hidden_state[0]
        torch.testing.assert_close(packed[start : start + len(doc)], alone, atol=1e-5, rtol=1e-5)
        start += len(doc)
