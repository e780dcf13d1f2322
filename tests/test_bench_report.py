"""Benchmark output (JSON, CSV, table, plot) and input (files, sacrebleu test sets)."""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console
from sacrebleu.dataset import DATASETS

import tiny_models as tm
from cmsd_cli.bench.data import BenchDataError, load_dataset, load_files, parse_dataset_name, read_lines
from cmsd_cli.bench.plot import PlotUnavailableError, require_matplotlib, write_plot
from cmsd_cli.bench.report import build_report, method_fields, print_report, write_csv, write_json
from cmsd_cli.bench.runner import BenchSettings, run_benchmark
from test_bench_runner import TinyPair, char_tokenizer, prompts

REQUIRED_METHOD_FIELDS = (
    "name",
    "seconds",
    "tokens_per_second",
    "speedup_vs_ar",
    "target_calls",
    "mean_accepted",
    "acceptance_rate",
    "rollback_rate",
    "identical_to_ar",
    "consistency_bleu",
    "error",
)


@pytest.fixture(scope="module")
def translate_result():
    target = tm.llama(layers=2, hidden=64, seed=0)
    pair = TinyPair(target=target, draft=tm.perturbed_copy(target, noise=0.1), tokenizer=char_tokenizer())
    batch = prompts(2)
    return run_benchmark(
        pair,
        batch,
        ["ar", "hf-static", "static", "cmsd"],
        settings=BenchSettings(max_new_tokens=10, seed=7),
        references=["Der Hund bellt.", "Die Katze schläft."],
        target_language="de",
    )


def test_json_has_every_field(translate_result, tmp_path):
    path = tmp_path / "bench.json"
    write_json(build_report(translate_result, extra_config={"src": "en", "tgt": "de"}), path)
    report = json.loads(path.read_text(encoding="utf-8"))

    assert set(report) == {"methods", "config", "signature"}
    assert [row["name"] for row in report["methods"]] == ["ar", "hf-static", "static", "cmsd"]
    for row in report["methods"]:
        for name in REQUIRED_METHOD_FIELDS + ("bleu", "chrf"):
            assert name in row, f"{row['name']} lacks {name}"
        assert row["error"] is None
        assert row["bleu"] is not None
        assert row["chrf"] is not None
        assert len(row["inputs"]) == 2

    config = report["config"]
    for name in ("models", "device", "dtype", "policy_params", "verify_params", "seed", "versions", "cpu", "gpu"):
        assert name in config, name
    assert config["seed"] == 7
    assert config["src"] == "en"
    for package in ("torch", "transformers", "cmsd", "sacrebleu"):
        assert config["versions"][package], package
    assert config["cpu"]
    assert report["signature"] == config["signatures"]["bleu"]
    assert report["signature"].startswith("nrefs:1|")


def test_json_lossless_rows_match_ar(translate_result):
    report = build_report(translate_result)
    for row in report["methods"]:
        assert row["identical_to_ar"] == 1.0, row["name"]
        assert row["speedup_vs_ar"] == pytest.approx(report["methods"][0]["seconds"] / row["seconds"])


def test_csv_has_one_row_per_method(translate_result, tmp_path):
    path = tmp_path / "bench.csv"
    write_csv(translate_result, path)
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["ar", "hf-static", "static", "cmsd"]
    assert tuple(rows[0]) == method_fields("translate")
    assert float(rows[0]["speedup_vs_ar"]) == 1.0
    assert rows[0]["acceptance_rate"] == ""


def test_table_lists_every_method(translate_result):
    buffer = io.StringIO()
    print_report(translate_result, Console(file=buffer, width=200))
    text = buffer.getvalue()
    for name in ("ar", "hf-static", "static", "cmsd"):
        assert f" {name} " in text
    assert "1.00x" in text
    assert "bleu signature: nrefs:1" in text


def test_plot_writes_png(translate_result, tmp_path):
    path = tmp_path / "bench.png"
    write_plot(translate_result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_extra(monkeypatch):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailableError) as error:
        require_matplotlib()
    assert "pip install 'cmsd-cli[plot]'" in str(error.value)


# Input files


def test_read_lines_drops_only_final_newline(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\r\ntwo\n\nfour\n")
    assert read_lines(path, "source") == ["one", "two", "", "four"]
    path.write_bytes(b"")
    assert read_lines(path, "source") == []


def test_missing_source_file_names_it(tmp_path):
    with pytest.raises(BenchDataError, match="source file .*missing.txt' was not found"):
        read_lines(tmp_path / "missing.txt", "source")


def test_reference_line_count_must_match(tmp_path):
    source = tmp_path / "src.txt"
    reference = tmp_path / "ref.txt"
    source.write_text("a\nb\n", encoding="utf-8")
    reference.write_text("x\n", encoding="utf-8")
    with pytest.raises(BenchDataError, match="has 1 lines but the source file"):
        load_files(source, reference)


def test_non_utf8_file_is_rejected(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Straße\n".encode("latin-1"))
    with pytest.raises(BenchDataError, match="not UTF-8"):
        read_lines(path, "reference")


# sacrebleu test sets


def test_dataset_name_is_checked():
    assert parse_dataset_name("wmt14:en-de") == ("wmt14", "en-de")
    with pytest.raises(BenchDataError, match="TESTSET:SRC-TGT"):
        parse_dataset_name("wmt14")
    with pytest.raises(BenchDataError, match="Unknown sacrebleu test set 'wmt99'"):
        parse_dataset_name("wmt99:en-de")
    with pytest.raises(BenchDataError, match="no language pair 'en-xx'"):
        parse_dataset_name("wmt14:en-xx")


@pytest.fixture
def empty_sacrebleu_dir(tmp_path, monkeypatch):
    dataset = DATASETS["wmt14"]
    monkeypatch.setattr(dataset, "_outdir", str(tmp_path / "wmt14"))
    monkeypatch.setattr(dataset, "_rawdir", str(tmp_path / "wmt14" / "raw"))
    return dataset


def test_dataset_offline_fails_fast_with_one_error(empty_sacrebleu_dir, monkeypatch):
    timeouts = []

    def unreachable(url, *args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(BenchDataError) as error:
        load_dataset("wmt14:en-de", timeout=3.0)
    message = str(error.value)
    assert "Could not download test set wmt14 (en-de)" in message
    assert "--source and --reference" in message
    assert timeouts == [3.0]
    assert socket.getdefaulttimeout() is None


def test_dataset_uses_local_copy_without_network(empty_sacrebleu_dir, monkeypatch):
    dataset = empty_sacrebleu_dir
    # sacrebleu looks for every field of the pair (source, reference and metadata such as docid).
    texts = {"src": "Hello.\nBye.\n", "ref": "Hallo.\nTschüss.\n"}
    for field_name in dataset.fieldnames("en-de"):
        path = Path(dataset._get_txt_file_path("en-de", field_name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts.get(field_name, "x\nx\n"), encoding="utf-8")

    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used when a local copy exists")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data = load_dataset("wmt14:en-de")
    assert data.sources == ["Hello.", "Bye."]
    assert data.references == ["Hallo.", "Tschüss."]
    assert (data.src, data.tgt) == ("en", "de")
    assert data.origin == "sacrebleu:wmt14:en-de"
