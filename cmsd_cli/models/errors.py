"""The one error type model loading raises for anything a user can fix."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model, tokenizer, device or dtype choice that cannot be loaded; the message is one user-facing sentence."""
