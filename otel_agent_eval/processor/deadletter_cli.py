"""``otel-agent-eval deadletter list|replay|purge``: the requests the downstream refused for good.

The exporter moves a request the downstream refuses for good (bad data, too large even alone) from the outbox
to the dead letters, in the same SQLite file, so that it blocks nothing. From there it can be looked at
(``list``), sent again once the downstream is fixed (``replay``: back to the end of the outbox, taken by a
running ``serve`` within moments), or deleted (``purge``). These commands work beside a running ``serve``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import click

from ..output import BadInput
from .command import _open_store, data_dir_option
from .store import Store

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PAST = {"replay": "replayed", "purge": "purged"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``2h``, ``7d``, ``1w``, ``1h30m`` (a bare number: seconds)."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    if not value or not re.fullmatch(rf"(?:{_DURATION.pattern})+", value):
        raise BadInput(f"--older-than {text!r}: a duration such as 90s, 15m, 2h, 7d or 1h30m")
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))


def _ids(values: tuple[str, ...]) -> list[int]:
    ids = []
    for value in values:
        if not (value.isascii() and value.isdigit()) or int(value) >= 2**63:
            raise BadInput(f"{value!r}: a dead letter's id is a number (see `otel-agent-eval deadletter list`)")
        ids.append(int(value))
    return ids


def _selected(store: Store, data_dir: Path, ids: tuple[str, ...], every: bool, verb: str) -> list[int] | None:
    """The ids to act on (None: all), checked to exist: nothing is done when one does not."""
    if every and ids:
        raise BadInput(f"{verb}: give dead letter ids or --all, not both")
    if every:
        return None
    wanted = _ids(ids)
    known = {d.id for d in store.deadletters(wanted)}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise BadInput(f"no dead letter {', '.join(map(str, missing))} in {data_dir}; nothing was {_PAST[verb]}")
    return wanted


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.group("deadletter")
def deadletter() -> None:
    """The requests the downstream refused for good (kept on disk so that they block nothing): list them,
    send them again once the downstream is fixed, or delete them."""


@deadletter.command("list")
@data_dir_option
def list_cmd(data_dir: Path) -> None:
    """Every dead letter: id, when it was refused, why (the status code), the downstream, its spans and trace
    ids, then the downstream's message."""
    store = _open_store(data_dir)
    try:
        rows = store.deadletters()
    finally:
        store.close()
    if not rows:
        click.echo("no dead letters", err=True)
        return
    click.echo(f"{'id':>6}  {'refused (UTC)':19}  {'reason':20}  {'downstream':28}  {'spans':>5}  trace ids")
    for row in rows:
        click.echo(
            f"{row.id:>6}  {_when(row.failed):19}  {row.reason:20}  {row.downstream:28}  {row.spans:>5}  "
            + (",".join(row.trace_ids) or "-")
        )
        click.echo(f"{'':>6}  {row.message or '(no message)'} (after {row.attempts} attempts, {row.size} bytes)")


@deadletter.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@data_dir_option
def replay(ids: tuple[str, ...], every: bool, data_dir: Path) -> None:
    """Move dead letters (IDS, or --all) back to the end of the outbox, to be sent again: for after a fix
    downstream. A request refused again comes back as a new dead letter."""
    if not ids and not every:
        raise BadInput("replay: give dead letter ids (see `otel-agent-eval deadletter list`) or --all")
    store = _open_store(data_dir)
    try:
        moved = store.deadletter_replay(_selected(store, data_dir, ids, every, "replay"))
    finally:
        store.close()
    click.echo(f"moved {moved} dead letter{'s' if moved != 1 else ''} back to the outbox")


@deadletter.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@click.option("--older-than", default=None, metavar="DURATION", help="Those refused longer ago than this (7d, 12h).")
@data_dir_option
def purge(ids: tuple[str, ...], every: bool, older_than: str | None, data_dir: Path) -> None:
    """Delete dead letters for good: IDS, --all, or --older-than DURATION."""
    given = sum((bool(ids), every, older_than is not None))
    if given != 1:
        raise BadInput("purge: give exactly one of dead letter ids, --all or --older-than DURATION")
    age = parse_duration(older_than) if older_than is not None else None
    store = _open_store(data_dir)
    try:
        selected = None if age is not None else _selected(store, data_dir, ids, every, "purge")
        purged = store.deadletter_purge(selected, older_than=age)
    finally:
        store.close()
    click.echo(f"purged {purged} dead letter{'s' if purged != 1 else ''}")
