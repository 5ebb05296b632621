"""Teachers and students of the compression runs: loading, freezing, checking that they fit."""

from __future__ import annotations

from ..checkpoint import Pretrained
from ..errors import UserError
from ..finetune.strategies import keep_in_eval_mode
from ..loading import load
from ..models.model import PtmModel


def load_teachers(paths: list[str]) -> list[Pretrained]:
    teachers = [load(path) for path in paths]
    for teacher in teachers:
        if teacher.tokenizer is None:
            raise UserError(f"the teacher {teacher.path} has no tokenizer; a student reads the teacher's token ids")
        if teacher.tokenizer.fingerprint() != teachers[0].tokenizer.fingerprint():
            raise UserError(f"teachers {teachers[0].path} and {teacher.path} have different tokenizers; an ensemble "
                            "must read the same token ids")
        if teacher.meta.get("quantization"):
            raise UserError(f"the teacher {teacher.path} is quantized; distil from the float model")
    return teachers


def freeze(teacher: PtmModel) -> PtmModel:
    """A frozen network: no gradients, and no dropout whatever the training step does."""
    teacher.requires_grad_(False)
    keep_in_eval_mode(teacher)
    return teacher


def as_source(model: PtmModel, teacher: Pretrained, note: str) -> Pretrained:
    """An in-memory student for ``FinetuneRun`` (which copies its backbone and adds the task head)."""
    return Pretrained(model, teacher.tokenizer, {"family": model.family}, note)


def parameters(model: PtmModel) -> int:
    return sum(p.numel() for p in model.parameters())


def check_teachers(teachers: list[Pretrained], task: str) -> None:
    for teacher in teachers:
        meta = teacher.task or {}
        if meta.get("name") != task:
            raise UserError(f"the teacher {teacher.path} is not fine-tuned for the {task} task (its task: "
                            f"{meta.get('name') or 'none'}); fine-tune it first, or distil on shards with --data")
        if meta.get("labels") != (teachers[0].task or {}).get("labels"):
            raise UserError(f"teachers {teachers[0].path} and {teacher.path} have different labels")


def check_labels(run, teacher: Pretrained) -> None:
    """The labels of a run's training file are the teacher's, in the same order."""
    if run.task.labels != (teacher.task or {}).get("labels"):
        raise UserError(f"the training file's labels ({', '.join(run.task.labels)}) are not the teacher's "
                        f"({', '.join((teacher.task or {}).get('labels') or [])}); distil on data of the teacher's task")


def copy_head(target: PtmModel, source: PtmModel, name: str) -> None:
    """Load ``source``'s head ``name`` into ``target``'s (same task options)."""
    try:
        target.heads[name].load_state_dict(source.heads[name].state_dict())
    except (KeyError, RuntimeError) as exc:
        raise UserError(f"the {name} head of the source model does not fit ({exc}); use the task options it was "
                        "fine-tuned with") from None
