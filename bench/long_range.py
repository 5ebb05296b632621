"""Perplexity as a function of the position in the context, for causal language models.

    python bench/long_range.py --model runs/awd/final --model runs/gpt2/final \
        --text ../shared/data/en/corpus/wikitext2.valid.txt --window 256 --windows 200 --out long_range.png

The text is tokenized with the first model's tokenizer (all models must share it) and cut into
consecutive windows of ``--window`` tokens; each model reads every window from scratch (a
Transformer with no cache, an LSTM from a zero state) and the negative log-likelihood of the token
at position p (predicted from the p tokens before it) is averaged over the windows. A model that
uses long contexts keeps lowering its loss as p grows; one that forgets levels off early. Writes the
PNG (perplexity per position, averaged in bins of ``--bin`` positions) and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from ptmzoo.generation.decoding import lm_head
from ptmzoo.loading import load
from ptmzoo.models.base import BackboneOutput
from ptmzoo.textio import read_text


@torch.no_grad()
def position_nll(pretrained, windows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean NLL [window - 1] of the token at position p + 1 given positions 0..p."""
    model = pretrained.model.eval()
    head = lm_head(model)
    total = torch.zeros(windows.shape[1] - 1)
    for start in range(0, len(windows), batch_size):
        ids = windows[start : start + batch_size]
        hidden = model.backbone(ids).last_hidden_state
        logits = head.logits(BackboneOutput(hidden[:, :-1]), {}).float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [B, window - 1]
        total += nll.sum(0)
    return total / len(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="checkpoint directory (repeat)")
    parser.add_argument("--label", action="append", help="legend name of each model (default: its family)")
    parser.add_argument("--text", required=True)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--bin", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()
    models = [load(path) for path in args.model]
    labels = args.label or [m.family for m in models]
    tokenizer = models[0].tokenizer
    ids = tokenizer.encode(read_text(args.text), add_special_tokens=False)
    count = min(args.windows, len(ids) // args.window)
    windows = torch.tensor(ids[: count * args.window]).view(count, args.window)
    curves = {label: position_nll(model, windows, args.batch_size) for label, model in zip(labels, models)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = {"windows": count, "window": args.window, "models": {}}
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, nll in curves.items():
        bins = nll[: len(nll) // args.bin * args.bin].view(-1, args.bin).mean(1)
        centres = [args.bin * i + args.bin / 2 for i in range(len(bins))]
        ax.plot(centres, bins.exp().tolist(), marker="o", markersize=3, label=label)
        summary["models"][label] = {
            "perplexity": math.exp(float(nll.mean())),
            **{f"ppl_positions_{a}_{b}": math.exp(float(nll[a:b].mean()))
               for a, b in ((0, 16), (16, 64), (64, 128), (128, args.window - 1))},
        }
    ax.set_xlabel("position in the context (tokens before the predicted one)")
    ax.set_ylabel(f"perplexity (mean over {count} windows, bins of {args.bin})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
