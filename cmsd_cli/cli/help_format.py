"""Command classes whose rich help shows boolean flags without a type placeholder.

Typer 0.29 puts the value type after every option in the rich help, so flags such as --jsonl and
--help read `--jsonl <bool>`, as if they took a value. A flag takes no value, so these classes
give each flag an empty metavar, which the help renders as no type at all.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup


def _clear_flag_metavars(params: list[Any]) -> list[Any]:
    # Typer 0.29 ships its own copy of click (typer._click), so the check reads attributes
    # instead of testing for click.Option.
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class PlainFlagCommand(TyperCommand):
    """A Typer command whose help lists boolean flags without `<bool>`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _clear_flag_metavars(super().get_params(ctx))


class PlainFlagGroup(TyperGroup):
    """A Typer group whose help lists boolean flags without `<bool>`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _clear_flag_metavars(super().get_params(ctx))
