"""The `cmsd` command line: each subcommand lives in `cmsd_cli.cli` and is registered here."""

from __future__ import annotations

import typer

from cmsd_cli import __version__
from cmsd_cli.cli.help_format import PlainFlagGroup

app = typer.Typer(
    name="cmsd",
    cls=PlainFlagGroup,
    help="Confidence-modulated speculative decoding: translate and summarize with Hugging Face models, faster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cmsd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Speculative decoding where the draft model's confidence sets the draft length and the strictness of verification."""


# Subcommands. Each module registers its commands on `app` when imported.
# (one import line per command module; keep them in this block)
import cmsd_cli.cli.bench_cmd  # noqa: E402,F401
import cmsd_cli.cli.calibrate_cmd  # noqa: E402,F401
import cmsd_cli.cli.generate_cmd  # noqa: E402,F401
import cmsd_cli.cli.models_cmd  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
