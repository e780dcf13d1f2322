"""Device and dtype resolution, and when a target is spread over several GPUs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import tiny_models
from cmsd_cli.models import ModelLoadError, resolve_device, resolve_dtype
from cmsd_cli.models import device as device_module
from cmsd_cli.models.loading import _placement


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_auto_device_is_cpu_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_cpu_device():
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_without_gpu_rejected(no_accelerators):
    with pytest.raises(ModelLoadError, match="torch sees no CUDA GPU"):
        resolve_device("cuda")


def test_mps_without_backend_rejected(no_accelerators):
    with pytest.raises(ModelLoadError, match="no MPS backend"):
        resolve_device("mps")


def test_cuda_index_beyond_gpu_count_rejected(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ModelLoadError, match="only 2 CUDA GPU"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "gpu", ""])
def test_unknown_device_rejected(name):
    with pytest.raises(ModelLoadError, match="Unknown device"):
        resolve_device(name)


def test_auto_dtype_per_device(monkeypatch):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto") == torch.float32
    assert resolve_dtype("auto", torch.device("mps")) == torch.float32

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


def test_explicit_dtypes():
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    assert resolve_dtype("Float16") == torch.float16
    assert resolve_dtype(torch.float16) == torch.float16


def test_unknown_dtype_rejected():
    with pytest.raises(ModelLoadError, match="Unknown dtype 'int4'"):
        resolve_dtype("int4")


def fake_gpus(monkeypatch, count: int, free_bytes: int) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (free_bytes, free_bytes))


def test_spread_over_gpus_only_when_needed(monkeypatch):
    config = tiny_models.llama().config
    weights = sum(parameter.numel() for parameter in tiny_models.llama().parameters()) * 4
    cuda = torch.device("cuda")

    fake_gpus(monkeypatch, count=2, free_bytes=weights)
    assert _placement(AutoModelForCausalLM, config, cuda, torch.float32) == {"device_map": "auto"}

    fake_gpus(monkeypatch, count=2, free_bytes=weights * 10)
    assert _placement(AutoModelForCausalLM, config, cuda, torch.float32) == {}

    fake_gpus(monkeypatch, count=1, free_bytes=weights)
    assert _placement(AutoModelForCausalLM, config, cuda, torch.float32) == {}

    fake_gpus(monkeypatch, count=2, free_bytes=weights)
    assert _placement(AutoModelForCausalLM, config, torch.device("cuda", 0), torch.float32) == {}
    assert _placement(AutoModelForCausalLM, config, torch.device("cpu"), torch.float32) == {}
