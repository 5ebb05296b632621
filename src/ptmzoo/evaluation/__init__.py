"""Evaluating language models without fine-tuning: sliding-window perplexity and zero-/few-shot
classification by answer likelihood."""

from .fewshot import FewShotTask, build_prompt, continuation_logprobs, fewshot_classify
from .perplexity import perplexity, strided_windows

__all__ = ["FewShotTask", "build_prompt", "continuation_logprobs", "fewshot_classify", "perplexity",
           "strided_windows"]
