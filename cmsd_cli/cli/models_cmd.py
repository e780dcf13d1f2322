"""`cmsd models`: the presets, their tasks, and whether each loads without the network right now."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cmsd_cli.app import app
from cmsd_cli.cli.help_format import PlainFlagCommand

# Narrower terminals (and pipes, which rich treats as 80 columns) get the table without descriptions.
_MIN_WIDTH_FOR_DESCRIPTIONS = 140


@app.command("models", cls=PlainFlagCommand)
def models_command() -> None:
    """List the model presets and whether each is available offline (no weights are loaded)."""
    from cmsd_cli.models import DEFAULT_PRESET, PRESETS, cache_root, preset_availability

    console = Console()
    describe = console.width >= _MIN_WIDTH_FOR_DESCRIPTIONS

    table = Table(title="Model presets (pass one with --preset)", title_justify="left")
    table.add_column("Preset", style="bold", no_wrap=True)
    table.add_column("Target", overflow="fold")
    table.add_column("Draft", overflow="fold")
    table.add_column("Tasks", no_wrap=True)
    table.add_column("Family", no_wrap=True)
    table.add_column("Offline now")
    if describe:
        table.add_column("Description")

    for preset in PRESETS.values():
        available, reason = preset_availability(preset)
        name = f"{preset.name} (default)" if preset.name == DEFAULT_PRESET else preset.name
        offline = f"[green]yes[/green] ({reason})" if available else f"[yellow]no[/yellow] ({reason})"
        row = [name, preset.target, preset.draft or "none", "\n".join(preset.tasks), preset.family, offline]
        if describe:
            row.append(preset.description)
        table.add_row(*row)

    console.print(table)
    console.print(
        "Any hub id, model folder or .gguf file also works with --target and --draft. "
        f"Converted GGUF models are cached in {cache_root()} (set CMSD_CACHE to move it)."
    )
