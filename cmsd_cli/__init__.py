"""cmsd: confidence-modulated speculative decoding for Hugging Face models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmsd-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
