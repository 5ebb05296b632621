"""Diagnostic for the RNN-era ELMo feature runs (bench/rnn_era.sh, stage 4): the features the
frozen `--layers scalar_mix --mix-layer-norm --pooling mean` head reads (each layer normalised,
equal weights, mean over the real tokens), standardised per dimension and fitted by full-batch
L-BFGS logistic regression on the same 2,000 SST-2 training sentences (seeded shuffle), scored on
the GLUE dev set. Tells apart "the features carry no signal" from "the head did not learn".

    python bench/elmo_probe.py bench/results/rnn/runs/elmo/final bench/results/rnn/runs/elmo_random
"""

from __future__ import annotations

import csv
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from ptmzoo.data.derived import add_derived_inputs
from ptmzoo.loading import load

SST = os.environ.get("SST", "../shared/data/en/sst2")


def rows(path: str) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8") as fh:
        return [(r["sentence"], int(r["label"])) for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]


@torch.no_grad()
def features(pretrained, data: list[tuple[str, int]]) -> torch.Tensor:
    model, tok = pretrained.model.eval(), pretrained.tokenizer
    pooled = []
    for start in range(0, len(data), 64):
        ids = [tok.encode(text, add_special_tokens=True)[:128] for text, _ in data[start : start + 64]]
        length = max(map(len, ids))
        batch = {"input_ids": torch.tensor([x + [0] * (length - len(x)) for x in ids]),
                 "attention_mask": torch.tensor([[1] * len(x) + [0] * (length - len(x)) for x in ids])}
        batch = add_derived_inputs(batch, model.backbone.derived_inputs, tok, as_tensors=True)
        states = model.backbone(**{k: batch[k] for k in model.backbone.inputs}, output_hidden_states=True).hidden_states
        mixed = sum(F.layer_norm(h, h.shape[-1:]) for h in states) / len(states)
        weights = batch["attention_mask"].unsqueeze(-1).float()
        pooled.append((mixed * weights).sum(1) / weights.sum(1))
    return torch.cat(pooled)


def fit(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Linear:
    """L2-regularised logistic regression, full batch, L-BFGS."""
    linear = torch.nn.Linear(x.shape[1], 2)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def main() -> None:
    train = rows(os.path.join(SST, "train.tsv"))
    random.Random(0).shuffle(train)
    train = train[:2000]
    test = rows(os.path.join(SST, "test.tsv"))
    y_train, y_test = torch.tensor([y for _, y in train]), torch.tensor([y for _, y in test])
    for path in sys.argv[1:]:
        pretrained = load(path)
        x_train, x_test = features(pretrained, train), features(pretrained, test)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        linear = fit(x_train, y_train)
        with torch.no_grad():
            train_acc = (linear(x_train).argmax(1) == y_train).float().mean()
            test_acc = (linear(x_test).argmax(1) == y_test).float().mean()
        print(f"{path} train acc {train_acc:.3f} test acc {test_acc:.3f} feature std before standardising "
              f"{std.mean():.4f}")


if __name__ == "__main__":
    main()
