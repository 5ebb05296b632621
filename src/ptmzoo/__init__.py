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


__all__ = ["load", "__version__"]
