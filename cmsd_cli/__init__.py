"""cmsd: confidence-modulated speculative decoding for Hugging Face models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmsd-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["GenerationResult", "IterationRecord", "speculative_generate", "__version__"]


def __getattr__(name: str):
    # The engine imports torch and transformers, which take seconds; load them on first use so
    # `cmsd --help` and `cmsd --version` stay fast.
    if name in ("GenerationResult", "IterationRecord", "speculative_generate"):
        from cmsd_cli import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'cmsd_cli' has no attribute {name!r}")
