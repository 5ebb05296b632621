"""The RNN-era presets from the command line: `ptmzoo pretrain` on real text (AWD-LSTM's stream BPTT
with its carried state; ELMo's biLM with characters from the collator), then `evaluate --perplexity`,
`generate` (AWD-LSTM) and `zoo`."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from ptmzoo.cli import main
from tests.conftest import shared_path

TINY = {"awd-lstm": ["model.hidden_size=16", "model.lstm_size=32", "model.num_layers=2"],
        "elmo-small": ["model.hidden_size=16", "model.lstm_size=32", "model.filters=[[1,8],[2,8],[3,16]]"]}


def cli(*args: str, code: int = 0) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        exit_code = main(list(args))
    assert exit_code == code, f"ptmzoo {' '.join(args)} exited with {exit_code}: {err.getvalue()[-2000:]}"
    return out.getvalue() if code == 0 else err.getvalue()


@pytest.mark.parametrize("preset", list(TINY))
def test_pretrain_then_perplexity(preset, wiki_shards, tmp_path):
    out = str(tmp_path / preset)
    printed = cli("pretrain", "--preset", preset, "--data", wiki_shards, "--out", out, "--steps", "12",
                  "--batch-size", "4", "--seq-len", "24", "--lr", "3e-3", "--no-progress", *TINY[preset],
                  "train.log_every=1", "train.eval_every=12", "train.eval_batches=2")
    assert f"pre-trained {preset} for 12 steps" in printed and "eval_ppl" in printed
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    if preset == "awd-lstm":  # the LM loss with AR and TAR beside it; lengths vary from step to step
        assert {"loss_awd_lm", "loss_ar", "loss_tar"} <= set(records[0])
        state = os.path.join(out, "checkpoints", "step_00000012", "trainer_state", "objectives_rank0.safetensors")
        assert os.path.exists(state)  # the carried LSTM state
    text = tmp_path / "text.txt"
    with open(shared_path("en", "corpus", "wikitext2.valid.txt"), encoding="utf-8") as fh:
        text.write_text(fh.read()[:3000])
    result = json.loads(cli("evaluate", os.path.join(out, "final"), "--perplexity", str(text), "--context", "32"))
    assert result["perplexity"] > 1 and result["scored_tokens"] > 100
    if preset == "awd-lstm":
        generated = cli("generate", os.path.join(out, "final"), "--prompt", "The city", "--prompt", "In the",
                        "--max-new-tokens", "5", "--num-beams", "2")
        assert generated.count("The city") == 1 and "In the" in generated
        assert "drop --compile" in cli("generate", os.path.join(out, "final"), "--prompt", "a", "--compile", code=2)
    else:  # a bidirectional LM does not continue text
        assert "cannot generate" in cli("generate", os.path.join(out, "final"), "--prompt", "a", code=2)


def test_the_rnn_presets_and_their_parameter_counts():
    """What `ptmzoo zoo` lists: the backbone and the softmax of the preset's vocabulary. Without the
    softmax and with one bias vector per LSTM cell (AllenNLP's count), the ELMo sizes are 13.6M, 28.0M
    and 93.6M."""
    import torch

    from ptmzoo.catalog import build_backbone, count_parameters
    from ptmzoo.presets import get_preset

    for name, allennlp in (("elmo-small", 13_593_312), ("elmo-medium", 28_027_744), ("elmo-original", 93_600_864)):
        preset = get_preset(name)
        with torch.device("meta"):
            backbone = build_backbone("elmo", preset.model)
        second_biases = sum(4 * layer.forward_lstm.lstm.hidden_size * 2 for layer in backbone.layers)
        assert sum(p.numel() for p in backbone.parameters()) - second_biases == allennlp
        softmax = (preset.model.get("hidden_size") // 2 + 1) * 30522
        assert count_parameters(preset) == allennlp + second_biases + softmax
    assert count_parameters(get_preset("awd-lstm")) == 33_522_800  # the paper's 33M on WikiText-2's vocabulary


def test_zoo_lists_the_rnn_presets_with_their_counts():
    listed = {line.split()[0]: line.split()[2] for line in cli("zoo").splitlines()[1:] if line.strip()}
    assert listed["elmo-small"] == "17,547,034" and listed["elmo-medium"] == "35,904,666"
    assert listed["elmo-original"] == "109,324,186" and listed["awd-lstm"] == "33,522,800"
    assert listed["cove"] == "29,300,100"
