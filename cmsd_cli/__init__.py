"""cmsd: confidence-modulated speculative decoding for Hugging Face models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmsd-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from cmsd_cli.engine import GenerationResult, IterationRecord, speculative_generate  # noqa: E402

__all__ = ["GenerationResult", "IterationRecord", "speculative_generate", "__version__"]
