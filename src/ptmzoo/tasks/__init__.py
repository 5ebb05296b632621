"""Fine-tuning tasks: each = data encoding/collator + head + loss + metrics + predict."""

from .classification import ClassificationHead, ClassificationOptions, ClassificationTask, classification_metrics

TASKS = {"classification": ClassificationTask}

__all__ = ["TASKS", "ClassificationHead", "ClassificationOptions", "ClassificationTask", "classification_metrics"]
