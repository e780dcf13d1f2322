"""The shared model and decoding options: how the decorators expand them and what they pass to the engine."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

import pytest
from cmsd_cli.cli.options import DecodingOptions, ModelOptions, decoding_options, model_options
from cmsd_cli.cli.errors import UserInputError


def make_app(received: dict) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @model_options
    @decoding_options(max_new_tokens=77)
    def run(name: str = "x", models: ModelOptions = ModelOptions(), decoding: DecodingOptions = DecodingOptions()):
        received.update(name=name, models=models, decoding=decoding)

    @app.command()
    def other() -> None:
        pass

    return app


def test_defaults_without_flags() -> None:
    received: dict = {}

    result = CliRunner().invoke(make_app(received), ["run"])

    assert result.exit_code == 0, result.output
    assert received["models"] == ModelOptions(preset=None, target=None, draft=None, device="auto", dtype="auto")
    decoding = received["decoding"]
    assert decoding.max_new_tokens == 77
    assert decoding.policy == "cmsd"
    assert decoding.verify == "greedy"
    assert decoding.engine_kwargs() == {
        "policy": "cmsd",
        "verify": "greedy",
        "policy_params": None,
        "verify_params": None,
        "max_new_tokens": 77,
        "temperature": 1.0,
        "top_k": None,
        "top_p": None,
        "seed": None,
    }


def test_flags_fill_both_dataclasses() -> None:
    received: dict = {}
    args = [
        "run", "--name", "y", "--preset", "t5", "--target", "a", "--draft", "b", "--device", "cpu",
        "--dtype", "float32", "--policy", "heuristic", "--verify", "tolerant", "--draft-length", "3",
        "--k-min", "2", "--k-max", "6", "--beta", "4", "--tau", "1.5", "--temperature", "0.7",
        "--top-k", "20", "--top-p", "0.9", "--seed", "5",
    ]  # fmt: skip

    result = CliRunner().invoke(make_app(received), args)

    assert result.exit_code == 0, result.output
    assert received["name"] == "y"
    assert received["models"] == ModelOptions(preset="t5", target="a", draft="b", device="cpu", dtype="float32")
    kwargs = received["decoding"].engine_kwargs()
    assert kwargs["policy"] == "heuristic"
    assert kwargs["verify"] == "tolerant"
    assert kwargs["policy_params"] == {"draft_length": 3, "k_min": 2, "k_max": 6}
    assert kwargs["verify_params"] == {"beta": 4, "tau": 1.5}
    assert kwargs["temperature"] == 0.7
    assert kwargs["top_k"] == 20
    assert kwargs["top_p"] == 0.9
    assert kwargs["seed"] == 5


def test_only_set_parameters_are_passed() -> None:
    decoding = DecodingOptions(theta_draft=0.2)

    assert decoding.policy_params() == {"theta_draft": 0.2}
    assert decoding.verify_params() == {}
    assert decoding.engine_kwargs()["verify_params"] is None


def test_unknown_policy_is_one_line_error(tmp_path) -> None:
    from cmsd_cli.app import app

    source = tmp_path / "in.txt"
    source.write_text("Hello.\n")
    for flag, value in (("--policy", "fastest"), ("--verify", "nope")):
        result = CliRunner().invoke(app, ["translate", "--src", "en", "--tgt", "de", flag, value, str(source)])

        assert result.exit_code == 2
        assert f"Unknown {flag} '{value}'" in result.output
        assert "Traceback" not in result.output


def test_help_groups_model_and_decoding_panels() -> None:
    result = CliRunner().invoke(make_app({}), ["run", "--help"], terminal_width=120)

    assert result.exit_code == 0
    assert result.output.index("Model") < result.output.index("Decoding")
    for flag in ("--preset", "--target", "--draft", "--k-max", "--theta-draft", "--confidence-weight", "--profile"):
        assert flag in result.output


def test_command_without_parameter_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs a parameter named 'models'"):

        @model_options
        def command(name: str) -> None:
            pass


def test_profile_missing_file_is_user_error(tmp_path) -> None:
    decoding = DecodingOptions(profile=tmp_path / "nope.json")

    with pytest.raises(UserInputError, match="Profile file .* not found"):
        decoding.check()


def test_unknown_preset_is_user_error() -> None:
    with pytest.raises(UserInputError, match="Unknown preset 'nope', expected one of: .*offline"):
        ModelOptions(preset="nope").check()


def test_same_source_and_target_language_is_rejected(tmp_path) -> None:
    from cmsd_cli.app import app

    source = tmp_path / "in.txt"
    source.write_text("Hello.\n")
    result = CliRunner().invoke(app, ["translate", "--src", "en", "--tgt", "EN", str(source)])

    assert result.exit_code == 2
    assert "--src and --tgt are both 'en'" in result.output
