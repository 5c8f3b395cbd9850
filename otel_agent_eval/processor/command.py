"""The ``serve``, ``traces`` and ``show`` commands.

Every ``serve`` setting is a flag, an environment variable ``AGENT_EVAL_<SETTING>`` (e.g.
``AGENT_EVAL_QUIET_PERIOD=5``), or a key of a YAML file given with ``--config`` (e.g. ``quiet_period: 5``), in
that order of precedence. ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` set the
downstream when ``--downstream`` does not.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..errors import InputError
from ..ingest.span_record import records_from_request
from ..output import BadInput, terminal_safe
from ..tree import render_trace, step_numbers
from .export import display
from .security import StartupError
from .server import Processor, ServeConfig, check_config
from .settings import Component, base_type, is_optional
from .settings import Field as SettingField
from .store import Store
from .workers import engine_for

DEFAULT_DATA_DIR = ".agent-eval"


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--config FILE``: its settings become the defaults of the other options (flags and env vars still win).
    A section per component (``assembly: {quiet_period: 5}``), as in a Collector's configuration; a setting's
    name alone at the top level (``quiet_period: 5``) is read as well, each name being unique."""
    if value is None:
        return None
    try:
        data = yaml.safe_load(Path(value).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise BadInput(f"{value}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{value}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{value}: a configuration file is a YAML mapping of settings")
    ctx.default_map = {**(ctx.default_map or {}), **_flatten(value, data)}
    return value


def _flatten(file: str, data: dict[Any, Any]) -> dict[str, Any]:
    sections = {c.section: {f.name for f in c.fields()} for c in ServeConfig.COMPONENTS}
    names = {f.name for f in ServeConfig.settings()} | {"log_level"}
    flat: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            unknown += [f"{key}.{k}" for k in value if k not in sections[key]]
            flat.update({k: v for k, v in value.items() if k in sections[key]})
        elif key in names:
            flat[key] = value
        else:
            unknown.append(str(key))
    if unknown:
        raise BadInput(f"{file}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(config_keys())}")
    fields = {f.name: f for f in ServeConfig.settings()}
    for name, value in list(flat.items()):
        if name in fields:
            flat[name] = _file_value(file, fields[name], value)
    return flat


_SCALAR = (str, int, float, bool)


def _file_value(file: str, f: SettingField, value: Any) -> Any:
    """A value from the file in the shape its option takes (click converts and range-checks it from there):
    one scalar, a list of scalars (one scalar is a list of one), or, for the headers, a mapping."""
    where = f"{file}: {f.section}.{f.name}"
    origin = typing.get_origin(f.type)
    if value is None:
        return None
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, _SCALAR) for v in value.values()):
            raise BadInput(f"{where}: expected a mapping of header names to values")
        return [f"{k}={v}" for k, v in value.items()]  # NAME=VALUE items, as on the flag
    if origin is tuple:
        items = [value] if isinstance(value, _SCALAR) else value
        if not isinstance(items, list) or not all(isinstance(v, _SCALAR) for v in items):
            raise BadInput(f"{where}: expected a list of values")
        return items
    if not isinstance(value, _SCALAR):
        raise BadInput(f"{where}: expected one value, not {type(value).__name__}")
    return value


def _downstream_default() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


class _ListItem(click.ParamType):  # type: ignore[type-arg]
    """Text items of a repeatable option; its environment variable holds them separated by commas (a header's
    value has spaces: ``AGENT_EVAL_DOWNSTREAM_HEADERS='authorization=Bearer abc,x-team=ai'``)."""

    name = "text"
    envvar_list_splitter = ","

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return str(value).strip()


def _click_type(f: SettingField) -> click.ParamType[Any, Any] | None:
    kind = base_type(f.type)
    if typing.get_origin(f.type) in (tuple, dict) and kind is not Path:
        return _ListItem()
    low, high = f.spec.minimum, f.spec.maximum
    if kind is int:
        return click.IntRange(
            None if low is None else int(low), None if high is None else int(high), min_open=f.spec.min_open
        )
    if kind is float:
        return click.FloatRange(low, high, min_open=f.spec.min_open)
    if kind is Path:
        return click.Path(dir_okay=f.name.endswith("_dir"), file_okay=not f.name.endswith("_dir"), path_type=Path)
    return None  # text


def _option(f: SettingField, *, envvar: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click option of a declared setting: its flag, type and range, default and help, all from the one
    declaration (the environment variable comes from the option's name, ``AGENT_EVAL_QUIET_PERIOD``: under
    ``serve`` from its prefix, elsewhere given as ``envvar``)."""
    if f.type is bool:
        name = f.flag[2:]
        return click.option(
            f"--{name}/--no-{name}", f.name, default=f.default, envvar=envvar, show_envvar=True, help=f.spec.help
        )
    multiple = typing.get_origin(f.type) in (tuple, dict)
    default: Any = f.default
    if multiple:
        default = None  # click's own empty tuple; the declared default (always empty) applies
    return click.option(
        f.flag,
        f.name,
        type=_click_type(f),
        default=default,
        multiple=multiple,
        metavar=f.spec.metavar,
        show_default=not multiple and f.default is not None,
        envvar=envvar,
        show_envvar=True,
        help=f.spec.help,
    )


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for f in reversed(ServeConfig.settings()):  # decorators apply bottom-up: --help lists them in order
        command = _option(f)(command)
    return command


def component_options(component: type[Component]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of one component's settings, for another command than ``serve`` (``evaluate --judge``):
    the same flags, environment variables, ranges and help."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(component.fields()):
            command = _option(f, envvar=f.envvar)(command)
        return command

    return decorate


def build_config(settings: dict[str, Any]) -> ServeConfig:
    """A :class:`ServeConfig` from ``serve``'s parsed options (flat, by setting name; the command's own
    options, such as ``--log-level``, are not the processor's and are left out), validated."""
    names = {f.name for f in ServeConfig.settings()}
    values = {name: value for name, value in settings.items() if name in names}
    headers = {}
    for item in values.pop("downstream_headers", None) or ():
        name, sep, value = str(item).partition("=")
        if not sep:
            raise BadInput(f"--downstream-header {item!r}: expected NAME=VALUE")
        headers[name.strip()] = value.strip()
    values["downstream_headers"] = headers
    values["downstream"] = values.get("downstream") or _downstream_default()
    for f in ServeConfig.settings():  # '' turns an address off, from a flag, the environment or the file
        if is_optional(f.type) and values.get(f.name) == "":
            values[f.name] = None
    for name in ("policy_packs", "agent_labels"):
        values[name] = tuple(values.get(name) or ())
    try:
        config = ServeConfig.of(**values)
        config.validate()
    except StartupError as exc:
        raise BadInput(str(exc)) from None
    return config


@click.command(context_settings={"auto_envvar_prefix": "AGENT_EVAL", "show_default": True})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="A YAML file of settings (keys: listed below the options).",
)
@_settings_options
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the resulting configuration (flags, environment and file merged, validated) as YAML and exit.",
)
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def serve(log_level: str, print_config: bool, **settings: Any) -> None:
    """Receive OTLP traces, evaluate each agent run, label its spans, and hand them on.

    Spans are written to an on-disk inbox before they are acknowledged, and stay there until the downstream
    has taken their labelled traces; what it does not take at once waits in an on-disk outbox: an outage, a
    crash or a restart loses nothing. SIGTERM (or Ctrl-C) stops receiving, evaluates what is buffered and
    drains the outbox.
    """
    config = build_config(settings)
    if print_config:
        _check_files(config)  # what serve would refuse at start, refused here too
        click.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)
        return
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    umask = os.umask(0o077)  # what serve writes (its data directory holds whole conversations) is private
    try:
        _serve(config)
    finally:
        os.umask(umask)


def _check_files(config: ServeConfig) -> None:
    """The TLS files, the policy packs, the pack's name and the calibration, read as ``serve`` reads them."""
    try:
        check_config(config)
        engine_for(config.evaluation)
    except (InputError, StartupError) as exc:
        raise BadInput(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot start: {exc}") from None


def config_keys() -> list[str]:
    """The keys a ``--config`` file may hold: a section per component, or a setting's name alone."""
    return [f"{f.section}.{f.name}" for f in ServeConfig.settings()] + ["log_level"]


def _document_config_keys(command: click.Command) -> None:
    """``--config``'s help lists the real keys, generated from the declarations (no list kept by hand)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name == "config":
            param.help = (
                "A YAML file of settings, a section per component (or a setting's name alone); its keys: "
                + ", ".join(config_keys())
                + "."
            )


_document_config_keys(serve)


def _serve(config: ServeConfig) -> None:
    try:
        processor = Processor(config)
    except InputError as exc:
        raise BadInput(str(exc)) from None
    except StartupError as exc:  # names the flag, the file or the address
        raise BadInput(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot start: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    processor.start()
    receivers, downstream = config.receivers, config.exporter.downstream
    click.echo(
        f"otel-agent-eval serve: OTLP/gRPC {receivers.grpc_endpoint or 'off'}, "
        f"OTLP/HTTP {receivers.http_endpoint or 'off'}, metrics {config.telemetry.metrics_endpoint or 'off'}, "
        + (f"downstream {display(downstream)}" if downstream else f"store {config.queue.data_dir}"),
        err=True,
    )
    stop.wait()
    click.echo("otel-agent-eval serve: stopping (draining)", err=True)
    processor.stop()


def _open_store(data_dir: Path) -> Store:
    path = data_dir / "agent-eval.sqlite"
    if not path.exists():
        raise BadInput(f"{path}: no trace store here (start `otel-agent-eval serve --data-dir {data_dir}`)")
    return Store(path)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(DEFAULT_DATA_DIR),
    show_default=True,
    help="The processor's data directory.",
)


@click.command()
@data_dir_option
@click.option("--limit", "-n", default=20, show_default=True, help="How many traces.")
@click.option("--outcome", type=click.Choice(["success", "recovered", "terminal"]), default=None)
def traces(data_dir: Path, limit: int, outcome: str | None) -> None:
    """List recently evaluated traces from the embedded store: outcome, score and failure modes."""
    store = _open_store(data_dir)
    rows = store.recent_traces(limit, outcome)
    store.close()
    if not rows:
        click.echo("no traces yet", err=True)
        return
    click.echo(
        f"{'trace id':32}  {'evaluated (UTC)':19}  {'agent':16}  {'outcome':9}  {'score':>5}  {'why':44}  failure modes"
    )
    for row in rows:
        when = datetime.fromtimestamp(row.evaluated, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        score = f"{row.failure_score:.2f}" if row.failure_score is not None else "-"
        why = top_reason(row.results)
        click.echo(
            terminal_safe(
                f"{row.trace_id:32}  {when:19}  {(row.agent or '-')[:16]:16}  {row.outcome or 'no run':9}  {score:>5}  "
                f"{why:44}  " + (", ".join(row.modes) or "-")
            )
        )


def _rank(finding: dict[str, Any]) -> tuple[bool, float, int]:
    """Terminal before recovered, then the most confident, then the earliest step."""
    return (
        finding.get("outcome") != "terminal",
        -float(finding.get("confidence") or 0.0),
        int(finding.get("step") or 0),
    )


def top_reason(results: list[dict[str, Any]]) -> str:
    """Why the score is what it is, in a few words: the top failure (mode, step, evaluator), or, without one,
    the top suspicion (marked ``suspicion``); ``-`` when there is neither.

    >>> top_reason([{"failures": [], "suspicions": [{"mode": "m", "category": "c", "step": 2, "evaluator": "e",
    ...                                                "outcome": "terminal", "confidence": 0.4}]}])
    'suspicion c.m @2 (e)'
    """
    failures = [f for r in results for f in r.get("failures", ()) if f.get("category") != "evaluator"]
    failures = failures or [f for r in results for f in r.get("failures", ())]
    suspicions = [f for r in results for f in r.get("suspicions", ())]
    chosen = failures or suspicions
    if not chosen:
        return "-"
    top = min(chosen, key=_rank)
    what = f"{top.get('category')}.{top.get('mode')} @{top.get('step')} ({top.get('evaluator') or '?'})"
    return f"{top.get('outcome')} {what}" if failures else f"suspicion {what}"


@click.command()
@click.argument("trace_id")
@data_dir_option
@click.option("--width", default=100, show_default=True, help="Characters of content shown per line.")
def show(trace_id: str, data_dir: Path, width: int) -> None:
    """Print one trace from the embedded store as a span tree, with its failure labels and critiques."""
    store = _open_store(data_dir)
    row = store.get_trace(trace_id)
    store.close()
    if row is None:
        raise BadInput(f"no trace {trace_id} in {data_dir}")
    records = list(records_from_request(ExportTraceServiceRequest.FromString(row.spans)))
    marks: dict[str, list[str]] = {}
    for result in row.results:
        for f in result["failures"]:
            if f.get("span_id"):
                marks.setdefault(f["span_id"], []).append(f"[{f['outcome']} {f['mode']}]")
    if records:
        click.echo(terminal_safe(render_trace(records, width=width, steps=step_numbers(records), marks=marks)))
    else:  # serve had a downstream: the store keeps the results, the trace store the spans
        click.echo(f"trace {row.trace_id}: its spans are in the downstream's trace store; its evaluation:")
    for result in row.results:
        click.echo(f"\noutcome {result['outcome']}, failure score {result['failure_score']:.2f}")
        for f in result["failures"]:
            click.echo(terminal_safe(f"  [{f['step']}] {f['outcome']} {f['category']}.{f['mode']}: {f['critique']}"))
