"""ptmzoo models built from transformers models compute the same outputs (max |Δ| ≤ 1e-4 in
float32, padded batches), and HF -> ptmzoo -> HF gives back identical tensors."""

import pytest
import torch

from ptmzoo.interop.hf import from_hf_model
from tests.interop.hf_models import BERT_CONFIGS, GPT2_CONFIGS, hf_model, padded_batch, round_trip

TOL = 1e-4
BERT_ARCHS = ["BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForNextSentencePrediction",
              "BertForSequenceClassification"]


def max_diff(a, b, mask=None):
    diff = (a.float() - b.float()).abs()
    if mask is not None:  # only real tokens: padded positions are never used
        diff = diff[mask.bool()]
    return diff.max().item()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(BERT_CONFIGS))
@pytest.mark.parametrize("architecture", BERT_ARCHS)
def test_bert_parity(architecture, name, attn):
    config = dict(BERT_CONFIGS[name], num_labels=3)
    hf = hf_model(architecture, config, attn=attn)
    ptm = from_hf_model(hf)
    ids, mask, types = padded_batch(config["vocab_size"], [11, 7, 3], 11, config["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ptm(ids, mask, types)
    assert max_diff(ref.hidden_states[-1], out.last_hidden_state, mask) <= TOL
    expected = {"BertForPreTraining": {"mlm": ref.get("prediction_logits"), "nsp": ref.get("seq_relationship_logits")},
                "BertForMaskedLM": {"mlm": ref.get("logits")},
                "BertForNextSentencePrediction": {"nsp": ref.get("logits")},
                "BertForSequenceClassification": {"classification": ref.get("logits")}}.get(architecture, {})
    assert set(out.head_logits) == set(expected)
    for head, logits in expected.items():
        assert max_diff(logits, out.head_logits[head], mask if head == "mlm" else None) <= TOL, head
    if architecture == "BertModel":
        assert max_diff(ref.pooler_output, out.pooler_output) <= TOL


@pytest.mark.parametrize("left", [False, True], ids=["right-pad", "left-pad"])
@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
@pytest.mark.parametrize("architecture", ["GPT2Model", "GPT2LMHeadModel"])
def test_gpt2_parity(architecture, name, left):
    config = GPT2_CONFIGS[name]
    hf = hf_model(architecture, config)
    ptm = from_hf_model(hf)
    ids, mask, _ = padded_batch(config["vocab_size"], [12, 9, 4], 12, left=left)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        out = ptm(ids, mask)
    assert max_diff(ref.hidden_states[-1], out.last_hidden_state, mask) <= TOL
    if architecture == "GPT2LMHeadModel":
        assert list(out.head_logits) == ["clm"]
        assert max_diff(ref.logits, out.logits, mask) <= TOL
        tied = config.get("tie_word_embeddings", True)
        head = ptm.heads["clm"].decoder.weight
        assert (head is ptm.backbone.token.weight) == tied


@pytest.mark.parametrize("architecture,name", [(a, n) for a in BERT_ARCHS for n in BERT_CONFIGS]
                         + [(a, n) for a in ("GPT2Model", "GPT2LMHeadModel") for n in GPT2_CONFIGS])
def test_round_trip_gives_identical_tensors(architecture, name):
    config = dict(BERT_CONFIGS.get(name) or GPT2_CONFIGS[name], num_labels=3)
    hf = hf_model(architecture, config, seed=3)
    assert type(round_trip(hf)).__name__ == architecture  # and ptmzoo -> HF -> ptmzoo
