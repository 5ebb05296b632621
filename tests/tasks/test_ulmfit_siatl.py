"""ULMFiT's classifier (concat pooling) and three-stage fine-tuning techniques on an AWD-LSTM, and
SiATL's annealed auxiliary LM loss and sequential unfreezing."""

import json
import os

import pytest
import torch

from ptmzoo.catalog import build_model
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.finetune.strategies import Strategy, StrategyConfig, layer_groups
from ptmzoo.objectives.clm import LMHead
from ptmzoo.tasks import ClassificationTask
from ptmzoo.tasks.classification import ClassificationHead
from ptmzoo.tasks.gpt_input import AUX_LM_HEAD
from tests.conftest import shared_path

TINY = {"vocab_size": 3000, "hidden_size": 16, "lstm_size": 24, "num_layers": 3}


def awd_model():
    torch.manual_seed(0)
    return build_model("awd_lstm", TINY)


def test_concat_pooling_is_last_max_and_mean_of_the_real_tokens():
    model = awd_model().eval()
    head = model.add_head("cls", ClassificationHead, num_labels=2, pooling="concat", dropout=0.0)
    assert head.classifier.in_features == 3 * 16
    ids = torch.randint(0, 3000, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    out = model.backbone(ids, mask)
    pooled = head.pool(out, {"attention_mask": mask})
    for row, length in ((0, 7), (1, 4)):
        states = out.last_hidden_state[row, :length]
        expected = torch.cat([states[-1], states.max(0).values, states.mean(0)])
        torch.testing.assert_close(pooled[row], expected)


def test_layer_groups_of_the_awd_lstm_are_embedding_layers_and_head():
    model = awd_model()
    model.add_head("cls", ClassificationHead, num_labels=2, pooling="concat")
    groups = layer_groups(model)
    assert len(groups) == 5  # embeddings, 3 LSTM layers, head
    assert groups[0] == [model.backbone.embedding.weight]
    assert {id(p) for p in groups[2]} == {id(p) for p in model.backbone.layers[1].parameters()}


def test_siatl_sequential_unfreezing_opens_the_layers_then_the_embeddings():
    model = awd_model()
    model.add_head("cls", ClassificationHead, num_labels=2)
    strategy = Strategy(model, StrategyConfig(sequential_unfreezing=[2, 3]))
    hook = strategy.trainer_kwargs(1e-3, 0.0, steps_per_epoch=10)["before_step"]
    embedding, lstm, head = (model.backbone.embedding.weight, model.backbone.layers[0].lstm.weight_hh_l0,
                             model.heads["cls"].classifier.weight)
    for step, expected in ((0, (False, False, True)), (9, (False, False, True)), (10, (False, True, True)),
                           (25, (True, True, True))):
        hook(step)
        assert (embedding.requires_grad, lstm.requires_grad, head.requires_grad) == expected, step
    with pytest.raises(Exception, match="1 <= N <= K"):
        StrategyConfig.from_dict({"sequential_unfreezing": [3, 2]})


def test_siatl_auxiliary_lm_weight_decays_exponentially_per_epoch(wordpiece_tokenizer):
    options = ClassificationTask.Options(aux_lm_weight=0.8, aux_lm_decay=0.5)
    task = ClassificationTask(options, wordpiece_tokenizer, ["0", "1"], None)
    model = build_model("awd_lstm", {**TINY, "vocab_size": wordpiece_tokenizer.vocab_size})
    task.add_head(model)
    schedule = task.schedule(model, steps_per_epoch=4)
    head = model.heads[AUX_LM_HEAD]
    for step, weight in ((0, 0.8), (4, 0.4), (6, 0.8 * 0.5 ** 1.5), (8, 0.2)):
        schedule(step)
        assert head.weight == pytest.approx(weight)
    batch = task.collate(task.encode_texts(["a good film", "bad"], None))
    out = model.backbone(batch["input_ids"])
    loss = head.loss_sum(out, batch)
    assert float(loss) == pytest.approx(0.2 * float(LMHead.loss_sum(head, out, batch)), rel=1e-5)
    assert ClassificationTask(ClassificationTask.Options(aux_lm_weight=0.8), wordpiece_tokenizer, ["0", "1"], None).schedule(
        model, 4) is None  # a constant weight needs no schedule


def test_ulmfit_classifier_fine_tuning_runs_end_to_end(tmp_path, wordpiece_tokenizer):
    """Stage 3 on a tiny AWD-LSTM: concat pooling, discriminative rates, gradual unfreezing, STLR, BPT3C
    and SiATL's auxiliary loss together; the checkpoint reloads and predicts."""
    model = build_model("awd_lstm", {**TINY, "vocab_size": wordpiece_tokenizer.vocab_size, "bptt_chunk": 8})
    save_pretrained(str(tmp_path / "lm"), model, wordpiece_tokenizer)
    with open(shared_path("en", "sst2", "train.tsv"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()[:81]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    cfg = FinetuneConfig.from_dict({
        "model": str(tmp_path / "lm"), "train_file": str(tmp_path / "train.tsv"), "dev_file": str(tmp_path / "train.tsv"),
        "epochs": 2, "options": {"text_column": "sentence", "pooling": "concat", "aux_lm_weight": 0.5,
                                 "aux_lm_decay": 0.5},
        "strategy": {"discriminative_decay": 2.6, "gradual_unfreezing": True},
        "train": {"batch_size": 16, "lr": 1e-3, "log_every": 1, "schedule": "slanted_triangular"}})
    report = run_finetune(cfg, str(tmp_path / "clf"), progress=False)
    assert 0 <= report["dev"]["accuracy"] <= 1 and report["steps"] == 10
    with open(tmp_path / "clf" / "metrics.jsonl") as fh:
        records = [json.loads(line) for line in fh if '"loss"' in line]
    assert {"loss_classification", "loss_aux_lm"} <= set(records[0])
    assert os.path.exists(tmp_path / "clf" / "best" / "model.safetensors")
