"""SpanBERT's span boundary objective and ELECTRA's replaced-token detection."""

import json
import os

import numpy as np
import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone, build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.errors import UserError
from ptmzoo.models.model import PtmModel
from ptmzoo.objectives import build_objectives
from ptmzoo.objectives.rtd import replace_tokens
from tests.objectives.objective_helpers import masked_batch, people_daily_corpus

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="session")
def people_daily(tmp_path_factory):
    return people_daily_corpus(tmp_path_factory)


# -- span boundary objective ----------------------------------------------------------------------
def test_sbo_needs_span_masking_before_it(wordpiece_tokenizer):
    for spec in ({"sbo": {}}, {"mlm": {}, "sbo": {}}, {"sbo": {}, "mlm": {"masking": "span"}}):
        with pytest.raises(UserError, match="masking: span"):
            build_objectives(spec, wordpiece_tokenizer, 0)
    build_objectives({"mlm": {"masking": "span"}, "sbo": {}}, wordpiece_tokenizer, 0)


def test_sbo_head_on_a_hand_example():
    torch.manual_seed(0)
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": 50, **TINY}))
    model.add_head("mlm", HEADS["mlm"])
    head = model.add_head("sbo", HEADS["sbo"], max_offset=4)
    model.eval()
    ids = torch.tensor([[2, 10, 11, 4, 4, 4, 12, 13, 3]])  # [CLS] x1 x2 [M] [M] [M] x6 x7 [SEP]
    labels = torch.full_like(ids, -100)
    labels[0, 3:6] = torch.tensor([20, 21, 22])
    left, right = torch.full_like(ids, -1), torch.full_like(ids, -1)
    left[0, 3:6], right[0, 3:6] = 2, 6  # the span's boundary tokens: x2 and x6
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mlm_labels": labels,
             "span_left": left, "span_right": right,
             "sbo_labels": torch.from_numpy(np.where(left.numpy() >= 0, labels.numpy(), -100))}
    out = model(ids, batch["attention_mask"], targets=batch)
    hidden = model.backbone(ids, batch["attention_mask"]).last_hidden_state[0]
    states = torch.stack([torch.cat([hidden[2], hidden[6], head.offsets.weight[i]]) for i in range(3)])
    logits = head.mlp(states) @ model.backbone.input_embeddings.weight.T + head.decoder_bias
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([20, 21, 22]), reduction="sum")
    assert out.loss_sums["sbo"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx((out.loss_sums["mlm"] + out.loss_sums["sbo"]).item() / 3, rel=1e-5)
    assert torch.allclose(head.logits(model.backbone(ids), batch), logits, atol=1e-5)
    assert "sbo" not in model(ids).head_logits  # plain inputs have no spans


def test_sbo_targets_on_real_text(people_daily):
    shards, tok = people_daily
    _, batch = masked_batch(shards, tok, {"mlm": {"masking": "span"}, "sbo": {}}, limit=200)
    assert torch.equal(batch["sbo_labels"], batch["mlm_labels"])  # every masked token is in a span
    rows, cols = (batch["sbo_labels"] != -100).nonzero(as_tuple=True)
    left, right = batch["span_left"][rows, cols], batch["span_right"][rows, cols]
    assert (left < cols).all() and (cols < right).all()
    model = PtmModel("bert", build_backbone("bert", {"vocab_size": tok.vocab_size, **TINY}))
    model.add_head("mlm", HEADS["mlm"])
    model.add_head("sbo", HEADS["sbo"])
    out = model(batch["input_ids"], batch["attention_mask"], targets=batch)
    assert set(out.loss_sums) == {"mlm", "sbo"} and torch.isfinite(out.loss)


# -- ELECTRA ------------------------------------------------------------------------------------------
def tiny_electra(vocab_size: int) -> PtmModel:
    torch.manual_seed(0)
    config = {"vocab_size": vocab_size, "hidden_size": 64, "num_layers": 2, "num_heads": 4,
              "intermediate_size": 128, "embedding_size": 32, "generator_size": 0.25}
    model = build_model("electra", config, helpers={"generator": {"kind": "electra_generator"}})
    model.add_head("rtd", HEADS["rtd"], weight=50.0)
    return model


def test_generator_is_smaller_and_shares_the_embeddings(wordpiece_tokenizer):
    model = tiny_electra(wordpiece_tokenizer.vocab_size)
    disc, gen = model.backbone, model.helpers["generator"].backbone
    assert gen.config.hidden_size == 16 and gen.config.num_heads == 1 and disc.config.hidden_size == 64
    for name in ("word", "position", "token_type"):
        assert getattr(gen.embeddings, name).weight is getattr(disc.embeddings, name).weight
    assert model.helpers["generator"].heads["mlm"].decoder.weight is disc.embeddings.word.weight
    assert gen.embeddings.project is not disc.embeddings.project  # each projects to its own width
    with pytest.raises(UserError, match="ELECTRA preset"):
        build_objectives(["rtd"], wordpiece_tokenizer, 0)[0].check_backbone(
            build_backbone("bert", {"vocab_size": 100, **TINY}), "bert-tiny")


def test_discriminator_labels_are_actual_replacements(wiki_shards, wordpiece_tokenizer):
    tok = wordpiece_tokenizer
    original, batch = masked_batch(wiki_shards, tok, {"rtd": {}}, limit=16)
    masked = batch["mlm_labels"] != -100
    assert (batch["rtd_labels"] == torch.where(batch["attention_mask"] == 1, 0, -100)).all()
    unchanged = (batch["input_ids"][masked] == original["input_ids"][masked]).float().mean().item()
    assert 0.08 < unchanged < 0.25  # ELECTRA's masking: 85% [MASK], 15% kept
    model = tiny_electra(tok.vocab_size)
    # make the generator sample one frequent token everywhere: where it is the original, no replacement
    frequent = int(torch.mode(batch["mlm_labels"][masked]).values)
    with torch.no_grad():
        model.helpers["generator"].heads["mlm"].decoder.bias[frequent] = 1e4
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    _, replaced, labels = replace_tokens(model.helpers["generator"], inputs, batch)
    real = batch["attention_mask"] == 1
    assert torch.equal(labels[real], (replaced != original["input_ids"])[real].long())
    assert (labels[~real] == -100).all()
    assert torch.equal(replaced[~masked], batch["input_ids"][~masked]) and (replaced[masked] == frequent).all()
    same = masked & (original["input_ids"] == frequent)
    assert same.any() and (labels[same] == 0).all() and (labels[masked & ~same] == 1).all()


def test_electra_tiny_pretrains_from_the_cli_and_round_trips(tmp_path, wiki_shards, wordpiece_tokenizer):
    from tests.conftest import run_cli

    out = str(tmp_path / "electra")
    result = run_cli("pretrain", "--preset", "electra-tiny", "--data", wiki_shards, "--out", out, "--steps", "12",
                     "--batch-size", "8", "--seq-len", "64", "--lr", "1e-3", "--no-progress", "train.log_every=3",
                     "train.eval_batches=2", env={"OMP_NUM_THREADS": "1"})  # a tiny model: no thread contention
    assert result.returncode == 0, result.stderr
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        lines = [json.loads(line) for line in fh]
    records = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "eval_loss" in r]
    # the evaluation reports both halves of ELECTRA's loss (it once covered the discriminator only)
    assert evals and {"eval_loss_mlm", "eval_loss_rtd"} <= set(evals[-1])
    assert evals[-1]["eval_loss"] == pytest.approx(evals[-1]["eval_loss_mlm"] + evals[-1]["eval_loss_rtd"])
    first, last = records[0], records[-1]
    assert {"loss_mlm", "loss_rtd"} <= set(first) and last["step"] == 12
    # generator MLM + 50 x discriminator BCE both fall
    assert last["loss"] < 0.85 * first["loss"] and last["loss_mlm"] < first["loss_mlm"]
    assert last["loss_rtd"] < first["loss_rtd"]
    loaded = ptmzoo.load(out)
    assert "generator" in loaded.model.helpers and loaded.family == "electra"
    model = loaded.model
    generator = model.helpers["generator"]
    assert generator.backbone.embeddings.word.weight is model.backbone.embeddings.word.weight
    # save -> load gives the same discriminator and generator outputs
    again_dir = str(tmp_path / "again")
    save_pretrained(again_dir, model, loaded.tokenizer)
    again = ptmzoo.load(again_dir).model
    ids = torch.tensor([loaded.tokenizer.encode("The river flows into the sea.")])
    assert torch.equal(model(ids).head_logits["rtd"], again(ids).head_logits["rtd"])
    assert torch.equal(generator(ids).logits, again.helpers["generator"](ids).logits)
    assert model(ids).logits.shape == ids.shape  # the discriminator: one logit per token
