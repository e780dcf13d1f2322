"""`cmsd translate` and `cmsd summarize` end to end, on tiny random-weight models saved to a temporary folder.

The models produce random text, so the checks are about lines, order, counters, errors and signals,
and about equality with the engine called directly, never about translation quality.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

import tiny_models
from cmsd_cli.app import app

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARACTERS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"-\n()äöüßéèàç/&%$#@*+="


def char_tokenizer(characters: str) -> PreTrainedTokenizerFast:
    """A character-level tokenizer whose ids match the tiny models' special token ids."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + list(characters))}
    assert len(vocab) == tiny_models.VOCAB_SIZE
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = char_tokenizer(CHARACTERS)
    target = tiny_models.llama()
    draft = tiny_models.perturbed_copy(target, noise=0.05)
    # Same vocabulary size, but the ids map to other characters, so the tokenizers disagree.
    foreign = char_tokenizer(CHARACTERS[::-1])

    dirs = {"target": root / "target", "draft": root / "draft", "foreign": root / "foreign"}
    for name, model, model_tokenizer in (
        ("target", target, tokenizer),
        ("draft", draft, tokenizer),
        ("foreign", draft, foreign),
    ):
        model.save_pretrained(dirs[name])
        model_tokenizer.save_pretrained(dirs[name])
    return {name: str(path) for name, path in dirs.items()}


@pytest.fixture()
def translate_args(model_dirs: dict[str, str]) -> list[str]:
    return [
        "translate", "--src", "en", "--tgt", "de",
        "--target", model_dirs["target"], "--draft", model_dirs["draft"],
        "--max-new-tokens", "8", "--no-live",
    ]  # fmt: skip


def invoke(args: list[str], stdin: str | None = None):
    return CliRunner().invoke(app, args, input=stdin)


def jsonl_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


SENTENCES = ["The cat sat on the mat.", "", "It rained all day.", "   ", "Prices rose again."]


def test_one_output_line_per_input_line(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", SENTENCES)

    result = invoke(translate_args + [source])

    assert result.exit_code == 0, result.stderr
    outputs = result.stdout.split("\n")
    assert outputs[-1] == ""  # every line ends with a newline
    assert len(outputs[:-1]) == len(SENTENCES)
    assert outputs[1] == ""
    assert outputs[3] == ""
    assert result.stderr == ""


def test_jsonl_keeps_input_order(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", SENTENCES)

    records = jsonl_records(invoke(translate_args + ["--jsonl", source]).stdout)

    assert [record["index"] for record in records] == [0, 1, 2, 3, 4]
    assert [record["input"] for record in records] == SENTENCES
    assert [record["line"] for record in records] == [1, 2, 3, 4, 5]


def test_jsonl_fields_and_counters(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", SENTENCES)

    records = jsonl_records(invoke(translate_args + ["--jsonl", source]).stdout)

    required = {
        "index", "input", "output", "finish_reason", "new_tokens", "target_calls",
        "drafted", "accepted", "acceptance_rate", "mean_accepted", "seconds",
    }  # fmt: skip
    for record in records:
        assert required <= set(record)
        assert record["accepted"] <= record["drafted"]
        if record["drafted"]:
            assert record["acceptance_rate"] == pytest.approx(record["accepted"] / record["drafted"])
        if record["target_calls"]:
            assert record["mean_accepted"] == pytest.approx(record["accepted"] / record["target_calls"])

    empty = records[1]
    assert empty["output"] == ""
    assert empty["finish_reason"] is None
    assert empty["new_tokens"] == 0
    assert empty["target_calls"] == 0
    for record in (records[0], records[2], records[4]):
        assert 1 <= record["new_tokens"] <= 8
        assert record["target_calls"] >= 1
        assert record["finish_reason"] in ("eos", "length", "stop_string")


def test_jsonl_undefined_rates_are_null(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["The cat sat on the mat.", ""])

    result = invoke(translate_args + ["--jsonl", source])

    assert result.exit_code == 0, result.stderr
    assert '"acceptance_rate": null' in result.stdout.splitlines()[1]
    generated, empty = jsonl_records(result.stdout)
    assert empty["acceptance_rate"] is None
    assert empty["mean_accepted"] is None
    assert empty["tokens_per_second"] is None
    assert empty["seconds"] == 0.0
    assert empty["drafted"] == 0
    assert generated["drafted"] > 0
    assert generated["acceptance_rate"] == generated["accepted"] / generated["drafted"]
    assert isinstance(generated["mean_accepted"], float)
    assert generated["tokens_per_second"] == pytest.approx(generated["new_tokens"] / generated["seconds"])


def test_jsonl_matches_direct_engine_call(tmp_path: Path, translate_args: list[str], model_dirs) -> None:
    from cmsd_cli.engine import speculative_generate
    from cmsd_cli.models import load_pair
    from cmsd_cli.tasks import build_prompt

    source = write_lines(tmp_path / "in.txt", ["Prices rose again."])
    [record] = jsonl_records(invoke(translate_args + ["--jsonl", source]).stdout)

    pair = load_pair(target=model_dirs["target"], draft=model_dirs["draft"])
    prompt = build_prompt("translate", pair, "Prices rose again.", src="en", tgt="de")
    direct = speculative_generate(
        pair.target, pair.draft, prompt.input_ids, max_new_tokens=8, policy="cmsd", verify="greedy",
        stop_strings=prompt.stop_strings, tokenizer=pair.tokenizer,
        eos_token_id=pair.eos_token_id, vocab_size=pair.vocab_size,
    )  # fmt: skip

    assert record["new_tokens"] == len(direct.tokens)
    assert record["new_tokens"] == direct.stats["new_tokens"]
    assert record["output"] == " ".join(direct.text.split("\n")).strip()
    assert record["drafted"] == direct.stats["drafted"]
    assert record["accepted"] == direct.stats["accepted"]


def test_greedy_output_equals_target_only(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", SENTENCES)

    speculative = invoke(translate_args + [source])
    target_only = invoke(translate_args + ["--draft", "none", source])

    assert speculative.exit_code == 0
    assert target_only.exit_code == 0
    assert speculative.stdout == target_only.stdout


def test_static_draft_length_reaches_engine(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["The cat sat on the mat.", "Prices rose again."])

    result = invoke(translate_args + ["--policy", "static", "--draft-length", "2", "--jsonl", source])

    assert result.exit_code == 0, result.stderr
    for record in jsonl_records(result.stdout):
        assert record["drafted"] <= 2 * record["target_calls"]
        assert record["drafted"] >= 1


def test_stdin_and_dash_and_files(tmp_path: Path, translate_args: list[str]) -> None:
    first = write_lines(tmp_path / "a.txt", ["It rained all day."])
    second = write_lines(tmp_path / "b.txt", ["Prices rose again."])

    from_stdin = invoke(translate_args + ["--jsonl"], stdin="The cat sat on the mat.\n")
    mixed = invoke(translate_args + ["--jsonl", first, "-", second], stdin="The cat sat on the mat.\n")

    assert [record["input"] for record in jsonl_records(from_stdin.stdout)] == ["The cat sat on the mat."]
    records = jsonl_records(mixed.stdout)
    assert [record["input"] for record in records] == [
        "It rained all day.",
        "The cat sat on the mat.",
        "Prices rose again.",
    ]
    assert [record["source"] for record in records] == [first, "standard input", second]
    assert records[1]["output"] == jsonl_records(from_stdin.stdout)[0]["output"]


def test_output_file_holds_the_results(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", SENTENCES)
    output = tmp_path / "out.txt"

    to_file = invoke(translate_args + ["-o", str(output), source])
    to_stdout = invoke(translate_args + [source])

    assert to_file.exit_code == 0
    assert to_file.stdout == ""
    assert output.read_text(encoding="utf-8") == to_stdout.stdout


def test_summarize_one_line_per_document(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    documents = ["The council met on Monday. It approved the budget.", "", "Rain is expected tomorrow."]
    source = write_lines(tmp_path / "docs.txt", documents)

    result = invoke(
        ["summarize", "--target", model_dirs["target"], "--draft", model_dirs["draft"],
         "--max-new-tokens", "6", "--jsonl", source]
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    records = jsonl_records(result.stdout)
    assert [record["input"] for record in records] == documents
    assert records[1]["new_tokens"] == 0


def test_long_line_is_cut_with_one_warning(tmp_path: Path, translate_args: list[str]) -> None:
    # The tiny Llama accepts 512 positions; 600 characters are 600 tokens for the character tokenizer.
    long_line = "word " * 120
    source = write_lines(tmp_path / "in.txt", ["Short one.", long_line, "Short two."])

    result = invoke(translate_args + ["--jsonl", source])

    assert result.exit_code == 0
    records = jsonl_records(result.stdout)
    assert len(records) == 3
    assert [record["truncated"] for record in records] == [False, True, False]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1
    assert f"Line 2 of {source} does not fit in the context" in warnings[0]  # the path as given, case kept
    assert warnings[0].startswith("Warning: ")


def test_quiet_silences_the_long_line_warning(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["word " * 120])

    result = invoke(translate_args + ["--quiet", source])

    assert result.exit_code == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--src", "xx"], "Unknown language code 'xx'"),
        (["--preset", "no-such-preset"], "Unknown preset 'no-such-preset'"),
        (["--policy", "static", "--k-min", "2"], "--k-min has no effect with --policy static"),
        (["--profile", "missing-profile.json"], "Profile file 'missing-profile.json' not found"),
        (["--k-min", "4", "--k-max", "2"], "Invalid decoding options: k_max (2) must be at least k_min (4)."),
        (["--draft-length", "3"], "--draft-length has no effect with --policy cmsd"),
    ],
)
def test_bad_option_is_one_line_exit_2(tmp_path: Path, translate_args: list[str], extra, message) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])

    result = invoke(translate_args + extra + [source])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_profile_is_one_line_exit_2(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])
    profile = tmp_path / "profile.json"
    profile.write_text("{ not json", encoding="utf-8")

    result = invoke(translate_args + ["--profile", str(profile), source])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert str(profile) in result.stderr


def test_profile_folder_is_one_line_exit_2(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])
    folder = tmp_path / "profiles"
    folder.mkdir()

    result = invoke(translate_args + ["--profile", str(folder), source])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: Profile '{folder}' is a folder, but a profile JSON file written by 'cmsd calibrate --out' is expected."
    ]


def test_missing_file_fails_before_models_load(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.txt")

    # The target does not exist either: only the input check may run.
    result = invoke(["translate", "--src", "en", "--tgt", "de", "--target", str(tmp_path / "no-model"), missing])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: Input file '{missing}' not found, so check the path."]


def test_missing_model_is_one_line_exit_2(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])

    result = invoke(["translate", "--src", "en", "--tgt", "de", "--target", str(tmp_path / "no-model"), source])

    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_vocabulary_mismatch_is_one_line_exit_2(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])

    result = invoke(
        ["translate", "--src", "en", "--tgt", "de", "--target", model_dirs["target"],
         "--draft", model_dirs["foreign"], source]
    )  # fmt: skip

    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "tokenizers map them to different strings" in result.stderr


def test_live_view_summary_matches_jsonl(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["The cat sat on the mat.", "", "Prices rose again."])
    args = [arg for arg in translate_args if arg != "--no-live"]

    result = invoke(args + ["--live", "--jsonl", source])

    assert result.exit_code == 0, result.stderr
    records = jsonl_records(result.stdout)
    drafted = sum(record["drafted"] for record in records)
    accepted = sum(record["accepted"] for record in records)
    shown = ANSI_ESCAPE.sub("", result.stderr)
    assert "budget" in shown
    assert "drafted" in shown
    assert "Translating en→de: summary" in shown
    assert f"{drafted} / {accepted}" in shown
    assert "3/3 lines" in shown


def test_live_view_off_without_terminal(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello."])
    args = [arg for arg in translate_args if arg != "--no-live"]

    result = invoke(args + [source])

    assert result.exit_code == 0
    assert result.stderr == ""


# Subprocess tests: signals and pipes need a real process.


def cmsd_process(args: list[str], **kwargs) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "cmsd_cli", *args], env=env, **kwargs)


def test_closed_pipe_exits_quietly(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello there."] * 40)

    process = cmsd_process(translate_args + [source], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first_line = process.stdout.readline()
    process.stdout.close()  # what `head -1` does after its first line
    _, stderr = process.communicate(timeout=120)

    assert first_line.endswith(b"\n")
    assert process.returncode == 0
    assert b"Traceback" not in stderr
    assert b"Exception ignored" not in stderr
    assert stderr == b""


def test_head_in_pipefail_pipeline(tmp_path: Path, translate_args: list[str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["Hello there."] * 40)
    command = " ".join([sys.executable, "-m", "cmsd_cli", *translate_args, source, "| head -2"])

    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=120)

    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == b""


def wait_for_lines(path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {count} lines within {timeout} s")


def test_ctrl_c_between_lines_keeps_finished_lines(tmp_path: Path, translate_args: list[str]) -> None:
    output = tmp_path / "out.txt"
    process = cmsd_process(
        translate_args + ["-o", str(output)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Two lines, then the process waits for more input, where Ctrl-C arrives.
    process.stdin.write(b"It rained all day.\nPrices rose again.\n")
    process.stdin.flush()
    wait_for_lines(output, 2, timeout=120)

    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    assert stderr.decode().splitlines() == [f"Interrupted: 2 lines finished in {output}."]
    assert output.read_bytes().count(b"\n") == 2
    assert output.read_bytes().endswith(b"\n")


def test_ctrl_c_during_generation_keeps_finished_lines(tmp_path: Path, model_dirs: dict[str, str]) -> None:
    source = write_lines(tmp_path / "in.txt", ["It rained all day."] * 20)
    output = tmp_path / "out.txt"
    args = [
        "translate", "--src", "en", "--tgt", "de", "--target", model_dirs["target"],
        "--draft", model_dirs["draft"], "--max-new-tokens", "60", "--no-live", "-o", str(output), source,
    ]  # fmt: skip
    process = cmsd_process(args, stderr=subprocess.PIPE)
    wait_for_lines(output, 1, timeout=120)

    # The signal lands while a later line is being generated; the checks hold on whichever line.
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    message = stderr.decode().splitlines()
    assert len(message) == 1
    match = re.fullmatch(rf"Interrupted: (\d+) of 20 lines finished in {re.escape(str(output))}\.", message[0])
    assert match is not None, message
    finished = int(match.group(1))
    assert 1 <= finished < 20
    contents = output.read_bytes()
    assert contents.count(b"\n") == finished
    assert contents.endswith(b"\n")
