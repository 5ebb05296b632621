"""The warnings of a model that learned nothing (each fires on a constructed degenerate case and not on
a healthy one), and the pair-task metrics (F1 of the positive class, accuracy_f1) against scikit-learn."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ptmzoo.tasks import (
    ClassificationOptions,
    MultiLabelTask,
    RegressionTask,
    TaggingOptions,
    TaggingTask,
)
from ptmzoo.tasks.classification import ClassificationTask, MultiLabelOptions, binary_f1
from ptmzoo.train.diagnostics import (
    language_model_warning,
    loss_did_not_fall,
    report_warnings,
    training_losses,
    unigram_entropy,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def probabilities(predicted: list[int], classes: int) -> np.ndarray:
    out = np.full((len(predicted), classes), 0.1 / max(1, classes - 1))
    out[np.arange(len(predicted)), predicted] = 0.9
    return out


def labelled(values) -> list[dict]:
    return [{"labels": v} for v in values]


# ---------------------------------------------------------------------------------------- metrics
def test_binary_f1_of_the_positive_class_against_sklearn():
    gold = np.array([1, 1, 0, 1, 0, 0, 1, 1, 0, 1])
    pred = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1])
    # tp 4, fp 1, fn 2: F1 = 8 / 11
    assert binary_f1(gold, pred, 1) == pytest.approx(8 / 11)
    assert binary_f1(gold, pred, 1) == pytest.approx(sklearn_metrics.f1_score(gold, pred, pos_label=1))
    assert binary_f1(gold, pred, 0) == pytest.approx(sklearn_metrics.f1_score(gold, pred, pos_label=0))
    assert binary_f1(gold, np.zeros_like(gold), 1) == 0.0  # no positive predicted (sklearn: 0 too)
    rng = np.random.default_rng(1)
    for _ in range(10):
        g, p = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
        assert binary_f1(g, p, 1) == pytest.approx(sklearn_metrics.f1_score(g, p))


def test_two_class_evaluation_reports_f1_and_accuracy_f1(wordpiece_tokenizer):
    task = ClassificationTask(ClassificationOptions(), wordpiece_tokenizer, ["0", "1"], 64)
    gold = [1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
    pred = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]
    metrics = task.evaluate([], labelled(gold), probabilities(pred, 2))
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred)) == pytest.approx(8 / 11)
    assert metrics["accuracy_f1"] == pytest.approx((0.7 + 8 / 11) / 2)
    assert set(task.available_metrics()) >= {"f1", "accuracy_f1"}
    three = ClassificationTask(ClassificationOptions(), wordpiece_tokenizer, ["a", "b", "c"], 64)
    assert "f1" not in three.evaluate([], labelled([0, 1, 2]), probabilities([0, 1, 2], 3))
    assert "f1" not in three.available_metrics() and "macro_f1" in three.available_metrics()


def test_sts_pearson_and_spearman_on_fixed_predictions(wordpiece_tokenizer):
    stats = pytest.importorskip("scipy.stats")
    task = RegressionTask(ClassificationOptions(), wordpiece_tokenizer, [], 64)
    gold = [0.0, 1.2, 2.5, 2.5, 3.8, 4.0, 5.0, 1.0]  # STS-B scores, a tie
    pred = [0.4, 1.0, 2.0, 3.1, 3.0, 4.4, 4.2, 1.8]
    metrics = task.evaluate([], labelled(gold), np.array(pred))
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(gold, pred)[0]) == pytest.approx(0.9305, abs=1e-4)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(gold, pred)[0])
    assert metrics["spearman"] == pytest.approx(0.9102, abs=1e-4)
    assert task.available_metrics() == ("pearson", "spearman")


# --------------------------------------------------------------------------------------- warnings
def test_classifier_warns_on_one_class_and_on_the_majority_baseline(wordpiece_tokenizer):
    task = ClassificationTask(ClassificationOptions(), wordpiece_tokenizer, ["0", "1"], 64)
    gold = [1, 1, 1, 0, 1, 0, 1, 1, 0, 1]  # 70% class 1 (MRPC-like)
    one_class = task.warnings([], labelled(gold), probabilities([1] * 10, 2), {})
    assert len(one_class) == 1 and "predicts one class ('1') for all 10" in one_class[0] and "--lr auto" in one_class[0]
    # two classes predicted, but no better than answering 1 everywhere: macro-F1 0.375, the baseline 0.4118
    near = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    baseline = sklearn_metrics.f1_score(gold, [1] * 10, average="macro", labels=[0, 1])
    assert sklearn_metrics.f1_score(gold, near, average="macro") <= baseline + 0.01
    at_baseline = task.warnings([], labelled(gold), probabilities(near, 2), {})
    assert len(at_baseline) == 1 and f"majority-class baseline ({baseline:.4f}" in at_baseline[0]
    healthy = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]  # 9 of 10 right
    assert task.warnings([], labelled(gold), probabilities(healthy, 2), {}) == []


def test_regression_warns_on_constant_predictions(wordpiece_tokenizer):
    task = RegressionTask(ClassificationOptions(), wordpiece_tokenizer, [], 64)
    gold = np.linspace(0, 5, 20)
    flat = 2.5 + 0.01 * np.sin(np.arange(20))  # std 0.007 vs the gold's 1.5
    (warning,) = task.warnings([], labelled(gold), flat, {})
    assert "hardly vary" in warning and "scaled" in warning
    assert task.warnings([], labelled(gold), gold + np.random.default_rng(0).normal(0, 1, 20), {}) == []


def test_tagger_warns_on_only_o(wordpiece_tokenizer):
    task = TaggingTask(TaggingOptions(), wordpiece_tokenizer, ["O", "B-PER", "I-PER"], 64)
    rows = [{"tokens": ["John", "ran"], "tags": ["B-PER", "O"]}, {"tokens": ["it", "rains"], "tags": ["O", "O"]}]
    (warning,) = task.warnings(rows, [], [["O", "O"], ["O", "O"]], {})
    assert "predicts O for every word of the 2 dev sentences" in warning and "--crf" in warning
    assert task.warnings(rows, [], [["B-PER", "O"], ["O", "O"]], {}) == []
    assert task.warnings([rows[1]], [], [["O", "O"]], {}) == []  # no entity to find: nothing to say


def test_multilabel_warns_on_one_label_set(wordpiece_tokenizer):
    task = MultiLabelTask(MultiLabelOptions(), wordpiece_tokenizer, ["a", "b"], 64)
    gold = labelled([[1, 0], [0, 1], [1, 1]])
    (warning,) = task.warnings([], gold, np.array([[0.9, 0.1]] * 3), {})
    assert "same labels (a) for all 3" in warning
    assert task.warnings([], gold, np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.7]]), {}) == []


def test_loss_that_did_not_fall():
    flat = [0.69, 0.70, 0.68, 0.69, 0.70, 0.69, 0.68, 0.70]
    warning = loss_did_not_fall(flat, "the fine-tuning")
    assert warning.startswith("the training loss of the fine-tuning did not fall: 0.6950 over the first 2")
    assert loss_did_not_fall([0.69, 0.65, 0.5, 0.4, 0.35, 0.3, 0.3, 0.28]) is None
    assert loss_did_not_fall([0.69, 0.69, 0.69]) is None  # too few logged steps to tell
    assert loss_did_not_fall([0.5, 0.6, 0.9, 1.2]) is not None  # rising
    assert loss_did_not_fall([float("nan")] * 4) is not None


def test_metrics_log_losses_and_the_warnings_record(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"loss": 1.0, "lr": 1e-3, "step": 1}, {"step": 1, "accuracy": 0.5, "eval_loss": 0.7},
        {"loss": 0.5, "lr": 1e-3, "step": 2}]))
    assert training_losses(str(path)) == [1.0, 0.5]  # evaluation records left out
    assert report_warnings(["a problem"], str(path), 2) == ["a problem"]
    assert capsys.readouterr().err == "warning: a problem\n"
    assert json.loads(path.read_text().splitlines()[-1]) == {"step": 2, "warnings": ["a problem"]}
    report_warnings([], str(path), 3)
    assert len(path.read_text().splitlines()) == 4  # nothing to say: no record


def test_unigram_entropy_of_the_shards_and_the_language_model_warning(wiki_shards):
    from ptmzoo.data.shards import ShardedCorpus

    split = ShardedCorpus(wiki_shards).split("train")
    tokens = np.concatenate([np.asarray(t, dtype=np.int64) for t in split.tokens])
    p = np.bincount(tokens) / len(tokens)
    p = p[p > 0]
    entropy = unigram_entropy(split)
    assert entropy == pytest.approx(float(-(p * np.log(p)).sum()))
    assert 3.0 < entropy < math.log(3000)  # a 3,000-word vocabulary, far from uniform
    first = unigram_entropy(split, max_tokens=1000)
    head = np.bincount(tokens[:1000]) / 1000
    assert first == pytest.approx(float(-(head[head > 0] * np.log(head[head > 0])).sum()))
    # a held-out LM loss of 0.97 x the entropy: learned little; 0.8 x: something
    warning = language_model_warning({"eval_loss": 1.0, "eval_ppl": math.exp(0.97 * entropy)}, entropy)
    assert warning is not None and f"({entropy:.3f} nats" in warning
    assert language_model_warning({"eval_ppl": math.exp(1.2 * entropy)}, entropy) is not None
    assert language_model_warning({"eval_ppl": math.exp(0.8 * entropy)}, entropy) is None
    assert language_model_warning({"eval_loss": 0.1}, entropy) is None  # no language-model head


def test_pretraining_that_learned_nothing_says_so_in_its_log(wiki_shards, tmp_path, capsys):
    from ptmzoo.data.shards import ShardedCorpus
    from ptmzoo.train.pretrain import PretrainRecipe, run_pretrain

    recipe = PretrainRecipe.from_dict({
        "preset": "bert-tiny", "data": {"shards": wiki_shards, "seq_len": 32},
        "model": {"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
        "train": {"batch_size": 4, "max_steps": 8, "lr": 1e-9, "log_every": 1, "eval_every": 8, "eval_batches": 2}})
    out = tmp_path / "run"
    result = run_pretrain(recipe, str(out), progress=False)
    entropy = unigram_entropy(ShardedCorpus(wiki_shards).split("train"))
    assert math.log(result.final_metrics["eval_ppl"]) > entropy  # 1e-9: still a uniform guess over the vocabulary
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 8 and len(last["warnings"]) == 2
    assert f"unigram entropy of the training tokens ({entropy:.3f} nats" in last["warnings"][0]
    assert "the training loss of the pre-training did not fall" in last["warnings"][1]
    assert "--steps or train.max_minutes" in last["warnings"][1] and "--lr auto" not in last["warnings"][1]
    assert capsys.readouterr().err.count("warning: ") == 2
