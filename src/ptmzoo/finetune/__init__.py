"""Fine-tuning: turning a checkpoint into a task model (strategies arrive here as they land)."""

from .run import FinetuneConfig, run_finetune

__all__ = ["FinetuneConfig", "run_finetune"]
