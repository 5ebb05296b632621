"""Sentence-level metrics against scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pytest

from ptmzoo.tasks.classification import (
    classification_metrics,
    multilabel_metrics,
    regression_metrics,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def test_against_references():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gold, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
        got = classification_metrics(gold, pred)
        assert got["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
        assert got["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred, average="macro"))
        assert got["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(gold, pred))
        x, y = rng.integers(0, 5, 40).astype(float), rng.normal(size=40)  # ties in x
        reg = regression_metrics(x, y)
        assert reg["pearson"] == pytest.approx(stats.pearsonr(x, y)[0])
        assert reg["spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
        g, p = rng.random((30, 5)) > 0.6, rng.random((30, 5)) > 0.6
        g[:, 4] = p[:, 4] = False  # a label never present: F1 0 in the macro average
        ml = multilabel_metrics(g, p)
        assert ml["micro_f1"] == pytest.approx(sklearn_metrics.f1_score(g, p, average="micro", zero_division=0))
        assert ml["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(g, p, average="macro", zero_division=0))
        assert ml["subset_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(g, p))
    assert classification_metrics(np.array([1, 1]), np.array([1, 1]))["mcc"] == 0.0
