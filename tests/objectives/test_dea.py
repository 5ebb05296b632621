"""ERNIE-THU's denoising entity auto-encoder on the People's Daily corpus: corruption rates (5%
replaced, 15% dropped, 80% kept), targets exactly at the aligned tokens, tokens and specials
untouched; the head's softmax over the sequence's (or batch's) entities; MLM + dEA pre-training
lowers both losses; the checkpoint keeps the entity names and table; a classifier fine-tunes from
it on plain text; mistakes end with one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ptmzoo.cli import main
from ptmzoo.data.packing import PackedBlocks
from ptmzoo.data.prepare import Segmenter, prepare_corpus
from ptmzoo.data.shards import ShardedCorpus
from ptmzoo.errors import UserError
from ptmzoo.finetune.run import FinetuneConfig, run_finetune
from ptmzoo.loading import load
from ptmzoo.models.base import BackboneOutput
from ptmzoo.models.ernie import ErnieConfig, ErnieModel
from ptmzoo.objectives import PretrainCollator, build_objectives
from ptmzoo.objectives.dea import DEAHead
from ptmzoo.train.pretrain import PretrainJob, PretrainRecipe
from tests.objectives.ernie_helpers import LINES, ernie_corpus
from tests.objectives.objective_helpers import people_daily_lines

STEPS = 150
SMALL = {"num_layers": 2, "knowledge_layers": 1, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128}


@pytest.fixture(scope="module")
def pd(tmp_path_factory):
    return ernie_corpus(tmp_path_factory, people_daily_lines(LINES))


def recipe(pd, **changes) -> PretrainRecipe:
    data = {"preset": "ernie-thu-tiny", "objectives": {"mlm": {}, "dea": {}}, "model": dict(SMALL),
            "data": {"shards": pd["shards"], "seq_len": 64},
            "train": {"batch_size": 16, "max_steps": STEPS, "lr": 2e-3, "warmup_steps": 10, "log_every": 1,
                      "eval_every": 10**6, "eval_batches": 2, "save_every": 10**6, "seed": 0}}
    data.update(changes)
    return PretrainRecipe.from_dict(data)


def test_corruption_rates_targets_and_untouched_tokens(pd):
    tok = pd["tokenizer"]
    corpus = ShardedCorpus(pd["shards"])
    [dea] = build_objectives({"dea": {}}, tok, seed=3)
    dea.check_corpus(corpus)
    blocks = PackedBlocks(corpus.split("train"), 126, tok.sep_id, (tok.cls_id,), (tok.sep_id,))
    samples = [blocks[(i, epoch)] for epoch in range(3) for i in range(len(blocks))]
    original = PretrainCollator([], tok.pad_id)(samples)
    batch = PretrainCollator([dea], tok.pad_id)(samples)
    before, after, labels = original["entity_ids"], batch["entity_ids"], batch["dea_labels"]
    aligned = before > 0
    count = int(aligned.sum())
    assert count > 3000
    assert torch.equal(labels[aligned], before[aligned]) and (labels[~aligned] == -100).all()
    assert (after[~aligned] == 0).all() and torch.equal(batch["input_ids"], original["input_ids"])
    special = torch.isin(original["input_ids"], torch.tensor(tok.special_ids)) | (original["attention_mask"] == 0)
    assert special.any() and not aligned[special].any()
    dropped = aligned & (after == 0)
    replaced = aligned & (after > 0) & (after != before)
    kept = aligned & (after == before)
    assert int(dropped.sum() + replaced.sum() + kept.sum()) == count
    # binomial standard deviations at n ~ 4,000: 0.006 (15%), 0.003 (5%), 0.006 (80%)
    assert abs(dropped.sum() / count - 0.15) < 0.025 and abs(replaced.sum() / count - 0.05) < 0.015
    assert abs(kept.sum() / count - 0.80) < 0.025
    assert (after[replaced] >= 1).all() and (after[replaced] <= len(pd["names"])).all()
    again = PretrainCollator([dea], tok.pad_id)(samples)
    assert torch.equal(again["entity_ids"], after)  # seeded per sample: the same draw again
    rows = len(blocks)
    assert not torch.equal(after[:rows], after[rows : 2 * rows])  # and a new one next epoch


def test_head_softmax_over_each_sequences_entities():
    config = ErnieConfig(vocab_size=20, hidden_size=16, num_layers=2, knowledge_layers=1, num_heads=2,
                         intermediate_size=32, num_entities=6, entity_size=4, entity_heads=2)
    torch.manual_seed(0)
    backbone = ErnieModel(config)
    hidden = torch.randn(2, 5, 16)
    labels = torch.tensor([[-100, 2, 3, 2, -100], [4, -100, -100, -100, 5]])
    batch = {"dea_labels": labels}
    table = backbone.entity_embeddings.weight.detach()
    for mode, rows_candidates in (("sequence", [[2, 3], [4, 5]]), ("batch", [[2, 3, 4, 5]] * 2)):
        head = DEAHead(backbone, candidates=mode)
        query = head.norm(head.act(head.dense(hidden))).detach()
        expected = 0.0
        for row, position in zip(*torch.nonzero(labels != -100, as_tuple=True)):
            candidates = rows_candidates[row]
            scores = query[row, position] @ table[candidates].T
            expected += float(torch.logsumexp(scores, 0) - scores[candidates.index(int(labels[row, position]))])
        assert head.loss_sum(BackboneOutput(hidden), batch).item() == pytest.approx(expected, rel=1e-5)
    single = {"dea_labels": torch.tensor([[-100, 2, 2, -100, -100]])}
    assert DEAHead(backbone).loss_sum(BackboneOutput(hidden[:1]), single).item() == 0.0  # one candidate
    nothing = DEAHead(backbone).loss_sum(BackboneOutput(hidden[:1].requires_grad_()), {"dea_labels": torch.full((1, 5), -100)})
    assert nothing.item() == 0.0 and nothing.requires_grad


@pytest.fixture(scope="module")
def trained(pd, tmp_path_factory):
    out = tmp_path_factory.mktemp("ernie_run")
    job = PretrainJob(recipe(pd))
    trainer = job.trainer(str(out), progress=False)
    trainer.train()
    trainer.save_model(str(out / "final"))
    return job, out


def test_mlm_and_dea_pretraining_lowers_both_losses(trained):
    _, out = trained
    with open(out / "metrics.jsonl") as fh:
        records = [r for r in map(json.loads, fh) if "loss_dea" in r]
    assert len(records) == STEPS
    first, last = ({head: np.mean([r[f"loss_{head}"] for r in part]) for head in ("dea", "mlm")}
                   for part in (records[:20], records[-20:]))
    assert last["dea"] < 0.5 * first["dea"], (first, last)  # measured: 1.6 -> 0.26
    assert last["mlm"] < first["mlm"] - 0.5, (first, last)  # measured: 7.3 -> 6.4 (a unigram model's level)


def test_checkpoint_keeps_entities_and_reproduces_the_model(trained, pd):
    job, out = trained
    loaded = load(str(out / "final"))
    assert loaded.family == "ernie" and loaded.meta["entities"] == pd["names"]
    assert set(loaded.model.heads) == {"mlm", "dea"}
    table = loaded.model.backbone.entity_embeddings.weight
    assert torch.equal(table[1:], torch.from_numpy(pd["vectors"])) and not table.requires_grad
    batch = job.collate([job.train_data[(i, 0)] for i in range(8)])
    job.model.eval()
    with torch.no_grad():
        expected = job.model(**job.model.select_inputs(batch), targets=batch)
        got = loaded.model(**loaded.model.select_inputs(batch), targets=batch)
    assert torch.equal(expected.last_hidden_state, got.last_hidden_state)
    assert all(torch.equal(expected.loss_sums[k], got.loss_sums[k]) for k in ("mlm", "dea"))


def test_classifier_fine_tunes_from_an_ernie_checkpoint_on_plain_text(trained, tmp_path):
    _, out = trained
    segment = Segmenter("tagged")
    rows = []
    for line in people_daily_lines(LINES)[:96]:
        plain = segment(line)[0].replace(" ", "")
        rows.append(f"{plain[:60]}\t{'has_place' if '/ns' in line else 'no_place'}\n")
    data = tmp_path / "places.tsv"
    data.write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
    cfg = FinetuneConfig.from_dict({"model": str(out / "final"), "train_file": str(data), "dev_file": str(data),
                                    "epochs": 1, "options": {"max_length": 64},
                                    "train": {"batch_size": 16, "lr": 1e-3, "log_every": 1000}})
    report = run_finetune(cfg, str(tmp_path / "cls"), progress=False)
    assert 0 <= report["dev"]["accuracy"] <= 1 and sorted(report["labels"]) == ["has_place", "no_place"]
    best = load(os.path.join(tmp_path, "cls", "best"))
    assert best.family == "ernie" and "classification" in best.model.heads
    assert main(["evaluate", "--model", str(tmp_path / "cls"), "--file", str(data)]) == 0


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step")  # the step is stubbed out on purpose
def test_sequence_candidates_give_the_same_gradient_for_any_micro_batch_split(pd, tmp_path):
    results = []
    for micro in (8, 2):
        settings = recipe(pd).train.to_dict() | {"batch_size": 8, "micro_batch_size": micro, "max_grad_norm": 0}
        job = PretrainJob(recipe(pd, train=settings, model=SMALL | {"hidden_dropout": 0.0, "attention_dropout": 0.0}))
        trainer = job.trainer(str(tmp_path / f"m{micro}"), progress=False)
        trainer.optimizer.step = lambda: None
        record = trainer._train_step(trainer._micro_batches())
        grads = {n: p.grad.clone() for n, p in job.model.named_parameters() if p.grad is not None}
        results.append((record["loss_dea"], grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a > 0 and loss_a == pytest.approx(loss_b, rel=1e-5) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4)


def test_mistakes_end_with_one_line(pd, tmp_path, capsys):
    with pytest.raises(UserError, match="ernie-thu"):
        PretrainJob(recipe(pd, preset="bert-tiny", model={}))
    with pytest.raises(UserError, match="does not fit the entity vectors"):
        PretrainJob(recipe(pd, model=SMALL | {"entity_size": 16}))
    plain = str(tmp_path / "plain")
    prepare_corpus([pd["corpus"]], str(pd["root"] / "tokenizer"), plain, workers=1, progress=False,
                   segmentation="tagged")
    code = main(["pretrain", "--preset", "ernie-thu-tiny", "--data", plain, "--out", str(tmp_path / "run"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "prepare --entities" in err
