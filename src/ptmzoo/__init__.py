"""ptmzoo: pre-trained language models under one roof.

    >>> import ptmzoo
    >>> bert = ptmzoo.load("runs/bert/final")
    >>> ids = bert.tokenizer.encode("今天天气很好")
    >>> out = bert.model(torch.tensor([ids]))
    >>> out.last_hidden_state.shape, out.logits.shape
"""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """Open a ptmzoo checkpoint directory; returns an object with ``.model`` and ``.tokenizer``."""
    from .checkpoint import load as _load

    return _load(path, device)


def generate(model, prompts, **options):
    """Continue text prompts with a decoder loaded by ``load``; see ``ptmzoo.generation.generate``.

        >>> gpt = ptmzoo.load("runs/gpt2")
        >>> ptmzoo.generate(gpt, "Once upon a time", max_new_tokens=30, top_p=0.9, seed=0).text
    """
    from .generation import generate as _generate

    return _generate(model, prompts, **options)


__all__ = ["__version__", "generate", "load"]
