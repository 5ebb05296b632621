"""ptmzoo: pre-trained language models under one roof.

    >>> import ptmzoo
    >>> bert = ptmzoo.load("runs/bert/final")
    >>> ids = bert.tokenizer.encode("今天天气很好")
    >>> out = bert.model(torch.tensor([ids]))
    >>> out.last_hidden_state.shape, out.logits.shape
"""

from ._version import __version__


def load(path, device="cpu"):
    """Open a ptmzoo checkpoint or Hugging Face directory; returns an object with ``.model`` and
    ``.tokenizer`` (see ``ptmzoo.loading``)."""
    from .loading import load as _load

    return _load(path, device)


def generate(model, prompts, **options):
    """Generate with a model loaded by ``load``: decoders continue text prompts, encoder-decoders
    (T5, BART) and UniLM map sources to targets; see ``ptmzoo.generation.generate``.

        >>> gpt = ptmzoo.load("runs/gpt2")
        >>> ptmzoo.generate(gpt, "Once upon a time", max_new_tokens=30, top_p=0.9, seed=0).text
    """
    from .catalog import generate as _generate

    return _generate(model, prompts, **options)


__all__ = ["__version__", "generate", "load"]
