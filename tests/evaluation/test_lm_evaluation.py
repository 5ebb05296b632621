"""Sliding-window perplexity against a direct computation, and zero-/few-shot classification:
the prompt builder, answer log-likelihoods, and predictions on a hand case."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.evaluation import (
    FewShotTask,
    build_prompt,
    continuation_logprobs,
    fewshot_classify,
    perplexity,
    strided_windows,
)
from ptmzoo.evaluation import fewshot as fewshot_module
from tests.generation.generation_helpers import tiny_gpt2


@pytest.fixture(scope="module")
def model():
    return tiny_gpt2(seed=4, initializer_range=0.1)


def test_strided_windows_score_every_token_once():
    windows = strided_windows(20, 8, 3)
    assert windows[0] == (0, 8, 1) and windows[1] == (3, 11, 8) and windows[-1][1] == 20
    scored = [t for _, end, first in windows for t in range(first, end)]
    assert scored == list(range(1, 20))


@pytest.mark.parametrize("context, stride", [(16, 5), (16, 16), (12, 1)])
def test_strided_perplexity_equals_direct_computation(model, context, stride):
    torch.manual_seed(0)
    ids = torch.randint(0, 97, (50,)).tolist()
    # Direct: token t is scored in the first window (starting at a multiple of the stride) that
    # holds it after its first position, conditioned on the window's tokens before it.
    nll = []
    with torch.no_grad():
        for t in range(1, len(ids)):
            k = max(0, (t - context) // stride + 1)
            if k * stride == t:
                continue  # first token of its only window: never scored
            logits = model(torch.tensor([ids[k * stride:t]])).logits[0, -1]
            nll.append(-F.log_softmax(logits, -1)[ids[t]].item())
    result = perplexity(model, ids, context=context, stride=stride, batch_size=3)
    assert result["scored_tokens"] == len(nll)
    assert result["nll"] == pytest.approx(sum(nll) / len(nll), abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)


def test_one_window_is_the_plain_language_model_loss(model):
    ids = torch.randint(0, 97, (1, 30))
    with torch.no_grad():
        logits = model(ids).logits[0]
    expected = F.cross_entropy(logits[:-1], ids[0, 1:]).item()
    assert perplexity(model, ids[0].tolist(), context=64, stride=64)["nll"] == pytest.approx(expected, abs=1e-5)


SST = FewShotTask(template="Review: {sentence}\nSentiment:", verbalizers={"0": "negative", "1": "positive"})


def test_prompt_builder():
    demos = [{"sentence": "a fine film", "label": "1"}, {"sentence": "dull", "label": "0"}]
    prompt = build_prompt(SST, demos, {"sentence": "great fun", "label": "1"}, ["0", "1"])
    assert prompt == ("Review: a fine film\nSentiment: positive\n\nReview: dull\nSentiment: negative\n\n"
                      "Review: great fun\nSentiment:")
    assert build_prompt(SST, [], {"sentence": "x"}, ["0", "1"]) == "Review: x\nSentiment:"
    choice = FewShotTask(template="Q: {q}\nA:", choices_column="choices")
    row = {"q": "2+2?", "choices": ["3", "4"], "label": 1}
    assert build_prompt(choice, [row], row, []) == "Q: 2+2?\nA: 4\n\nQ: 2+2?\nA:"


def test_continuation_logprobs_equal_unpadded_forwards(model):
    contexts, answers = [[5, 6, 7, 8], [9], [10, 11]], [[12, 13], [14, 15, 16], [17]]
    got = continuation_logprobs(model, contexts, answers, batch_size=2)
    with torch.no_grad():
        for (total, count), context, answer in zip(got, contexts, answers):
            log_probs = F.log_softmax(model(torch.tensor([context + answer])).logits[0], -1)
            expected = sum(log_probs[len(context) - 1 + i, tok].item() for i, tok in enumerate(answer))
            assert count == len(answer) and total == pytest.approx(expected, abs=1e-5)


class CharTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def test_fewshot_classify_hand_case(monkeypatch):
    seen = []

    def fake_scores(model, contexts, answers, batch_size=16):
        # an "LM" that answers from the last review's words, with "positive" costing 2 tokens' worth
        results = []
        for context, answer in zip(contexts, answers):
            last = "".join(map(chr, context)).rsplit("Review:", 1)[-1]
            word = "".join(map(chr, answer)).strip()
            hit = ("good" in last) == (word == "positive")
            results.append((0.0 if hit else -3.0 * len(answer), len(answer)))
            seen.append("".join(map(chr, context)))
        return results

    monkeypatch.setattr(fewshot_module, "continuation_logprobs", fake_scores)
    lm = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=1000))
    train = [{"sentence": "good plot", "label": "1"}, {"sentence": "bad acting", "label": "0"}]
    test = [{"sentence": "good cast", "label": "1"}, {"sentence": "bad end", "label": "0"},
            {"sentence": "bad but good", "label": "0"}]
    result = fewshot_classify(lm, CharTokenizer(), SST, train, test, shots=1, seed=0)
    assert result["predictions"] == [1, 0, 1] and result["accuracy"] == pytest.approx(2 / 3)
    assert seen[0].endswith("Review: good cast\nSentiment:") and seen[0].count("Review:") == 2
    assert seen[0] == seen[1]  # every candidate after the same prompt
    # too little room: demonstrations are dropped before the prompt is cut
    small = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=40))
    seen.clear()
    fewshot_classify(small, CharTokenizer(), SST, train, test[:1], shots=2)
    assert seen[0] == "Review: good cast\nSentiment:"


def test_evaluate_cli_perplexity_and_fewshot(tmp_path, capsys, bpe_tokenizer):
    import json

    import ptmzoo
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.cli import main

    path = str(tmp_path / "gpt")
    save_pretrained(path, tiny_gpt2(bpe_tokenizer.vocab_size, seed=5), bpe_tokenizer)
    gpt = ptmzoo.load(path)
    text = tmp_path / "text.txt"
    text.write_text("The history of the city begins with a small market by the river. " * 6)
    assert main(["evaluate", path, "--perplexity", str(text), "--context", "32", "--stride", "12"]) == 0
    got = json.loads(capsys.readouterr().out)
    ids = bpe_tokenizer.encode(text.read_text(), add_special_tokens=False)
    assert got == pytest.approx(perplexity(gpt.model, ids, 32, 12))

    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("sentence\tlabel\na fine film\t1\ndull and slow\t0\nwonderful\t1\n")
    test.write_text("sentence\tlabel\ngreat fun\t1\nboring\t0\n")
    args = ["evaluate", "--model", path, "--fewshot", str(test), "--train", str(train), "--shots", "2",
            "--template", "Review: {sentence}\\nSentiment:", "--verbalizers", "0=negative,1=positive"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    task = FewShotTask(template="Review: {sentence}\nSentiment:", verbalizers={"0": "negative", "1": "positive"})
    rows = lambda f: [dict(zip(["sentence", "label"], line.split("\t"))) for line in f.read_text().splitlines()[1:]]
    expected = fewshot_classify(gpt.model, bpe_tokenizer, task, rows(train), rows(test), shots=2)
    assert got == {"accuracy": expected["accuracy"], "examples": 2, "shots": 2}
    assert main(args[:5] + ["--shots", "1"]) == 2  # demonstrations need --train
    assert "--train" in capsys.readouterr().err
