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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..errors import InputError
from ..ingest.span_record import records_from_request
from ..output import BadInput
from ..tree import render_trace, step_numbers
from .security import StartupError
from .server import Processor, ServeConfig
from .store import Store

DEFAULT_DATA_DIR = ".agent-eval"


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--config FILE``: its keys become the defaults of the other options (flags and env vars still win)."""
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
    known = config_keys(ctx.command)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BadInput(f"{value}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    ctx.default_map = {**(ctx.default_map or {}), **data}
    return value


def _downstream_default() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


@click.command(context_settings={"auto_envvar_prefix": "AGENT_EVAL", "show_default": True})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="A YAML file of settings (keys: listed below the options).",
)
@click.option("--grpc-endpoint", default="127.0.0.1:4317", help="OTLP/gRPC receiver address ('' to turn off).")
@click.option("--http-endpoint", default="127.0.0.1:4318", help="OTLP/HTTP receiver address ('' to turn off).")
@click.option(
    "--metrics-endpoint",
    default="127.0.0.1:9464",
    help="Address of /metrics (Prometheus), /healthz and /readyz ('' to turn off).",
)
@click.option(
    "--downstream",
    default=None,
    help="Where labelled traces go: grpc://HOST:PORT or http(s)://HOST:PORT[/v1/traces]. Default: "
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; without any, the embedded "
    "store in --data-dir.",
)
@click.option(
    "--downstream-header",
    "downstream_headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="A header sent to the downstream (e.g. authorization=Bearer ...); repeatable.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(DEFAULT_DATA_DIR),
    help="Where the on-disk inbox, outbox and embedded trace store live.",
)
@click.option(
    "--quiet-period",
    type=float,
    default=2.0,
    help="Seconds without a new span, after the root span ended, before a trace is evaluated.",
)
@click.option(
    "--loop-quiet-period",
    type=float,
    default=10.0,
    help="The quiet period of a trace whose root is the first model call of an agent loop followed by an "
    "auto-instrumentor (it ends long before the loop): longer than a pause between two model calls.",
)
@click.option(
    "--max-wait",
    type=float,
    default=30.0,
    help="Seconds after its first span when a trace is evaluated even without its root (not a followed loop).",
)
@click.option(
    "--max-traces",
    type=int,
    default=10_000,
    help="Traces buffered at most; beyond, the oldest is evaluated early and forwarded (counted).",
)
@click.option(
    "--max-spans-per-trace",
    type=int,
    default=5_000,
    help="Spans buffered per trace at most; a trace reaching it is evaluated at once (counted).",
)
@click.option(
    "--early-evaluation-interval",
    type=float,
    default=5.0,
    help="Seconds between evaluations of a trace that is still open (a long conversation): its failures are "
    "counted in agent_eval_early_failures_total as they happen (0 turns it off).",
)
@click.option(
    "--max-spans-in-flight",
    type=int,
    default=200_000,
    help="Spans waiting for evaluation at most; beyond, requests are refused, retryable (gRPC UNAVAILABLE, "
    "HTTP 503): memory stays bounded under overload and nothing is dropped.",
)
@click.option(
    "--evaluation-timeout",
    type=float,
    default=5.0,
    help="Seconds an evaluation may take; after it the trace goes on unlabelled, marked.",
)
@click.option("--workers", type=int, default=2, help="Evaluation threads.")
@click.option("--max-payload-bytes", type=int, default=16 * 1024 * 1024, help="Largest request accepted.")
@click.option(
    "--bearer-token",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on every gRPC method (OTLP Export and the evaluation service) "
    "and on POST /v1/traces; /metrics, /healthz and /readyz stay open.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate for the gRPC and HTTP receivers (with --tls-key): TLS on both, HTTPS only on HTTP.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PEM private key.")
@click.option(
    "--service-max-concurrency",
    type=click.IntRange(min=1),
    default=4,
    help="Evaluation service calls (and open sessions) at once; beyond, RESOURCE_EXHAUSTED at once. They have "
    "gRPC threads of their own: OTLP ingestion is never starved by them.",
)
@click.option(
    "--service-max-messages",
    type=click.IntRange(min=1),
    default=5_000,
    help="Messages of history in one evaluation service request at most (RESOURCE_EXHAUSTED beyond).",
)
@click.option(
    "--service-max-request-bytes",
    type=click.IntRange(min=1),
    default=4 * 1024 * 1024,
    help="Bytes of one evaluation service request at most (RESOURCE_EXHAUSTED beyond).",
)
@click.option(
    "--policy-pack",
    "policy_packs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A policy pack (YAML) besides the built-in ones; repeatable.",
)
@click.option(
    "--pack",
    default="auto",
    help="The policy pack for every run, by name ('auto': chosen per run from its policy text; 'generic': "
    "as for a domain no pack knows).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("builtin"),
    help="A calibration file (`otel-agent-eval calibrate`) for failure_score (and, fitted with --confidences "
    "measured, the findings' confidences); 'builtin': the one shipped; 'none': the detectors' own, noisy-or.",
)
@click.option(
    "--http-read-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    help="Seconds a client has to send a whole HTTP request, from its first byte; also how long an idle "
    "connection stays open.",
)
@click.option(
    "--max-agent-labels",
    type=click.IntRange(min=0),
    default=50,
    help="At most this many agent names as the metrics' agent label; later ones count as 'other'.",
)
@click.option(
    "--agent-label",
    "agent_labels",
    multiple=True,
    help="An agent name to keep as a metric label (repeatable); when given, every other name is 'other'.",
)
@click.option(
    "--drain-seconds",
    type=float,
    default=10.0,
    help="On SIGTERM, how long to keep delivering the outbox (the rest stays on disk for the next start).",
)
@click.option(
    "--export-max-bytes",
    type=click.IntRange(min=1),
    default=4_000_000,
    help="Bytes of one export to the downstream at most (below gRPC's default 4 MiB receive limit); a request "
    "larger than that is sent alone. Refused as too large (RESOURCE_EXHAUSTED, 413), a batch is split in halves.",
)
@click.option(
    "--export-max-requests",
    type=click.IntRange(min=1),
    default=64,
    help="Outbox requests (one trace each) in one export at most.",
)
@click.option(
    "--export-min-backoff",
    type=click.FloatRange(min=0, min_open=True),
    default=0.2,
    help="Seconds before the first retry of a transient refusal (UNAVAILABLE, 503, no connection); each retry "
    "doubles it, up to --export-max-backoff, with full jitter.",
)
@click.option(
    "--export-max-backoff",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    help="Seconds between retries at most (also caps a Retry-After / RetryInfo delay the downstream asks for).",
)
@click.option(
    "--evaluate/--no-evaluate",
    default=True,
    help="--no-evaluate: forward traces unchanged (a durable relay; the throughput benchmark's baseline).",
)
@click.option(
    "--metrics-otlp-endpoint",
    default=None,
    help="Also push the processor's metrics over OTLP/gRPC to HOST:PORT (every 15 s).",
)
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
def serve(log_level: str, downstream_headers: tuple[str, ...], **settings: Any) -> None:
    """Receive OTLP traces, evaluate each agent run, label its spans, and hand them on.

    Spans are written to an on-disk inbox before they are acknowledged, and labelled traces to an on-disk
    outbox until the downstream accepts them: an outage, a crash or a restart loses nothing. SIGTERM (or
    Ctrl-C) stops receiving, evaluates what is buffered and drains the outbox.
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    headers = {}
    for item in downstream_headers:
        name, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"--downstream-header {item!r}: expected NAME=VALUE")
        headers[name.strip()] = value.strip()
    settings["downstream"] = settings["downstream"] or _downstream_default()
    for key in ("grpc_endpoint", "http_endpoint", "metrics_endpoint"):
        settings[key] = settings[key] or None
    config = ServeConfig(downstream_headers=headers, **settings)
    umask = os.umask(0o077)  # what serve writes (its data directory holds whole conversations) is private
    try:
        _serve(config)
    finally:
        os.umask(umask)


def config_keys(command: click.Command) -> list[str]:
    """The keys a ``--config`` file of ``command`` may hold: its options' names (as ``_load_config`` takes them)."""
    return sorted(p.name for p in command.params if p.name and p.name != "config")


def _document_config_keys(command: click.Command) -> None:
    """``--config``'s help lists the real keys, generated from the options (no list to keep in step by hand)."""
    for param in command.params:
        if isinstance(param, click.Option) and param.name == "config":
            param.help = "A YAML file of settings; its keys: " + ", ".join(config_keys(command)) + "."


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
    click.echo(
        f"otel-agent-eval serve: OTLP/gRPC {config.grpc_endpoint or 'off'}, OTLP/HTTP {config.http_endpoint or 'off'}, "
        f"metrics {config.metrics_endpoint or 'off'}, "
        + (f"downstream {config.downstream}" if config.downstream else f"store {config.data_dir}"),
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
            f"{row.trace_id:32}  {when:19}  {(row.agent or '-')[:16]:16}  {row.outcome or 'no run':9}  {score:>5}  "
            f"{why:44}  " + (", ".join(row.modes) or "-")
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
        click.echo(render_trace(records, width=width, steps=step_numbers(records), marks=marks))
    for result in row.results:
        click.echo(f"\noutcome {result['outcome']}, failure score {result['failure_score']:.2f}")
        for f in result["failures"]:
            click.echo(f"  [{f['step']}] {f['outcome']} {f['category']}.{f['mode']}: {f['critique']}")
