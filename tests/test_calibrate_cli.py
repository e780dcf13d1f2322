"""`cmsd calibrate` end to end on tiny local models, and its input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import cmsd_cli.models
from cmsd_cli.app import app
from cmsd_cli.calibrate import AcceptanceCurve, read_profile
from test_cli_generate import model_dirs, write_lines  # noqa: F401 (model_dirs is a fixture)

SENTENCES = ["The cat sat on the mat.", "", "It rained all day.", "Prices rose again.", "Birds sing.", "Rain falls."]


def invoke(args: list[str]):
    return CliRunner().invoke(app, ["calibrate", *args])


@pytest.fixture()
def source(tmp_path: Path) -> str:
    return write_lines(tmp_path / "in.en", SENTENCES)


@pytest.fixture()
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def load_pair(**kwargs):
        raise AssertionError("input errors must be reported before any model loads")

    monkeypatch.setattr(cmsd_cli.models, "load_pair", load_pair)


@pytest.fixture(scope="module")
def calibrated(model_dirs: dict[str, str], tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    folder = tmp_path_factory.mktemp("calibrated")
    source = write_lines(folder / "in.en", SENTENCES)
    out, plot = folder / "profile.json", folder / "curve.png"
    result = invoke(
        [
            "--task", "translate", "--src", "en", "--tgt", "de", "--source", source,
            "--target", model_dirs["target"], "--draft", model_dirs["draft"],
            "--max-new-tokens", "8", "--repeats", "1",
            "--out", str(out), "--plot", str(plot),
        ]
    )  # fmt: skip
    return result, out, plot


def test_calibrate_writes_valid_profile(calibrated) -> None:
    result, out, _ = calibrated

    assert result.exit_code == 0, result.stderr
    profile = read_profile(out)
    assert profile["schema"] == 1
    assert profile["models"]["target"] == "target"
    assert profile["models"]["draft"] == "draft"
    assert profile["device"]["type"] == "cpu"
    assert profile["dtype"] == "float32"
    assert set(profile["versions"]) == {"cmsd", "torch", "transformers"}
    assert profile["inputs"]["lines"] == 5
    assert profile["inputs"]["holdout_lines"] == 1
    assert profile["verify"] == "greedy"


def test_calibrate_profile_holds_fit_costs_and_choice(calibrated) -> None:
    _, out, _ = calibrated
    profile = read_profile(out)

    params = profile["policy_params"]
    assert 1 <= params["k_min"] <= params["k_max"] <= 8
    assert params["confidence_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    curve = AcceptanceCurve.from_dict(profile["fit"])
    assert list(curve.acceptance) == sorted(curve.acceptance)
    # Verification is measured up to the default k_max of 8 plus one, to compare with the defaults.
    assert list(profile["costs"]["verify_seconds"]) == [str(m) for m in range(1, 10)]
    assert profile["costs"]["draft_step_seconds"] > 0
    # The defaults are one of the searched settings, so the choice is at least as fast on train lines.
    chosen = profile["expected"]["chosen"]["replay"]["train"]["tokens_per_second"]
    default = profile["expected"]["default"]["replay"]["train"]["tokens_per_second"]
    assert chosen >= default
    assert profile["search"]["candidates"] > 0


def test_calibrate_report_and_plot(calibrated) -> None:
    result, out, plot = calibrated

    assert "Acceptance against confidence" in result.stdout
    assert "Chosen: k_min=" in result.stdout
    assert "Expected speedup over the default parameters on held-out lines" in result.stdout
    assert f"Profile written to {out}" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_translate_uses_calibrated_profile(calibrated, model_dirs: dict[str, str], source: str) -> None:  # noqa: F811
    _, out, _ = calibrated
    models = ["--target", model_dirs["target"], "--draft", model_dirs["draft"]]

    result = CliRunner().invoke(
        app, ["translate", "--src", "en", "--tgt", "de", *models, "--max-new-tokens", "6", "--no-live",
              "--profile", str(out), source],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(SENTENCES)


def test_translate_rejects_profile_of_other_pair(calibrated, model_dirs: dict[str, str], source: str) -> None:  # noqa: F811
    _, out, _ = calibrated
    swapped = ["--target", model_dirs["draft"], "--draft", model_dirs["target"]]

    result = CliRunner().invoke(
        app, ["translate", "--src", "en", "--tgt", "de", *swapped, "--no-live", "--profile", str(out), source]
    )

    assert result.exit_code == 2
    assert "was calibrated for target target with draft draft, not for draft with draft target" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "translate", "--src", "en"], "Translation needs --tgt"),
        (["--task", "translate", "--tgt", "xx"], "xx"),
        (["--task", "summarize", "--tgt", "de"], "--src and --tgt apply to --task translate only"),
        (["--task", "translate", "--tgt", "de", "--out", "missing/profile.json"], "The folder of --out"),
    ],
)
def test_input_errors_before_model_load(no_model_load, source: str, extra: list[str], message: str) -> None:
    result = invoke(["--source", source, *extra])

    assert result.exit_code == 2
    assert message in result.stderr


def test_too_few_lines_is_user_error(no_model_load, tmp_path: Path) -> None:
    one_line = write_lines(tmp_path / "one.en", ["Only one sentence.", ""])

    result = invoke(["--task", "translate", "--tgt", "de", "--source", one_line])

    assert result.exit_code == 2
    assert "has 1 non-empty lines but calibration needs at least 2" in result.stderr


def test_missing_source_is_user_error(no_model_load, tmp_path: Path) -> None:
    result = invoke(["--task", "translate", "--tgt", "de", "--source", str(tmp_path / "absent.en")])

    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_long_input_is_cut_with_warning(model_dirs: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    # The tiny target reads 512 tokens, one per character here.
    long_source = write_lines(tmp_path / "long.en", ["The cat sat. " * 50, "Rain falls."])

    result = invoke(
        [
            "--task", "translate", "--tgt", "de", "--source", long_source,
            "--target", model_dirs["target"], "--draft", model_dirs["draft"],
            "--max-new-tokens", "4", "--repeats", "1", "--out", str(tmp_path / "p.json"),
        ]
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "1 of 2 inputs (non-empty lines 1) do not fit in the context of target" in result.stderr
