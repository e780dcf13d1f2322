"""Calibration: fit acceptance against draft confidence, measure costs, and write profile files."""

from cmsd_cli.calibrate.calibration import (
    CalibrationError,
    CalibrationResult,
    CalibrationSettings,
    build_profile,
    calibrate,
)
from cmsd_cli.calibrate.costs import CostModel, measure_costs
from cmsd_cli.calibrate.fit import AcceptanceCurve, brier_score, expected_calibration_error, fit_isotonic
from cmsd_cli.calibrate.profile import (
    PROFILE_SCHEMA,
    InvalidProfileError,
    ProfileError,
    ProfileMismatchError,
    load_profile,
    read_profile,
    write_profile,
)
from cmsd_cli.calibrate.records import DraftRound, LineRecord, judged_tokens, line_record
from cmsd_cli.calibrate.search import (
    PolicySetting,
    SearchGrid,
    model_throughput,
    replay_lines,
    replay_throughput,
    search,
)

__all__ = [
    "PROFILE_SCHEMA",
    "AcceptanceCurve",
    "CalibrationError",
    "CalibrationResult",
    "CalibrationSettings",
    "CostModel",
    "DraftRound",
    "InvalidProfileError",
    "LineRecord",
    "PolicySetting",
    "ProfileError",
    "ProfileMismatchError",
    "SearchGrid",
    "brier_score",
    "build_profile",
    "calibrate",
    "expected_calibration_error",
    "fit_isotonic",
    "judged_tokens",
    "line_record",
    "load_profile",
    "measure_costs",
    "model_throughput",
    "read_profile",
    "replay_lines",
    "replay_throughput",
    "search",
    "write_profile",
]
