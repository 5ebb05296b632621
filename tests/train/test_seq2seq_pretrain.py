"""`ptmzoo pretrain` runs T5 with span corruption and BART with denoising for a few steps."""

import json
import os

import pytest

from tests.conftest import make_shards, run_cli, shared_path


@pytest.mark.parametrize("preset, style, objective", [("t5-tiny", "t5", "span_corruption"),
                                                      ("bart-tiny", "roberta", "denoising")])
def test_pretrain_seq2seq_preset(preset, style, objective, tmp_path, english_docs):
    from ptmzoo.data.tokenizers import train_tokenizer

    tokenizer = train_tokenizer(iter(english_docs[:10]), "bpe", 600, style=style)
    shards = make_shards(str(tmp_path), tokenizer, shared_path("en", "corpus", "wiki_demo.txt"))
    out = str(tmp_path / "run")
    result = run_cli("pretrain", "--preset", preset, "--data", shards, "--out", out, "--steps", "3",
                     "--batch-size", "4", "--seq-len", "48", "--no-progress", "train.log_every=1",
                     "model.num_layers=1")
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    with open(os.path.join(out, "final", "ptmzoo.json")) as fh:
        meta = json.load(fh)
    assert meta["family"] == preset.split("-")[0] and meta["heads"][objective]["kind"] == "seq2seq_lm"
    import ptmzoo

    model = ptmzoo.load(os.path.join(out, "final"))
    assert ptmzoo.generate(model, "A short test.", max_new_tokens=3).token_ids
