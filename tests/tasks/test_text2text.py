"""Text-to-text fine-tuning (T5): input rendering, NER targets as text and back, constrained
decoding to the label names, a short real fine-tune from the CLI, and malformed input."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from ptmzoo.catalog import HEADS, build_model
from ptmzoo.cli import main
from ptmzoo.data.tokenizers import train_tokenizer
from ptmzoo.errors import UserError
from ptmzoo.generation.constrained import TokenTrie
from ptmzoo.generation.seq2seq import generate_seq2seq
from ptmzoo.loading import load
from ptmzoo.models.t5 import T5Config, T5Model
from ptmzoo.tasks import Text2TextOptions, Text2TextTask
from ptmzoo.tasks.tagging import get_entities
from ptmzoo.tasks.text2text import (
    entity_metrics,
    label_name_map,
    parse_entities,
    render_entities,
)
from tests.conftest import read_lines, shared_path

CONLL = """-DOCSTART- -X- -X- O

John NNP B-NP I-PER
Smith NNP I-NP I-PER
lives VBZ B-VP O
in IN B-PP O
New NNP B-NP I-LOC
York NNP I-NP I-LOC
. . O O

Nothing NN B-NP O
here RB B-ADVP O
"""


@pytest.fixture(scope="module")
def sst_tokenizer():
    """A T5-style unigram tokenizer (<pad> 0, </s> 1, <unk> 2) on SST-2 sentences."""
    lines = [line.split("\t")[0] for line in read_lines(shared_path("en", "sst2", "train.tsv"), 3000)[1:]]
    extra = ["positive negative neutral very mixed feelings sentence premise hypothesis none PER LOC ORG MISC"] * 20
    return train_tokenizer(iter(lines + extra), "unigram", 1000)


def make_task(tokenizer, labels=(), **options) -> Text2TextTask:
    return Text2TextTask(Text2TextOptions.from_dict(options), tokenizer, list(labels), 512)


# ---- rendering ------------------------------------------------------------------------------------
def test_inputs_and_targets_render_t5_style(sst_tokenizer, tmp_path):
    single = make_task(sst_tokenizer, ["0", "1"], text_column="sentence", prefix="sst2",
                       label_names="0=negative,1=positive")
    samples = single.encode([{"sentence": "a charming film", "label": "1"}, {"sentence": "dull", "label": "0"}], "f")
    assert [s["source"] for s in samples] == ["sst2 sentence: a charming film", "sst2 sentence: dull"]
    assert [s["target"] for s in samples] == ["positive", "negative"] and [s["label_index"] for s in samples] == [1, 0]
    assert samples[0]["labels"] == sst_tokenizer.encode("positive", add_special_tokens=False) + [sst_tokenizer.eos_id]

    pair = make_task(sst_tokenizer, ["0", "1"], text_column="p", text_pair_column="h", prefix="rte",
                     field_names="premise,hypothesis", label_names="entailment,not_entailment")
    assert pair.encode([{"p": "A man sleeps.", "h": "He is awake.", "label": "1"}], "f")[0]["source"] == \
        "rte premise: A man sleeps. hypothesis: He is awake."
    assert pair.labels == ["entailment", "not_entailment"]
    default_pair = make_task(sst_tokenizer, ["0", "1"], text_column="s1", text_pair_column="s2")
    assert default_pair.render_input(["a", "b"]) == "sentence1: a sentence2: b"
    assert default_pair.labels == ["0", "1"]  # no --label-names: the values are the targets
    free = make_task(sst_tokenizer, target_kind="text", text_column="article", prefix="summarize:")
    sample = free.encode([{"article": "long text", "target": "short"}], "f")[0]
    assert (sample["source"], sample["target"]) == ("summarize: long text", "short")
    assert make_task(sst_tokenizer, ["0", "1"], field_names="none").render_input(["x"]) == "x"

    names = tmp_path / "class.txt"
    names.write_text("finance\nrealty\nstocks\n")
    assert label_name_map(str(names), ["0", "2"]) == {"0": "finance", "1": "realty", "2": "stocks"}
    assert label_name_map("neg,pos", ["1"]) == {"0": "neg", "1": "pos"}


def test_ner_targets_from_conll_and_cluener(sst_tokenizer, tmp_path):
    conll = tmp_path / "ner.txt"
    conll.write_text(CONLL)
    options = {"target_kind": "entities", "prefix": "ner"}
    rows = Text2TextTask.read(str(conll), Text2TextOptions.from_dict(options))
    task = make_task(sst_tokenizer, Text2TextTask.infer_labels(rows, Text2TextOptions.from_dict(options), "f"), **options)
    assert task.labels == ["LOC", "PER"]
    samples = task.encode(rows, str(conll))
    assert [s["source"] for s in samples] == ["ner John Smith lives in New York .", "ner Nothing here"]
    assert [s["target"] for s in samples] == ["PER: John Smith; LOC: New York", "none"]

    cluener = tmp_path / "c.json"
    cluener.write_text(json.dumps({"text": "张三在北京工作", "label": {"name": {"张三": [[0, 1]]},
                                                              "address": {"北京": [[3, 4]]}}}, ensure_ascii=False))
    rows = Text2TextTask.read(str(cluener), Text2TextOptions.from_dict({"target_kind": "entities"}))
    sample = make_task(sst_tokenizer, target_kind="entities").encode(rows, str(cluener))[0]
    assert (sample["source"], sample["target"]) == ("张三在北京工作", "name: 张三; address: 北京")


def test_entity_text_round_trip_and_metrics(wordpiece_tokenizer):
    entities = [("PER", "John Smith"), ("LOC", "New York"), ("ORG", "U.S. Steel"), ("PER", "John Smith")]
    assert parse_entities(render_entities(entities)) == (entities, True)
    assert parse_entities(render_entities([])) == ([], True)
    # through a lower-casing WordPiece tokenizer that spaces out punctuation
    decoded = wordpiece_tokenizer.decode(wordpiece_tokenizer.encode(render_entities(entities), add_special_tokens=False))
    assert parse_entities(decoded)[0] == [("per", "john smith"), ("loc", "new york"), ("org", "u. s. steel"),
                                          ("per", "john smith")]
    assert parse_entities("PER: John; Paris; : x") == ([("PER", "John")], False)
    # real sentences: the entities of the tags, rendered and read back
    with open(shared_path("en", "conll2003", "dev.txt"), encoding="utf-8") as fh:
        blocks = [b for b in fh.read().split("\n\n")[1:200] if b.strip()]
    for block in blocks:
        words, tags = zip(*[(line.split()[0], line.split()[-1]) for line in block.splitlines()])
        gold = [(t, " ".join(words[a : b + 1])) for t, a, b in get_entities(list(tags))]
        assert parse_entities(render_entities(gold)) == (gold, True)
    scores = entity_metrics([[("PER", "a"), ("LOC", "b")], [("ORG", "c")]], [[("PER", "a"), ("LOC", "x")], []])
    assert scores == {"precision": 0.5, "recall": pytest.approx(1 / 3), "f1": pytest.approx(0.4)}


# ---- constrained decoding -----------------------------------------------------------------------
LABELS = ["positive", "negative", "very positive", "very negative", "not very positive", "not at all negative",
          "neutral", "mixed feelings"]


@pytest.fixture(scope="module")
def random_t5(sst_tokenizer):
    torch.manual_seed(0)
    config = T5Config(vocab_size=sst_tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=2, head_dim=16,
                      intermediate_size=64, hidden_dropout=0.0, attention_dropout=0.0)
    model = build_model("t5", backbone=T5Model(config))
    model.add_head("seq2seq_lm", HEADS["seq2seq_lm"])
    return model.eval()


def label_scores(model, task, samples) -> torch.Tensor:
    """[examples, labels]: log p(label tokens, end | input) by teacher forcing."""
    scores = []
    with torch.no_grad():
        for ids in task.label_tokens:
            batch = task.collate([{"input_ids": s["input_ids"], "labels": ids + [task.end_id]} for s in samples])
            out = model.backbone(batch["input_ids"], batch["attention_mask"],
                                 decoder_input_ids=batch["decoder_input_ids"])
            log_p = F.log_softmax(model.heads["seq2seq_lm"].logits(out, {}).float(), -1)
            scores.append(log_p.gather(-1, batch["seq2seq_labels"][..., None])[..., 0].sum(-1))
    return torch.stack(scores, -1)


def test_constrained_decoding_gives_the_best_label_by_teacher_forcing(sst_tokenizer, random_t5):
    task = make_task(sst_tokenizer, [str(i) for i in range(len(LABELS))], text_column="sentence", constrained=True,
                     num_beams=2, label_names=",".join(LABELS))
    assert len({ids[0] for ids in task.label_tokens}) < len(LABELS)  # labels share first tokens: a real tree
    sentences = [line.split("\t")[0] for line in read_lines(shared_path("en", "sst2", "dev.tsv"), 81)[1:]]
    samples = task.encode([{"sentence": s} for s in sentences], "f", with_labels=False)
    task.start_id = random_t5.backbone.decoder_start_id
    outputs = task.predict(random_t5, samples, 8, "cpu")
    assert set(outputs) <= set(LABELS)
    best = label_scores(random_t5, task, samples).argmax(-1).tolist()
    assert outputs == [LABELS[i] for i in best]
    free = Text2TextTask.predict(make_task(sst_tokenizer, [str(i) for i in range(len(LABELS))], num_beams=2,
                                           label_names=",".join(LABELS)), random_t5, samples, 8, "cpu")
    assert not set(free) <= set(LABELS)  # the same random model, unconstrained, says other things
    # greedy and sampling stay inside the tree too
    sources = [s["input_ids"] for s in samples]
    for options in ({"num_beams": 1}, {"temperature": 1.0, "seed": 0}):
        out = generate_seq2seq(random_t5, sources, sst_tokenizer, constraint=task.trie, max_new_tokens=8,
                               eos_token_id=task.end_id, **options)
        assert set(out.texts) <= set(LABELS) and all(ids[-1] == task.end_id for ids in out.token_ids)


def test_token_trie_next_tokens():
    trie = TokenTrie([[5, 6], [5, 7, 8], [9]], end_id=1)
    assert sorted(trie.next_tokens([])) == [5, 9]
    assert sorted(trie.next_tokens([5])) == [6, 7]
    assert trie.next_tokens([5, 6]) == [1] and trie.next_tokens([9]) == [1]
    assert trie.next_tokens([5, 6, 1]) == [] and trie.next_tokens([4]) == []
    with pytest.raises(UserError):
        TokenTrie([[5], []], end_id=1)


# ---- end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t5_init(tmp_path_factory, sst_tokenizer):
    root = tmp_path_factory.mktemp("t2t")
    sst_tokenizer.save(str(root / "tok"))
    assert main(["init", "--preset", "t5-tiny", "--tokenizer", str(root / "tok"), "--out", str(root / "init"),
                 "hidden_dropout=0.0", "attention_dropout=0.0"]) == 0
    return str(root / "init")


def test_sst2_fine_tune_from_the_cli_learns_then_evaluate_and_predict(t5_init, tmp_path, capsys):
    lines = read_lines(shared_path("en", "sst2", "train.tsv"), 201)
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("\n".join(lines) + "\n")
    dev.write_text("\n".join(lines[:101]) + "\n")  # training rows: does it learn them?
    labels = [line.rsplit("\t", 1)[1] for line in lines[1:101]]
    majority = max(labels.count("0"), labels.count("1")) / len(labels)
    out = str(tmp_path / "run")
    assert main(["finetune", "--task", "text2text", "--model", t5_init, "--train", str(train), "--dev", str(dev),
                 "--text-column", "sentence", "--prefix", "sst2", "--label-names", "0=negative,1=positive",
                 "--constrained", "--label-smoothing", "0", "--max-length", "48", "--epochs", "6",
                 "--batch-size", "16", "--lr", "1e-3", "--no-progress", "--out", out]) == 0
    report = json.loads((tmp_path / os.path.basename(out) / "metrics.json").read_text())
    dev_metrics = report["dev"]
    assert dev_metrics["accuracy"] > majority + 0.1, (dev_metrics, majority)
    assert dev_metrics["invalid_rate"] == 0 and dev_metrics["score"] == dev_metrics["accuracy"]
    best = load(os.path.join(out, "best"))
    assert best.task["label_map"] == {"0": "negative", "1": "positive"} and best.task["options"]["prefix"] == "sst2"
    capsys.readouterr()
    assert main(["evaluate", "--model", out, "--file", str(dev)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(dev_metrics["accuracy"])
    unlabelled = tmp_path / "new.tsv"
    unlabelled.write_text("sentence\na gorgeous , witty film\nboring and tedious\n")
    predictions = tmp_path / "pred.tsv"
    assert main(["predict", os.path.join(out, "best"), "--file", str(unlabelled), "--out", str(predictions)]) == 0
    rows = [line.split("\t") for line in predictions.read_text().splitlines()]
    assert rows[0] == ["input", "prediction"] and rows[1][0] == "sst2 sentence: a gorgeous , witty film"
    assert len(rows) == 3 and {r[1] for r in rows[1:]} <= {"negative", "positive"}


def test_ner_as_text_runs_end_to_end(t5_init, tmp_path):
    with open(shared_path("en", "conll2003", "dev.txt"), encoding="utf-8") as fh:
        blocks = fh.read().split("\n\n")[1:17]
    conll = tmp_path / "ner.txt"
    conll.write_text("\n\n".join(blocks) + "\n")
    out = str(tmp_path / "ner")
    assert main(["finetune", "--task", "text2text", "--target-kind", "entities", "--model", t5_init, "--train",
                 str(conll), "--dev", str(conll), "--num-beams", "1", "--max-length", "24", "--epochs", "1",
                 "--no-progress", "--out", out]) == 0
    report = json.loads((tmp_path / os.path.basename(out) / "metrics.json").read_text())
    assert {"score", "f1", "precision", "recall", "exact_match", "invalid_rate"} == set(report["dev"])
    assert report["labels"] == ["LOC", "MISC", "ORG", "PER"]
    lines = (tmp_path / "ner" / "predictions.dev.tsv").read_text().splitlines()
    rows = Text2TextTask.read(str(conll), Text2TextOptions.from_dict({"target_kind": "entities"}))
    assert lines[0] == "input\ttarget\tprediction" and len(lines) == len(rows) + 1


def test_malformed_input_is_one_line_exit_2(t5_init, sst_tokenizer, tmp_path, capsys):
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    bad_dev = tmp_path / "bad.tsv"
    bad_dev.write_text("sentence\tlabel\nmeh\t2\n")
    base = ["finetune", "--task", "text2text", "--model", t5_init, "--train", str(data), "--out", str(tmp_path / "o"),
            "--text-column", "sentence", "--no-progress"]
    cases = [
        (["--dev", str(data), "--label-column", "y"], "column 'y' not found in d.tsv"),
        (["--dev", str(data), "--label-names", "0=negative"], "label '1' has no name in --label-names"),
        (["--dev", str(data), "--label-names", "0=negative,1="], "expected LABEL=NAME pairs"),
        (["--dev", str(data), "--label-names", "0=bad,1=bad"], "two labels the same name"),
        (["--dev", str(data), "--field-names", "a,b"], "--field-names gives 2 name(s) for 1 text column(s)"),
        (["--dev", str(data), "--target-kind", "text", "--constrained"], "--constrained decodes only the label"),
        (["--dev", str(data), "--format", "conll"], "--format conll reads NER files"),
        (["--dev", str(bad_dev)], "bad.tsv: row 1 has label '2', which is not among the training labels"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, (extra, err)
    bert = str(tmp_path / "bert")
    assert main(["init", "--preset", "bert-tiny", "--tokenizer", os.path.join(os.path.dirname(t5_init), "tok"),
                 "--out", bert]) == 0
    capsys.readouterr()
    assert main(base[:4] + [bert] + base[5:] + ["--dev", str(data)]) == 2
    assert "text2text trains an encoder-decoder or UniLM; this checkpoint is a bert model" in capsys.readouterr().err
