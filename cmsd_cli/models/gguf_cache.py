"""GGUF files converted once to a float safetensors folder in the cmsd cache, then loaded from there.

transformers reads a GGUF file by parsing its metadata and dequantising every tensor, which takes about a
minute for Gemma 3 270M on two cores. The converted folder (`save_pretrained` output plus the tokenizer)
loads in a few seconds.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from cmsd_cli.models import cache
from cmsd_cli.models.errors import ModelLoadError

logger = logging.getLogger(__name__)

# Bump when the conversion itself changes, so old entries are not reused.
CONVERSION_VERSION = 1

_HEAD_BYTES = 16 * 1024 * 1024
_TAIL_BYTES = 1024 * 1024
_SAMPLE_BYTES = 64 * 1024
_SAMPLES = 16


def gguf_fingerprint(path: Path) -> str:
    """Return a cache key for a GGUF file from its size and sampled content, reading about 18 MiB.

    The first 16 MiB hold the whole metadata header (tokenizer included) of typical files, the rest
    samples the tensor data. The key is independent of the file's name and location, so a copied file
    still hits the cache.

    NOTE: two files of the same size that differ only outside the sampled blocks get the same key. A
    re-quantised or fine-tuned model changes bytes everywhere, so a collision needs a deliberate edit.
    Hashing the whole file would close the gap at about 0.6 s per GB on every load.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(f"gguf-v{CONVERSION_VERSION}:{size}:".encode())

    with path.open("rb") as handle:
        digest.update(handle.read(_HEAD_BYTES))
        if size > _HEAD_BYTES + _TAIL_BYTES:
            span = size - _HEAD_BYTES - _TAIL_BYTES
            for index in range(_SAMPLES):
                handle.seek(_HEAD_BYTES + span * index // _SAMPLES)
                digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _TAIL_BYTES)
            digest.update(handle.read(_TAIL_BYTES))

    return "gguf-" + digest.hexdigest()[:32]


def converted_gguf(path: Path, key: str | None = None) -> Path:
    """Return the cache folder holding the float conversion of the GGUF file at `path`, converting it first if needed.

    `key` overrides the fingerprint, for files whose full hash is already known (a packaged model).
    """
    key = key or gguf_fingerprint(path)
    source = {"kind": "gguf", "path": str(path), "size": path.stat().st_size, "mtime": path.stat().st_mtime}
    return cache.build_entry(key, lambda folder: convert_gguf(path, folder), source)


def convert_gguf(path: Path, out_dir: Path) -> None:
    """Dequantise the GGUF file at `path` to float32 and write the model and its tokenizer to `out_dir`."""
    from transformers import AutoConfig, AutoTokenizer

    logger.warning("Converting %s to float32 once; later loads read the converted copy from %s.", path.name, cache.cache_root())
    started = time.perf_counter()
    folder, name = str(path.parent), path.name

    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
    except (ValueError, KeyError, OSError) as error:
        raise ModelLoadError(f"The GGUF file {path} could not be read by transformers ({error}); pass a GGUF of a supported architecture or a model folder.") from error

    model_class = model_class_for(config)
    model = model_class.from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)

    # transformers marks a model loaded from GGUF as quantized and rejects saving it, although the
    # weights are plain dequantised tensors by now. Dropping the marker makes it an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (ValueError, KeyError, OSError) as error:
        raise ModelLoadError(f"The GGUF file {path} contains no tokenizer that transformers can read ({error}); pass a model folder with its tokenizer instead.") from error
    tokenizer.save_pretrained(out_dir)

    logger.info("Converted %s in %.1f s.", path.name, time.perf_counter() - started)


def model_class_for(config):
    """AutoModelForSeq2SeqLM for encoder-decoder configs, AutoModelForCausalLM for the rest."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
