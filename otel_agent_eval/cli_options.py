"""Click options shared by several commands (``evaluate``, ``calibrate``): one definition, one help text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

strict_option = click.option(
    "--strict", is_flag=True, help="Fail (exit 2) on the first run that cannot be read, instead of skipping it."
)


def pack_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--policy-pack FILE`` (repeatable, into ``packs``) and ``--pack NAME`` (into ``pack``)."""
    f = click.option(
        "--pack",
        "pack",
        default="auto",
        show_default=True,
        help="The policy pack for every run, by name (built-in: generic, tau-airline, tau-retail; or one given "
        "with --policy-pack); 'auto' chooses per run from its policy text, 'generic' judges as for a domain no "
        "pack knows.",
    )(f)
    return click.option(
        "--policy-pack",
        "packs",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="A policy pack (YAML) to choose from besides the built-in ones; repeatable.",
    )(f)
