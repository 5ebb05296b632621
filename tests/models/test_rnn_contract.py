"""The backbone contract on the RNN-era families of the catalog (ELMo, AWD-LSTM, CoVe): output shapes,
padding invariance, causality where causal, the carried state equal to one pass, the save/load round
trip with their heads, the fine-tuning strategies (and a clear line for those that need Transformer
projections), the derived character inputs in every task's collate."""

import pytest
import torch

from ptmzoo.catalog import FAMILIES, build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.errors import UserError
from ptmzoo.finetune.strategies import Strategy, StrategyConfig
from ptmzoo.loading import load
from ptmzoo.objectives import OBJECTIVES
from ptmzoo.presets import PRESETS
from ptmzoo.tasks import ClassificationTask, TaggingTask

# family: (tiny config, its pre-training or task head)
RNN_FAMILIES = {
    "elmo": ({"hidden_size": 16, "lstm_size": 20, "num_layers": 2, "filters": [[1, 4], [2, 4], [3, 8]],
              "num_highway": 1, "dropout": 0.1, "max_chars": 12}, "bilm"),
    "awd_lstm": ({"hidden_size": 12, "lstm_size": 20, "num_layers": 2}, "awd_lm"),
    "cove": ({"embedding_size": 8, "lstm_size": 6, "num_layers": 2}, None),
}


def test_every_rnn_family_is_in_the_catalog_with_presets():
    assert {"elmo", "awd_lstm", "cove"} <= set(FAMILIES)
    assert {"elmo-small", "elmo-medium", "elmo-original", "awd-lstm", "cove"} <= set(PRESETS)


def model_of(family, tokenizer, seed=0):
    config, objective = RNN_FAMILIES[family]
    torch.manual_seed(seed)
    model = build_model(family, {**config, "vocab_size": tokenizer.vocab_size})
    if objective:
        OBJECTIVES[objective](OBJECTIVES[objective].Options(), tokenizer).attach(model)
    return model


def task_batch(task, texts):
    return task.collate(task.encode_texts(texts, None))


@pytest.fixture(params=list(RNN_FAMILIES))
def family(request):
    return request.param


def test_shapes_padding_and_the_derived_inputs(family, wordpiece_tokenizer):
    model = model_of(family, wordpiece_tokenizer).eval()
    task = ClassificationTask(ClassificationTask.Options(pooling="mean"), wordpiece_tokenizer, ["0", "1"], model.backbone.max_length)
    task.add_head(model)
    batch = task_batch(task, ["a long sentence about the history of the city", "short one"])
    assert set(model.backbone.derived_inputs) <= set(batch)  # ELMo's char_ids, from the collate
    inputs = model.select_inputs(batch)
    out = model.backbone(**inputs)
    assert out.last_hidden_state.shape[:2] == batch["input_ids"].shape
    assert out.last_hidden_state.shape[-1] == model.config.hidden_size
    short = int(batch["attention_mask"][1].sum())
    alone = task_batch(task, ["short one"])
    single = model.backbone(**model.select_inputs(alone)).last_hidden_state
    torch.testing.assert_close(out.last_hidden_state[1, :short], single[0], atol=1e-5, rtol=1e-5)
    logits = model(**inputs).head_logits["classification"]
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_causal_families_are_causal_and_their_state_continues_them(family, wordpiece_tokenizer):
    model = model_of(family, wordpiece_tokenizer).eval()
    backbone = model.backbone
    if not backbone.causal:
        pytest.skip(f"{family} is not a left-to-right model")
    ids = torch.randint(5, 200, (2, 12))
    whole = backbone(ids).last_hidden_state
    changed = ids.clone()
    changed[:, 8] += 1
    torch.testing.assert_close(backbone(changed).last_hidden_state[:, :8], whole[:, :8])
    state = backbone.initial_state(2)
    parts = [backbone(ids[:, :5], cache=state).last_hidden_state, backbone(ids[:, 5:], cache=state).last_hidden_state]
    torch.testing.assert_close(torch.cat(parts, 1), whole)


def test_save_and_load_round_trip(family, wordpiece_tokenizer, tmp_path):
    model = model_of(family, wordpiece_tokenizer).eval()
    save_pretrained(str(tmp_path / family), model, wordpiece_tokenizer)
    loaded = load(str(tmp_path / family))
    assert loaded.family == family and set(loaded.model.heads) == set(model.heads)
    task = ClassificationTask(ClassificationTask.Options(), wordpiece_tokenizer, ["0", "1"], model.backbone.max_length)
    task.derived_inputs = model.backbone.derived_inputs
    inputs = model.select_inputs(task_batch(task, ["the city of london"]))
    torch.testing.assert_close(loaded.model.backbone(**inputs).last_hidden_state,
                               model.backbone(**inputs).last_hidden_state)


@pytest.mark.parametrize("method", ["full", "frozen", "adapters", "lora"])
def test_strategies(family, method, wordpiece_tokenizer):
    model = model_of(family, wordpiece_tokenizer)
    task = TaggingTask(TaggingTask.Options(), wordpiece_tokenizer, ["O", "B-PER", "I-PER"], model.backbone.max_length)
    task.add_head(model)
    layers = "scalar_mix" if family == "elmo" else "last"
    if method in ("adapters", "lora"):  # they adapt Transformer projections, which an LSTM has not
        with pytest.raises(UserError):
            Strategy(model, StrategyConfig(method=method, layers=layers))
        return
    strategy = Strategy(model, StrategyConfig(method=method, layers=layers))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.startswith("heads.") for name in trainable)
    assert any(name.startswith("backbone.") for name in trainable) == (method == "full")
    if family == "elmo":
        assert "heads.tagging.mix_logits" in trainable and "heads.tagging.gamma" in trainable
    assert strategy.counts()["trainable_parameters"] > 0
