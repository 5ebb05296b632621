"""`ptmzoo generate` as users run it, on a tiny random GPT-2 checkpoint."""

import re

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.models.model import PtmModel
from tests.conftest import run_cli
from tests.generation.generation_helpers import tiny_gpt2


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, bpe_tokenizer):
    path = str(tmp_path_factory.mktemp("gen") / "gpt2")
    save_pretrained(path, tiny_gpt2(bpe_tokenizer.vocab_size, seed=11), bpe_tokenizer)
    return path


def _user_error(result, pattern):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), result.stderr


def test_generate_prints_the_prompt_and_its_continuation(checkpoint, tmp_path):
    gpt = ptmzoo.load(checkpoint)
    expected = ptmzoo.generate(gpt, "The history of", max_new_tokens=8).text
    streamed = run_cli("generate", checkpoint, "--prompt", "The history of", "--max-new-tokens", "8")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "The history of" + expected + "\n"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The history of\n\nA\n")
    batch = run_cli("generate", checkpoint, "--prompt-file", str(prompts), "--max-new-tokens", "8", "--top-k", "20",
                    "--temperature", "0.8", "--seed", "3", "--no-stream")
    assert batch.returncode == 0, batch.stderr
    sampled = ptmzoo.generate(gpt, ["The history of", "A"], max_new_tokens=8, top_k=20, temperature=0.8, seed=3)
    assert batch.stdout == "The history of" + sampled.texts[0] + "\n\nA" + sampled.texts[1] + "\n"
    beams = run_cli("generate", checkpoint, "--prompt", "A", "--max-new-tokens", "6", "--num-beams", "3",
                    "--length-penalty", "0.5", "--stop", "@@")
    assert beams.returncode == 0, beams.stderr
    expected = ptmzoo.generate(gpt, "A", max_new_tokens=6, num_beams=3, length_penalty=0.5, stop="@@").text
    assert beams.stdout == "A" + expected + "\n"


def test_generate_user_errors(checkpoint, tmp_path, bpe_tokenizer):
    _user_error(run_cli("generate", checkpoint), "give a prompt")
    _user_error(run_cli("generate", checkpoint, "--prompt", "x", "--top-p", "1.5"), "top_p must be in")
    _user_error(run_cli("generate", checkpoint, "--prompt", "x", "--max-new-tokens", "500"),
                "exceed the model's context of 128")
    _user_error(run_cli("generate", checkpoint, "--prompt-file", str(tmp_path / "none.txt")), "prompt file not found")
    torch.manual_seed(0)
    bert = PtmModel("bert", build_backbone("bert", {"vocab_size": bpe_tokenizer.vocab_size, "hidden_size": 16,
                                                    "num_layers": 1, "num_heads": 2, "intermediate_size": 32}))
    bert.add_head("mlm", HEADS["mlm"])
    save_pretrained(str(tmp_path / "bert"), bert, bpe_tokenizer)
    _user_error(run_cli("generate", str(tmp_path / "bert"), "--prompt", "x"),
                "cannot generate text: it needs a decoder with a causal LM head")
