"""Interchange with other toolkits' model formats (``interop.hf``: Hugging Face transformers)."""
