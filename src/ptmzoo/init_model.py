"""``ptmzoo init``: a randomly initialised checkpoint of a preset with a given tokenizer.

Models trained from scratch on a task (the Transformer on translation) have no pre-training
step to write their first checkpoint; this writes it, with the vocabulary size and the special
token ids (padding, beginning and end of sequence) taken from the tokenizer.
"""

from __future__ import annotations

from .catalog import build_model, family
from .checkpoint import save_pretrained
from .config import apply_overrides
from .data.tokenizers import Tokenizer
from .models.base import special_token_ids
from .presets import get_preset
from .train.trainer import seed_everything


def init_checkpoint(preset_name: str, tokenizer_path: str, out: str, overrides: list[str] | None = None,
                    seed: int = 0) -> int:
    """Write the checkpoint to ``out``; return its number of parameters."""
    preset = get_preset(preset_name)
    tokenizer = Tokenizer.load(tokenizer_path)
    config_class = family(preset.family).config_class
    config = {**preset.model, "vocab_size": tokenizer.vocab_size, **special_token_ids(config_class, tokenizer)}
    config = apply_overrides({"model": config}, [f"model.{o}" for o in overrides or []])["model"]
    seed_everything(seed)
    model = build_model(preset.family, config)
    save_pretrained(out, model, tokenizer)
    return sum(p.numel() for p in model.parameters())
