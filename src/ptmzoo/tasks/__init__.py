"""Fine-tuning tasks: each = reading + encoding/collator + head + loss + metrics + predict.

``TASKS`` maps the names of ``ptmzoo finetune --task`` to task classes (see ``base.Task``); each
names its options class (``Task.Options``), whose fields are its settings and its flags.
"""

from typing import Any

from ..errors import UserError
from .base import ListDataset, Task, TaskOptions, TextColumns, label_vocabulary
from .classification import (
    ClassificationHead,
    ClassificationOptions,
    ClassificationTask,
    MultiLabelOptions,
    MultiLabelTask,
    RegressionTask,
    SequenceOptions,
    classification_metrics,
)
from .gpt_input import GPTInputOptions
from .multiple_choice import MultipleChoiceHead, MultipleChoiceOptions, MultipleChoiceTask
from .qa import LanguageOptions, QAOptions, QATask, SpanHead
from .sft import SFTTask
from .tagging import TagFileOptions, TaggingHead, TaggingOptions, TaggingTask
from .text2text import Text2TextOptions, Text2TextTask
from .translation import TargetTextOptions, TranslationOptions, TranslationTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (ClassificationTask, RegressionTask, MultiLabelTask, TaggingTask, QATask, SFTTask,
                              MultipleChoiceTask, TranslationTask, Text2TextTask)
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    return TASKS[name]


def tasks_using(option: str) -> list[str]:
    """The names of the tasks whose options have the field ``option``."""
    return [name for name, cls in TASKS.items() if option in cls.Options.field_types()]


def task_options(task: str, data: dict[str, Any] | None, where: str = "options.") -> TaskOptions:
    """The options of ``task`` from a mapping; a key that only other tasks read is refused
    naming them (other unknown keys get the config's own error, with a suggestion)."""
    cls = task_class(task)
    known = cls.Options.field_types()
    for key in data or {}:
        users = tasks_using(key)
        if key not in known and users:
            raise UserError(f"{where}{key} is an option of --task {', '.join(users)}; --task {task} does not read it")
    return cls.Options.from_dict(data, where)


def task_of(pretrained) -> Task:
    """The task a fine-tuned checkpoint (what ``ptmzoo.load`` returns) was trained for, rebuilt
    from its ``ptmzoo.json``."""
    meta = pretrained.task
    if not meta or meta.get("name") not in TASKS:
        raise UserError(f"{pretrained.path} is not a fine-tuned task model (no task in its ptmzoo.json); "
                        "fine-tune it with `ptmzoo finetune` first")
    if pretrained.tokenizer is None:
        raise UserError(f"{pretrained.path} has no tokenizer files")
    return TASKS[meta["name"]].from_meta(meta, pretrained.tokenizer, pretrained.model.backbone.max_length)


__all__ = ["TASKS", "ClassificationHead", "ClassificationOptions", "ClassificationTask", "GPTInputOptions",
           "LanguageOptions", "ListDataset", "MultiLabelOptions", "MultiLabelTask", "MultipleChoiceHead",
           "MultipleChoiceOptions", "MultipleChoiceTask", "QAOptions", "QATask", "RegressionTask", "SequenceOptions",
           "SpanHead", "TagFileOptions", "TaggingHead", "TaggingOptions", "TaggingTask", "TargetTextOptions", "Task",
           "TaskOptions", "TextColumns", "Text2TextOptions", "Text2TextTask", "TranslationOptions", "TranslationTask",
           "classification_metrics", "label_vocabulary", "task_class", "task_of", "task_options", "tasks_using"]
