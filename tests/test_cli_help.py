"""What `--help` shows for each command, and the options bench does not offer."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cmsd_cli.app import app

COMMANDS = [[], ["translate"], ["summarize"], ["bench"], ["calibrate"], ["models"]]


def help_text(command: list[str]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: " ".join(command) or "cmsd")
def test_help_shows_no_bool_placeholder(command: list[str]) -> None:
    text = help_text(command)

    assert "--help" in text
    assert "<bool>" not in text


def test_help_keeps_flag_pairs_and_value_types() -> None:
    text = help_text(["translate"])

    assert "--live" in text
    assert "--no-live" in text
    assert "--jsonl" in text
    assert "<int range>" in text  # options that take a value still show its type


def test_bench_help_offers_no_policy_or_verify() -> None:
    text = help_text(["bench"])

    assert "--policy" not in text
    assert "--verify" not in text
    assert "--methods" in text
    for option in ("--draft-length", "--k-min", "--k-max", "--theta-draft", "--beta", "--tau"):
        assert option in text


@pytest.mark.parametrize(("option", "value"), [("--policy", "static"), ("--verify", "tolerant")])
def test_bench_rejects_policy_and_verify(tmp_path, monkeypatch, option: str, value: str) -> None:
    import cmsd_cli.models

    def load_pair(**kwargs):
        raise AssertionError("the option must be rejected before any model loads")

    monkeypatch.setattr(cmsd_cli.models, "load_pair", load_pair)
    source = tmp_path / "in.en"
    source.write_text("The dog barks.\n", encoding="utf-8")

    result = CliRunner().invoke(
        app, ["bench", "--task", "translate", "--tgt", "de", "--source", str(source), option, value]
    )

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: cmsd bench takes no {option} because each method sets its own policy and verification rule, "
        "so choose methods with --methods instead (for example --methods ar,static,cmsd)."
    ]
