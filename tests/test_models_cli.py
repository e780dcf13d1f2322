"""`cmsd models`: the preset table and offline availability, without loading any weights."""

from __future__ import annotations

from typer.testing import CliRunner

from cmsd_cli.app import app
from cmsd_cli.models import PRESETS, packaged


def run_models(monkeypatch, columns: int = 200):
    monkeypatch.setenv("COLUMNS", str(columns))
    return CliRunner().invoke(app, ["models"])


def test_models_lists_every_preset_with_tasks(monkeypatch):
    import cmsd_cli.models.presets as presets

    monkeypatch.setattr(presets, "hub_cached", lambda repo_id: False)

    result = run_models(monkeypatch)

    assert result.exit_code == 0, result.output
    for name in PRESETS:
        assert name in result.output
    assert "offline (default)" in result.output
    assert "summarize" in result.output
    assert "translate" in result.output
    assert "not in the hub cache" in result.output


def test_models_offline_follows_package_and_hub_cache(monkeypatch):
    import cmsd_cli.models.presets as presets

    monkeypatch.setattr(presets, "hub_cached", lambda repo_id: repo_id.startswith("google-t5/"))
    monkeypatch.setattr(packaged, "is_installed", lambda model: False)

    available = {name: presets.preset_availability(preset) for name, preset in PRESETS.items()}

    assert available["t5"] == (True, "in the hub cache")
    assert available["flan-t5"] == (False, "not in the hub cache")
    assert available["offline"][0] is False
    assert "pip install 'cmsd-cli[offline]'" in available["offline"][1]


def test_models_wide_table_has_description_column(monkeypatch):
    result = run_models(monkeypatch, columns=220)

    assert result.exit_code == 0, result.output
    assert "Description" in result.output
    for preset in PRESETS.values():
        assert preset.description in result.output


def test_models_fits_80_columns(monkeypatch):
    result = run_models(monkeypatch, columns=80)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for line in lines:
        assert len(line.rstrip()) <= 80, line
    # Each model id stays whole on one line, so it can be copied into --target or --draft.
    for preset in PRESETS.values():
        assert any(preset.target in line for line in lines), preset.target
        if preset.draft is not None:
            assert any(preset.draft in line for line in lines), preset.draft
    assert "offline (default)" in result.output
