"""`cmsd models`: the presets, their tasks, and whether each loads without the network right now."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cmsd_cli.app import app
from cmsd_cli.cli.help_format import PlainFlagCommand

# The one-row-per-preset table needs about 140 columns before its description column, which gets
# the rest. Narrower terminals (and pipes, which rich treats as 80 columns) get one block per preset
# with each value on its own line.
_MIN_WIDTH_FOR_WIDE_TABLE = 170


@app.command("models", cls=PlainFlagCommand)
def models_command() -> None:
    """List the model presets and whether each is available offline (no weights are loaded)."""
    from cmsd_cli.models import cache_root

    console = Console()
    if console.width >= _MIN_WIDTH_FOR_WIDE_TABLE:
        console.print(_wide_table())
    else:
        console.print(_narrow_table())
    console.print(
        "Any hub id, model folder or .gguf file also works with --target and --draft. "
        f"Converted GGUF models are cached in {cache_root()} (set CMSD_CACHE to move it)."
    )


def _preset_rows():
    """Yield (preset, display name, offline cell) for every preset, default marked."""
    from cmsd_cli.models import DEFAULT_PRESET, PRESETS, preset_availability

    for preset in PRESETS.values():
        available, reason = preset_availability(preset)
        name = f"{preset.name} (default)" if preset.name == DEFAULT_PRESET else preset.name
        offline = f"[green]yes[/green] ({reason})" if available else f"[yellow]no[/yellow] ({reason})"
        yield preset, name, offline


def _wide_table() -> Table:
    table = Table(title="Model presets (pass one with --preset)", title_justify="left")
    table.add_column("Preset", style="bold", no_wrap=True)
    table.add_column("Target", no_wrap=True)
    table.add_column("Draft", no_wrap=True)
    table.add_column("Tasks", no_wrap=True)
    table.add_column("Family", no_wrap=True)
    table.add_column("Offline now")
    table.add_column("Description")
    for preset, name, offline in _preset_rows():
        tasks = "\n".join(preset.tasks)
        table.add_row(name, preset.target, preset.draft or "none", tasks, preset.family, offline, preset.description)
    return table


def _narrow_table() -> Table:
    """Build a two-column table: the preset name, then its models, tasks, availability and description."""
    table = Table(title="Model presets (pass one with --preset)", title_justify="left", show_lines=True)
    table.add_column("Preset", style="bold", no_wrap=True)
    table.add_column("Details")
    for preset, name, offline in _preset_rows():
        details = Table.grid(padding=(0, 1))
        details.add_column(style="dim", no_wrap=True)
        details.add_column(overflow="fold")
        details.add_row("target", preset.target)
        details.add_row("draft", preset.draft or "none")
        details.add_row("tasks", f"{', '.join(preset.tasks)} ({preset.family} family)")
        details.add_row("offline now", offline)
        details.add_row("about", preset.description)
        table.add_row(name, details)
    return table
