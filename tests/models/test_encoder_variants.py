"""RoBERTa, ALBERT and DistilBERT as BERT variants: preset sizes against the papers and
transformers, ALBERT's sharing modes, RoBERTa's positions, a training step with factorized
embeddings, checkpoints of shared weights, and DistilBERT's student initialisation."""

import dataclasses

import pytest
import torch

import ptmzoo
from ptmzoo.catalog import HEADS, build_backbone, count_parameters
from ptmzoo.checkpoint import save_pretrained
from ptmzoo.cli import main
from ptmzoo.compress.student import every_other_layer, init_student
from ptmzoo.errors import UserError
from ptmzoo.models.model import PtmModel
from ptmzoo.objectives import OBJECTIVES
from ptmzoo.presets import get_preset

TINY = {"vocab_size": 60, "hidden_size": 32, "num_layers": 4, "num_heads": 4, "intermediate_size": 48,
        "max_position_embeddings": 24}


def with_heads(family, config, *heads, seed=0):
    torch.manual_seed(seed)
    model = PtmModel(family, build_backbone(family, config))
    for head in heads:
        model.add_head(head, HEADS[head])
    return model.eval()


def preset_count(name):
    """count_parameters of the preset; its SOP classifier (Linear(H, 2)) added by hand until the
    sop objective is registered."""
    preset = get_preset(name)
    if "sop" in preset.objectives and "sop" not in OBJECTIVES:
        sop = 2 * preset.model["hidden_size"] + 2
        return count_parameters(dataclasses.replace(preset, objectives={"mlm": {}})) + sop
    return count_parameters(preset)


# ALBERT paper, Table 1 (30k vocabulary, E = 128): base 12M, large 18M, xlarge 60M, xxlarge 235M.
# Ours, with the MLM and SOP heads: 11.81M, 17.85M, 59.02M, 223.16M -- within 2% of the first three
# (and equal to transformers' AlbertForPreTraining, tested below).
# xxlarge is 5% under the paper's figure: its 12 layers of H = 4096, FF = 16384 alone are 201.4M,
# the embeddings 3.9M and the pooler 16.8M; transformers' AlbertModel of that config has 222.6M as well.
@pytest.mark.parametrize("name,paper,tolerance", [("albert-base", 12e6, 0.02), ("albert-large", 18e6, 0.02),
                                                  ("albert-xlarge", 60e6, 0.02), ("albert-xxlarge", 235e6, 0.06)])
def test_albert_presets_match_the_paper(name, paper, tolerance):
    assert abs(preset_count(name) - paper) / paper <= tolerance


@pytest.mark.parametrize("name,paper", [("roberta-base", 125e6), ("roberta-large", 355e6), ("distilbert-base", 66e6)])
def test_roberta_and_distilbert_presets_match_the_papers(name, paper):
    assert abs(preset_count(name) - paper) / paper <= 0.02


@pytest.mark.parametrize("name,hf_class", [("roberta-base", "RobertaForMaskedLM"),
                                           ("albert-base", "AlbertForPreTraining"),
                                           ("distilbert-base", "DistilBertForMaskedLM")])
def test_preset_counts_equal_transformers(name, hf_class):
    transformers = pytest.importorskip("transformers")
    m = get_preset(name).model
    names = {"roberta": {"hidden_size": m["hidden_size"], "num_hidden_layers": m["num_layers"], "type_vocab_size": 1,
                             "max_position_embeddings": 514},
             "albert": {"hidden_size": m["hidden_size"], "num_hidden_layers": m["num_layers"], "embedding_size": 128,
                            "num_attention_heads": m["num_heads"], "intermediate_size": m["intermediate_size"]},
             "distilbert": {"dim": m["hidden_size"], "n_layers": m["num_layers"]}}[get_preset(name).family]
    with torch.device("meta"):
        config = transformers.AutoConfig.for_model(get_preset(name).family, **names)
        reference = getattr(transformers, hf_class)(config)
    assert preset_count(name) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("share", ["none", "all", "attention", "ffn"])
def test_albert_sharing_really_shares(share):
    model = build_backbone("albert", {**TINY, "embedding_size": 16, "share_layers": share})
    first, last = model.layers[0], model.layers[-1]
    assert (first.attention.qkv.weight is last.attention.qkv.weight) == (share in ("all", "attention"))
    assert (first.ffn.up.weight is last.ffn.up.weight) == (share in ("all", "ffn"))
    assert (first.attention_norm.weight is last.attention_norm.weight) == (share in ("all", "attention"))
    unshared = build_backbone("albert", {**TINY, "embedding_size": 16, "share_layers": "none"})
    per_layer = {part: sum(p.numel() for p in getattr(first, part).parameters())
                 for part in ("attention", "attention_norm", "ffn", "ffn_norm")}
    saved = {"none": 0, "all": sum(per_layer.values()),
             "attention": per_layer["attention"] + per_layer["attention_norm"],
             "ffn": per_layer["ffn"] + per_layer["ffn_norm"]}[share]
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in unshared.parameters()) - (TINY["num_layers"] - 1) * saved


def test_albert_factorized_embeddings_train_and_save(tmp_path):
    model = with_heads("albert", {**TINY, "embedding_size": 16}, "mlm").train()
    assert model.backbone.embeddings.word.weight.shape == (60, 16)
    assert model.heads["mlm"].decoder.weight is model.backbone.embeddings.word.weight
    ids = torch.randint(5, 60, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        out = model(ids, targets={"input_ids": ids, "mlm_labels": labels})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    assert model.backbone.layers[1].ffn.up.weight is model.backbone.layers[0].ffn.up.weight  # still shared
    save_pretrained(str(tmp_path / "albert"), model, None)
    loaded = ptmzoo.load(str(tmp_path / "albert")).model
    assert loaded.backbone.layers[3].attention.qkv.weight is loaded.backbone.layers[0].attention.qkv.weight
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits, rtol=0, atol=0)


def test_roberta_positions_start_after_padding():
    model = build_backbone("roberta", {**TINY, "pad_token_id": 1}).eval()
    assert model.embeddings.position.weight.shape[0] == 24 + 2  # rows 0, 1 precede position 0
    ids = torch.tensor([[0, 7, 9, 2, 1, 1], [1, 1, 0, 7, 9, 2]])  # right and left padding
    rows = model.embeddings.position_rows(ids, None)
    assert rows.tolist() == [[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 5]]
    mask = (ids != 1).long()
    with torch.no_grad():
        out = model(ids, mask).last_hidden_state
    torch.testing.assert_close(out[0, :4], out[1, 2:], rtol=1e-5, atol=1e-5)
    packed = model.embeddings.position_rows(ids, torch.tensor([[0, 1, 0, 1, 2, 3]]))  # 0-based, per document
    assert packed.tolist() == [[2, 3, 2, 3, 4, 5]]


def test_distilbert_has_no_segments_or_pooler():
    model = build_backbone("distilbert", TINY)
    assert model.embeddings.token_type is None and model.pooler is None and len(model.layers) == 4
    assert get_preset("distilbert-base").model["num_layers"] == 6


def test_every_other_layer():
    assert every_other_layer(12) == [0, 2, 4, 6, 8, 10]
    assert every_other_layer(12, 4) == [0, 3, 6, 9]
    assert every_other_layer(5) == [0, 2]
    with pytest.raises(UserError, match="1 to 12 layers"):
        every_other_layer(12, 13)


def test_student_copies_every_other_layer_from_a_bert_teacher():
    teacher = with_heads("bert", TINY, "mlm", "nsp")
    student = init_student(teacher)
    assert student.family == "distilbert" and list(student.heads) == ["mlm"]
    assert student.config.num_layers == 2 and not student.backbone.has_pooler
    assert student.backbone.embeddings.token_type is None
    t, s = teacher.state_dict(), student.state_dict()
    for i, j in enumerate([0, 2]):
        for name in ("attention.qkv.weight", "attention.out.bias", "attention_norm.weight", "ffn.down.weight",
                     "ffn_norm.bias"):
            assert torch.equal(s[f"backbone.layers.{i}.{name}"], t[f"backbone.layers.{j}.{name}"])
    assert not torch.equal(s["backbone.layers.1.ffn.up.weight"], t["backbone.layers.1.ffn.up.weight"])
    for name in ("backbone.embeddings.word.weight", "heads.mlm.dense.weight", "heads.mlm.decoder.bias"):
        assert torch.equal(s[name], t[name])
    assert student.heads["mlm"].decoder.weight is student.backbone.embeddings.word.weight  # tied, not copied twice
    # the teacher's segment-0 embedding moved into the positions: the student embeds like the teacher
    ids = torch.randint(5, 60, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(student.backbone.embeddings(ids), teacher.backbone.embeddings(ids))


def test_full_depth_student_is_the_teacher():
    for family in ("bert", "roberta", "albert"):
        config = {**TINY, "embedding_size": 16} if family == "albert" else TINY
        teacher = with_heads(family, config, "mlm")
        student = init_student(teacher, layers=[0, 1, 2, 3])
        ids = torch.randint(5, 60, (2, 9))
        with torch.no_grad():
            torch.testing.assert_close(student(ids).logits, teacher(ids).logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="teacher layers 0 to 3"):
        init_student(teacher, layers=[0, 4])


def test_init_student_cli(tmp_path, wordpiece_tokenizer, capsys):
    teacher = with_heads("bert", {**TINY, "vocab_size": wordpiece_tokenizer.vocab_size}, "mlm", "nsp")
    save_pretrained(str(tmp_path / "teacher"), teacher, wordpiece_tokenizer)
    assert main(["init-student", str(tmp_path / "teacher"), str(tmp_path / "student"), "--layers", "1,3"]) == 0
    student = ptmzoo.load(str(tmp_path / "student"))
    assert student.family == "distilbert" and student.tokenizer is not None
    assert torch.equal(student.model.state_dict()["backbone.layers.1.ffn.up.weight"],
                       teacher.state_dict()["backbone.layers.3.ffn.up.weight"])
    assert main(["init-student", str(tmp_path / "teacher"), str(tmp_path / "student")]) == 2
    assert "--overwrite" in capsys.readouterr().err
