"""Fine-tuning: turning a checkpoint into a task model, with the transfer strategies of
``strategies.py`` (frozen features, ULMFiT, adapters, LoRA) and ``experiments.py`` (seeds, two stages)."""

__all__ = ["FinetuneConfig", "run_finetune"]


def __getattr__(name: str):
    # lazy, so that the command-line parser (finetune.flags) does not import torch
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'ptmzoo.finetune' has no attribute '{name}'")
