"""TF-IDF + logistic regression: the baseline a small pre-trained model should beat.

    python bench/tfidf_baseline.py --train train.tsv --dev dev.tsv --test test.tsv [--text-column text_a]

Word uni+bigrams (``--analyzer word``) or character 1-3-grams (``--analyzer char``, for Chinese);
the regularisation C is chosen on the dev set (never on the test set). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from ptmzoo.tasks.tables import read_table


def columns(path: str, text_column: str, label_column: str) -> tuple[list[str], np.ndarray]:
    rows = read_table(path)
    return [row[text_column] for row in rows], np.asarray([row[label_column] for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--analyzer", choices=["word", "char"], default="word")
    args = parser.parse_args()
    text_column = args.text_column
    if text_column == "text":  # SST-2 names its text column `sentence`
        text_column = next(k for k in read_table(args.train)[0] if k != args.label_column)
    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = (
        columns(path, text_column, args.label_column) for path in (args.train, args.dev, args.test))
    ngrams = (1, 2) if args.analyzer == "word" else (1, 3)
    vectorizer = TfidfVectorizer(analyzer=args.analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=1)
    train_m = vectorizer.fit_transform(train_x)
    dev_m, test_m = vectorizer.transform(dev_x), vectorizer.transform(test_x)
    trials = {}
    for c in (0.25, 1.0, 4.0, 16.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(train_m, train_y)
        trials[c] = (float((model.predict(dev_m) == dev_y).mean()), model)
    best_c = max(trials, key=lambda c: trials[c][0])
    dev_accuracy, model = trials[best_c]
    print(json.dumps({"train": len(train_y), "analyzer": args.analyzer, "C": best_c, "dev_accuracy": dev_accuracy,
                      "test_accuracy": float((model.predict(test_m) == test_y).mean())}))


if __name__ == "__main__":
    main()
