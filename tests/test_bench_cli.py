"""`cmsd bench` end to end on a tiny model pair, and its input errors."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from typer.testing import CliRunner

import cmsd_cli.models
import tiny_models as tm
from cmsd_cli.app import app
from cmsd_cli.bench.methods import KNOWN_METHODS
from cmsd_cli.models import ModelPair
from test_bench_runner import char_tokenizer

SOURCES = ["The dog barks.", "The cat sleeps.", "", "Birds sing.", "Rain falls."]
REFERENCES = ["Der Hund bellt.", "Die Katze schläft.", "", "Vögel singen.", "Regen fällt."]


@pytest.fixture(scope="module")
def tiny_pair() -> ModelPair:
    target = tm.llama(layers=2, hidden=64, seed=0)
    return ModelPair(
        target=target,
        draft=tm.perturbed_copy(target, noise=0.1),
        tokenizer=char_tokenizer(),
        target_name="tiny-llama",
        draft_name="tiny-llama-perturbed",
        family="base",
        is_encoder_decoder=False,
        device=torch.device("cpu"),
        dtype=torch.float32,
        context_length=512,
        preset=None,
        vocab_size=tm.VOCAB_SIZE,
        eos_token_id=tm.EOS_ID,
    )


@pytest.fixture
def loaded(monkeypatch, tiny_pair):
    """Make every model load return the tiny pair, and record the calls."""
    calls = []

    def load_pair(**kwargs):
        calls.append(kwargs)
        return tiny_pair

    monkeypatch.setattr(cmsd_cli.models, "load_pair", load_pair)
    return calls


@pytest.fixture
def no_model_load(monkeypatch):
    def load_pair(**kwargs):
        raise AssertionError("input errors must be reported before any model loads")

    monkeypatch.setattr(cmsd_cli.models, "load_pair", load_pair)


@pytest.fixture
def files(tmp_path):
    source = tmp_path / "source.en"
    reference = tmp_path / "reference.de"
    source.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    reference.write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    return source, reference


def invoke(*args: str):
    return CliRunner().invoke(app, ["bench", *args])


def test_bench_writes_table_json_csv_and_plot(loaded, files, tmp_path):
    source, reference = files
    json_path, csv_path, plot_path = tmp_path / "b.json", tmp_path / "b.csv", tmp_path / "b.png"
    result = invoke(
        "--task", "translate", "--src", "en", "--tgt", "de",
        "--source", str(source), "--reference", str(reference), "--limit", "2",
        "--methods", "ar,hf-static,static,cmsd", "--max-new-tokens", "8",
        "--json", str(json_path), "--csv", str(csv_path), "--plot", str(plot_path),
    )
    assert result.exit_code == 0, result.output
    assert "cmsd bench: translate, 2 inputs" in result.stdout
    assert len(loaded) == 1

    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert [row["name"] for row in report["methods"]] == ["ar", "hf-static", "static", "cmsd"]
    for row in report["methods"]:
        assert row["bleu"] is not None
        assert row["identical_to_ar"] == 1.0
        assert len(row["inputs"]) == 2
    config = report["config"]
    assert config["models"]["target"] == "tiny-llama"
    assert config["max_new_tokens"] == 8
    assert (config["src"], config["tgt"], config["limit"]) == ("en", "de", 2)

    with csv_path.open(encoding="utf-8") as handle:
        assert [row["name"] for row in csv.DictReader(handle)] == ["ar", "hf-static", "static", "cmsd"]
    assert plot_path.read_bytes()[:4] == b"\x89PNG"


def test_bench_summarize_reports_rouge(loaded, files, tmp_path):
    source, reference = files
    json_path = tmp_path / "s.json"
    result = invoke(
        "--task", "summarize", "--source", str(source), "--reference", str(reference), "--limit", "1",
        "--methods", "ar,static", "--max-new-tokens", "6", "--json", str(json_path),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text(encoding="utf-8"))
    for row in report["methods"]:
        assert row["rouge1"] is not None
        assert "bleu" not in row
    assert report["signature"].startswith("rouge-score:")


def test_empty_lines_skipped_warmup_next(loaded, files, tmp_path, monkeypatch):
    import cmsd_cli.bench.runner as runner

    seen = {}
    original = runner.run_benchmark

    def spy(pair, prompts, methods, **kwargs):
        seen["prompts"] = [prompt.source for prompt in prompts]
        seen["warmup"] = kwargs["warmup"].source
        seen["references"] = kwargs["references"]
        return original(pair, prompts, methods, **kwargs)

    monkeypatch.setattr(runner, "run_benchmark", spy)
    source, reference = files
    result = invoke(
        "--task", "translate", "--tgt", "de", "--source", str(source), "--reference", str(reference),
        "--limit", "3", "--methods", "ar", "--max-new-tokens", "4",
    )
    assert result.exit_code == 0, result.output
    assert seen["prompts"] == ["The dog barks.", "The cat sleeps.", "Birds sing."]
    assert seen["references"] == ["Der Hund bellt.", "Die Katze schläft.", "Vögel singen."]
    assert seen["warmup"] == "Rain falls."


def test_unknown_method_lists_known_ones(no_model_load, files):
    source, _ = files
    result = invoke("--task", "translate", "--tgt", "de", "--source", str(source), "--methods", "ar,turbo")
    assert result.exit_code == 2
    assert "Unknown benchmark method 'turbo'" in result.stderr
    for name in KNOWN_METHODS:
        assert name in result.stderr


def test_plot_without_matplotlib_fails_before_loading(no_model_load, files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    source, _ = files
    result = invoke("--task", "translate", "--tgt", "de", "--source", str(source), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2
    assert "pip install 'cmsd-cli[plot]'" in result.stderr


def test_missing_source_file_is_one_error(no_model_load, tmp_path):
    result = invoke("--task", "translate", "--tgt", "de", "--source", str(tmp_path / "nope.en"))
    assert result.exit_code == 2
    assert "source file" in result.stderr
    assert "was not found" in result.stderr
    assert "Traceback" not in result.output


def test_no_input_is_one_error(no_model_load):
    result = invoke("--task", "translate", "--tgt", "de")
    assert result.exit_code == 2
    assert "No input given" in result.stderr


def test_dataset_and_source_together_is_an_error(no_model_load, files):
    source, _ = files
    result = invoke("--task", "translate", "--dataset", "wmt14:en-de", "--source", str(source))
    assert result.exit_code == 2
    assert "either --dataset or --source" in result.stderr


def test_translate_needs_target_language(no_model_load, files):
    source, _ = files
    result = invoke("--task", "translate", "--source", str(source))
    assert result.exit_code == 2
    assert "--tgt" in result.stderr


def test_option_no_method_uses_is_an_error(no_model_load, files):
    source, _ = files
    result = invoke("--task", "translate", "--tgt", "de", "--source", str(source), "--methods", "ar,static", "--beta", "3")
    assert result.exit_code == 2
    assert "--beta has no effect on the methods ar, static" in result.stderr


def test_missing_output_folder_is_an_error(no_model_load, files, tmp_path):
    source, _ = files
    result = invoke(
        "--task", "translate", "--tgt", "de", "--source", str(source), "--json", str(tmp_path / "no" / "b.json")
    )
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_draft_needed_for_speculative_methods(monkeypatch, tiny_pair, files):
    import dataclasses

    without_draft = dataclasses.replace(tiny_pair, draft=None, draft_name=None)
    monkeypatch.setattr(cmsd_cli.models, "load_pair", lambda **kwargs: without_draft)
    source, _ = files
    result = invoke("--task", "translate", "--tgt", "de", "--source", str(source), "--methods", "ar,cmsd")
    assert result.exit_code == 2
    assert "need a draft model" in result.stderr
