"""Perplexity of a model with a memory over a long text: with a memory of the whole text it is the
full-context causal likelihood; without one, each segment alone; in between, each token reads
the segment so far and the memory; by position and from the command line."""

import math

import pytest
import torch

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.errors import UserError
from ptmzoo.evaluation.perplexity import perplexity_with_memory
from tests.conftest import perturb


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model("transfo_xl", {"vocab_size": 53, "hidden_size": 24, "num_layers": 2, "num_heads": 2,
                                     "intermediate_size": 40, "mem_len": 7, "cutoffs": [10, 30]})
    net.add_head("xl_lm", HEADS["xl_lm"])
    return perturb(net)


def nll_of(model, ids, context_of):
    """Mean -log p(ids[t] | ids[context_of(t):t]), each written out as one plain causal pass."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            log_probs = model(torch.tensor([ids[context_of(t):t]]), mems=None).logits[0, -1]
            total -= log_probs[ids[t]].item()
    return total / (len(ids) - 1)


def test_a_memory_of_the_whole_text_is_the_full_context_likelihood(model):
    ids = torch.randint(0, 53, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    result = perplexity_with_memory(model, ids, segment=6, mem_len=100)
    assert result["scored_tokens"] == 39 and result["mem_len"] == 100
    assert result["nll"] == pytest.approx(nll_of(model, ids, lambda t: 0), abs=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["nll"]))


def test_without_memory_each_segment_is_read_alone(model):
    ids = torch.randint(0, 53, (40,), generator=torch.Generator().manual_seed(2)).tolist()
    # the token predicted at position t of the input belongs to segment (t - 1) // 6
    result = perplexity_with_memory(model, ids, segment=6, mem_len=0)
    assert result["nll"] == pytest.approx(nll_of(model, ids, lambda t: (t - 1) // 6 * 6), abs=1e-5)
    with_memory = perplexity_with_memory(model, ids, segment=6)  # the model's mem_len, 7
    assert with_memory["mem_len"] == 7 and with_memory["nll"] != pytest.approx(result["nll"], abs=1e-4)


def test_position_nll_averages_the_positions_of_the_segments(model):
    ids = torch.randint(0, 53, (31,), generator=torch.Generator().manual_seed(3)).tolist()
    result = perplexity_with_memory(model, ids, segment=5, mem_len=0, by_position=True)
    assert len(result["position_nll"]) == 5
    assert sum(result["position_nll"]) / 5 == pytest.approx(result["nll"], abs=1e-5)  # 30 scored = 6 x 5
    with pytest.raises(UserError, match="--mem-len must be 0"):
        perplexity_with_memory(model, ids, segment=5, mem_len=-1)


def test_a_model_without_memory_head_is_refused_in_one_line():
    gpt = build_model("gpt2", {"vocab_size": 20, "hidden_size": 8, "num_layers": 1, "num_heads": 2,
                               "intermediate_size": 8, "max_position_embeddings": 16})
    with pytest.raises(UserError, match="no memory language-model head"):
        perplexity_with_memory(gpt, [1, 2, 3], segment=2)


def test_evaluate_perplexity_with_mem_len_and_generate_from_the_command_line(model, tmp_path, capsys):
    import json

    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.cli import main
    from ptmzoo.data.tokenizers import train_tokenizer

    text = "the cat sat on the mat and the dog sat on the log " * 30
    tokenizer = train_tokenizer(iter([text]), "bpe", 300)
    net = build_model("transfo_xl", {"vocab_size": tokenizer.vocab_size, "hidden_size": 16, "num_layers": 1,
                                     "num_heads": 2, "intermediate_size": 32, "mem_len": 5})
    net.add_head("xl_lm", HEADS["xl_lm"])
    save_pretrained(str(tmp_path / "xl"), net, tokenizer)
    (tmp_path / "text.txt").write_text(text)
    assert main(["evaluate", str(tmp_path / "xl"), "--perplexity", str(tmp_path / "text.txt"), "--context", "8",
                 "--mem-len", "12"]) == 0
    result = json.loads(capsys.readouterr().out)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert result == pytest.approx(perplexity_with_memory(net.eval(), ids, 8, 12))
    # generation reads the memory too (greedy: the prompt and its continuation come back)
    assert main(["generate", str(tmp_path / "xl"), "--prompt", "the cat", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("the cat")
    gpt = build_model("gpt2", {"vocab_size": tokenizer.vocab_size, "hidden_size": 16, "num_layers": 1,
                               "num_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16})
    gpt.add_head("clm", HEADS["clm"])
    save_pretrained(str(tmp_path / "gpt"), gpt, tokenizer)
    assert main(["evaluate", str(tmp_path / "gpt"), "--perplexity", str(tmp_path / "text.txt"),
                 "--mem-len", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--mem-len is for models with a memory" in err
