"""Generation with decoders: a static key/value cache and the decoding strategies."""

from .cache import KVCache
from .decoding import (
    CachedLM,
    Generation,
    GenerationOptions,
    beam_search,
    choose_tokens,
    generate,
    repetition_penalty,
    sampling_steps,
    stream,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "CachedLM",
    "Generation",
    "GenerationOptions",
    "KVCache",
    "beam_search",
    "choose_tokens",
    "generate",
    "repetition_penalty",
    "sampling_steps",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
