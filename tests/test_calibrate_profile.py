"""Profile files: round trip, rejection of other model pairs and invalid files, and --profile loading."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cmsd_cli.calibrate import (
    InvalidProfileError,
    ProfileMismatchError,
    load_profile,
    read_profile,
    write_profile,
)
from cmsd_cli.calibrate.profile import PROFILE_KIND, device_description
from cmsd_cli.cli.errors import UserInputError
from cmsd_cli.cli.options import DecodingOptions

POLICY_PARAMS = {
    "confidence_weight": 0.75,
    "theta_draft": 0.2,
    "k_min": 2,
    "k_max": 6,
    "track": "acceptance",
    "ema_decay": 0.7,
    "initial": 0.5,
}


def cpu_pair(target: str = "tiny-target", draft: str | None = "tiny-draft", dtype=torch.float32) -> SimpleNamespace:
    """The fields of a ModelPair that profiles read."""
    return SimpleNamespace(target_name=target, draft_name=draft, device=torch.device("cpu"), dtype=dtype)


def profile_for(pair: SimpleNamespace, **changes) -> dict:
    profile = {
        "schema": 1,
        "kind": PROFILE_KIND,
        "created": "2025-01-01T00:00:00+00:00",
        "models": {"target": pair.target_name, "draft": pair.draft_name, "preset": None},
        "device": device_description(pair.device),
        "dtype": "float32",
        "versions": {"torch": torch.__version__},
        "policy": "cmsd",
        "policy_params": dict(POLICY_PARAMS),
        "verify": "greedy",
        "verify_params": {},
    }
    profile.update(changes)
    return profile


@pytest.fixture()
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    write_profile(profile_for(cpu_pair()), path)
    return path


def test_profile_round_trip(profile_path: Path) -> None:
    assert read_profile(profile_path) == profile_for(cpu_pair())
    assert load_profile(profile_path, cpu_pair()) == {"policy_params": POLICY_PARAMS, "verify_params": {}}


def test_profile_for_other_target_is_rejected(profile_path: Path) -> None:
    with pytest.raises(ProfileMismatchError, match="calibrated for target tiny-target with draft tiny-draft, not for other"):
        load_profile(profile_path, cpu_pair(target="other"))


def test_profile_for_other_draft_is_rejected(profile_path: Path) -> None:
    with pytest.raises(ProfileMismatchError, match="run 'cmsd calibrate' for this pair"):
        load_profile(profile_path, cpu_pair(draft=None))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a cmsd calibration profile"),
        (json.dumps({"schema": 1}), "is not a cmsd calibration profile"),
    ],
)
def test_invalid_profile_file_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(InvalidProfileError, match=message):
        load_profile(path, cpu_pair())


def test_profile_with_other_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "future.json"
    path.write_text(json.dumps(profile_for(cpu_pair(), schema=2)), encoding="utf-8")

    with pytest.raises(InvalidProfileError, match="has schema 2 but this cmsd reads schema 1"):
        load_profile(path, cpu_pair())


def test_profile_with_invalid_parameters_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad-params.json"
    bad = profile_for(cpu_pair(), policy_params={**POLICY_PARAMS, "k_min": 5, "k_max": 3})
    path.write_text(json.dumps(bad), encoding="utf-8")

    with pytest.raises(InvalidProfileError, match=r"invalid policy_params \(k_max \(3\) must be at least k_min \(5\)\)"):
        load_profile(path, cpu_pair())


def test_writing_invalid_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfileError, match="has no verify_params object"):
        write_profile(profile_for(cpu_pair(), verify_params=None), tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_missing_profile_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfileError, match="not found"):
        load_profile(tmp_path / "absent.json", cpu_pair())


def test_profile_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfileError, match="is a folder, but a profile JSON file written by 'cmsd calibrate --out'"):
        load_profile(tmp_path, cpu_pair())


def test_profile_from_other_device_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gpu.json"
    other_device = {**device_description(torch.device("cpu")), "type": "cuda"}
    path.write_text(json.dumps(profile_for(cpu_pair(), device=other_device)), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="cmsd_cli.calibrate.profile"):
        params = load_profile(path, cpu_pair())

    assert params["policy_params"] == POLICY_PARAMS
    assert len(caplog.records) == 1
    assert "device 'cuda' instead of 'cpu'" in caplog.records[0].getMessage()


def test_profile_from_other_dtype_warns(profile_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cmsd_cli.calibrate.profile"):
        load_profile(profile_path, cpu_pair(dtype=torch.bfloat16))

    assert "dtype 'float32' instead of 'bfloat16'" in caplog.text


def test_profile_with_other_thread_count_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "threads.json"
    recorded = {**device_description(torch.device("cpu")), "threads": torch.get_num_threads() + 3}
    path.write_text(json.dumps(profile_for(cpu_pair(), device=recorded)), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="cmsd_cli.calibrate.profile"):
        load_profile(path, cpu_pair())

    assert f"{torch.get_num_threads() + 3} torch threads instead of {torch.get_num_threads()}" in caplog.text


def test_profile_on_same_machine_is_silent(profile_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load_profile(profile_path, cpu_pair())

    assert caplog.records == []


def test_option_profile_values_under_command_line(profile_path: Path) -> None:
    decoding = DecodingOptions(profile=profile_path, k_max=8, theta_draft=0.4)

    kwargs = decoding.engine_kwargs(cpu_pair())

    assert kwargs["policy"] == "cmsd"
    assert kwargs["policy_params"] == {**POLICY_PARAMS, "k_max": 8, "theta_draft": 0.4}
    assert kwargs["verify_params"] is None


def test_option_profile_keeps_only_parameters_of_chosen_policy(
    profile_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    decoding = DecodingOptions(profile=profile_path, policy="static", draft_length=3)

    with caplog.at_level(logging.WARNING, logger="cmsd_cli.cli.options"):
        kwargs = decoding.engine_kwargs(cpu_pair())

    assert kwargs["policy_params"] == {"confidence_weight": 0.75, "draft_length": 3}
    assert "ema_decay, initial, k_max, k_min, theta_draft, track" in caplog.text


def test_option_profile_for_other_pair_is_user_error(profile_path: Path) -> None:
    decoding = DecodingOptions(profile=profile_path)

    with pytest.raises(UserInputError, match="was calibrated for target tiny-target"):
        decoding.engine_kwargs(cpu_pair(target="other"))


def test_option_profile_clash_is_user_error(profile_path: Path) -> None:
    decoding = DecodingOptions(profile=profile_path, k_max=1)

    with pytest.raises(UserInputError, match=r"k_max \(1\) must be at least k_min \(2\)"):
        decoding.engine_kwargs(cpu_pair())
