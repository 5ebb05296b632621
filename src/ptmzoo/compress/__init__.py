"""Compression: smaller models from larger ones (students initialised from teachers)."""
