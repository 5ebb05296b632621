"""Fine-tuning tasks: each = reading + encoding/collator + head + loss + metrics + predict.

``TASKS`` maps the names of ``ptmzoo finetune --task`` to task classes (see ``base.Task``).
"""

from ..errors import UserError
from .base import ListDataset, Task, TaskOptions, label_vocabulary
from .classification import (
    ClassificationHead,
    ClassificationOptions,
    ClassificationTask,
    MultiLabelTask,
    RegressionTask,
    classification_metrics,
)
from .multiple_choice import MultipleChoiceHead, MultipleChoiceTask
from .qa import QATask, SpanHead
from .sft import SFTTask
from .tagging import TaggingHead, TaggingTask
from .text2text import Text2TextTask
from .translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (ClassificationTask, RegressionTask, MultiLabelTask, TaggingTask, QATask, SFTTask,
                              MultipleChoiceTask, TranslationTask, Text2TextTask)
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    return TASKS[name]


__all__ = ["TASKS", "ClassificationHead", "ClassificationOptions", "ClassificationTask", "ListDataset",
           "MultiLabelTask", "MultipleChoiceHead", "MultipleChoiceTask", "QATask", "RegressionTask", "SpanHead", "TaggingHead", "TaggingTask", "Task", "TaskOptions", "Text2TextTask", "TranslationTask",
           "classification_metrics", "label_vocabulary", "task_class"]
