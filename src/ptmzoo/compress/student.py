"""A smaller student initialised from a teacher's layers (DistilBERT, Sanh et al., 2019: "we
initialize the student from the teacher by taking one layer out of two").

The student has the teacher's architecture with fewer layers; a BERT teacher gives a DistilBERT
student, which has no segment embeddings and no pooler. Its embeddings, the chosen layers and
the MLM head (when the teacher has one) are copied. BERT's segment-0 embedding is folded into
the student's position embeddings, so that a single-segment input is embedded exactly as by the
teacher: with all of the teacher's layers, the student computes the teacher's function.
"""

from __future__ import annotations

import re

from ..catalog import build_model
from ..errors import UserError
from ..models.model import PtmModel

# teacher family -> student family
STUDENT_FAMILY = {"bert": "distilbert", "roberta": "roberta", "albert": "albert", "distilbert": "distilbert"}


def every_other_layer(teacher_layers: int, num_layers: int | None = None) -> list[int]:
    """Teacher layers 0, 2, 4, ...: ``num_layers`` (default half) evenly strided from the bottom."""
    num_layers = num_layers or max(1, teacher_layers // 2)
    if not 1 <= num_layers <= teacher_layers:
        raise UserError(f"a student of the {teacher_layers}-layer teacher needs 1 to {teacher_layers} layers, "
                        f"not {num_layers}")
    return [i * teacher_layers // num_layers for i in range(num_layers)]


def init_student(teacher: PtmModel, layers: list[int] | None = None, num_layers: int | None = None,
                 same_family: bool = False) -> PtmModel:
    """A student whose layer i is a copy of teacher layer ``layers[i]`` (default: every other
    layer, see ``every_other_layer``); embeddings and MLM head copied, other heads dropped.
    ``same_family``: the teacher's own family with every head (removing layers from a model;
    BERT-of-Theseus's successor), a BERT-family backbone with a ``layers`` list."""
    family = teacher.family if same_family else STUDENT_FAMILY.get(teacher.family)
    if family is None or not hasattr(teacher.backbone, "layers"):
        raise UserError(f"students are initialised from encoder teachers ({', '.join(STUDENT_FAMILY)}), "
                        f"not from a {teacher.family} model")
    total = teacher.config.num_layers
    layers = list(layers) if layers is not None else every_other_layer(total, num_layers)
    if not layers or any(not 0 <= i < total for i in layers):
        raise UserError(f"student layers must be teacher layers 0 to {total - 1}, got {layers}")

    config = {**teacher.config.to_dict(), "num_layers": len(layers)}
    if config.get("layer_heads") is not None:  # pruned heads: those of the layers kept
        config["layer_heads"] = [config["layer_heads"][i] for i in layers]
    to_distilbert = family == "distilbert" and not same_family
    fold_segments = to_distilbert and teacher.config.type_vocab_size > 0
    if to_distilbert:
        config.update(type_vocab_size=0, add_pooler=False)
    heads = {name: spec for name, spec in teacher.heads_spec().items() if same_family or spec["kind"] == "mlm"}
    student = build_model(family, config, heads=heads)

    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        match = re.match(r"backbone\.layers\.(\d+)\.(.*)", key)
        state[key] = source[f"backbone.layers.{layers[int(match[1])]}.{match[2]}" if match else key]
    if fold_segments:
        position = "backbone.embeddings.position.weight"
        state[position] = source[position] + source["backbone.embeddings.token_type.weight"][0]
    student.load_state_dict(state)  # copies, so tied and shared weights stay tied
    return student.to(next(teacher.parameters()).device).train(teacher.training)
