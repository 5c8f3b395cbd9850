"""The ``otel-agent-eval`` command line.

Exit status: 0 on success (runs that could not be read are reported on stderr and skipped), 2 on bad input
(a file that cannot be read, a file none of whose runs can be read, any bad run under ``--strict``, an
output path that cannot be written), 1 when spans could not be delivered.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import click
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from . import __version__
from .calibrate_cli import calibrate, calibration_option, load_calibration
from .cli_options import pack_options, strict_option
from .errors import InputError
from .ingest.files import file_format, read_runs
from .ingest.otlp import read_otlp_json
from .ingest.recorded import FORMATS, RECORDED_FORMATS, Format, load_tools
from .ingest.span_record import SpanRecord, records_from_request
from .instrument.recorded import RunSpanWriter
from .model import AgentRun, ToolDefinition
from .otlp_json import request_to_json
from .output import BadInput, result_record, write_atomically
from .processor.command import component_options, serve, show, traces
from .processor.deadletter_cli import deadletter
from .processor.judging import JudgeConfig
from .report.command import report
from .tree import render_trace

if TYPE_CHECKING:
    from .evaluate import Engine
    from .evaluate.judge import Cascade, JudgeEvent

judge_options = component_options(JudgeConfig)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otel-agent-eval")
def main() -> None:
    """Find, explain and correct the failures of LLM agents, inside OpenTelemetry."""


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(RECORDED_FORMATS),
    default=None,
    help="Input format; detected from the content when omitted.",
)
tools_option = click.option(
    "--tools",
    "tools_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Tool definitions (a JSON list of OpenAI functions) for runs that carry none.",
)
reference_option = click.option(
    "--with-reference",
    is_flag=True,
    help="Keep a benchmark's answers (reward, expected actions and outputs) on the root span as "
    "agent_eval.reference.*, for `evaluate --reference` on the traces. Off by default: answers do not belong "
    "in a production pipeline.",
)


def output_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--output/-o PATH`` (required), with ``--out`` as a hidden alias: every command that writes a file names it
    the same way (``import`` had only ``--out``, ``evaluate`` only ``--output``). :func:`output_path` reads them."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--out", "out_alias", default=None, hidden=True, help="The old name of --output.")(f)
        return click.option("--output", "-o", "output", default=None, metavar="PATH", help=help_text + " Required.")(f)

    return decorate


def output_path(output: str | None, out_alias: str | None) -> str:
    """The path of ``--output`` (or of its alias ``--out``); a usage error (exit 2) without one, or with two."""
    if output is not None and out_alias is not None and output != out_alias:
        raise click.UsageError("--output and --out (its old name) give two different files")
    path = output if output is not None else out_alias
    if path is None:
        raise click.UsageError("Missing option '--output' / '-o'.")
    return path


class RunLoader:
    """Reads every run in the files, reporting (or, under --strict, failing on) runs that cannot be read."""

    def __init__(self, fmt: Format | None = None, tools_file: str | None = None, strict: bool = False) -> None:
        self.fmt = fmt
        self.tools_file = tools_file
        self.strict = strict
        self.skipped = 0

    def runs(self, files: Sequence[str]) -> Iterator[AgentRun]:
        try:
            tools: tuple[ToolDefinition, ...] = load_tools(self.tools_file) if self.tools_file else ()
            for file in files:
                read = failed = 0
                for item in read_runs(file, format=self.fmt, tools=tools):
                    if isinstance(item, InputError):
                        if self.strict:
                            raise item
                        self.skipped += 1
                        failed += 1
                        click.echo(f"skipped: {item}", err=True)
                        continue
                    read += 1
                    yield item
                if failed and not read:
                    # Every run failed: the file is not what it was taken for (a wrong --format, say).
                    raise InputError(f"no run could be read ({failed} errors above); is --format right?", file=file)
        except InputError as exc:
            raise BadInput(str(exc)) from None

    def summary(self, verb: str, runs: int, where: str) -> None:
        skipped = f", skipped {self.skipped} that could not be read (listed above)" if self.skipped else ""
        click.echo(f"{verb} {runs} run{'s' if runs != 1 else ''} -> {where}{skipped}", err=True)


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_options("Output file of OTLP JSON traces, one run per line ('-': stdout).")
@format_option
@tools_option
@strict_option
@reference_option
def import_cmd(
    files: tuple[str, ...],
    output: str | None,
    out_alias: str | None,
    fmt: Format | None,
    tools_file: str | None,
    strict: bool,
    with_reference: bool,
) -> None:
    """Import recorded runs (τ-bench, τ², OpenAI messages) as OTLP JSON traces.

    Each run becomes one trace: an invoke_agent span and one span per message, in order, with the
    message's position in its run as agent_eval.step.index.
    """
    out = output_path(output, out_alias)
    writer = RunSpanWriter(include_reference=with_reference)
    loader = RunLoader(fmt, tools_file, strict)
    lines = (request_to_json(encode_spans(writer.spans(run))) for run in loader.runs(files))
    runs = write_atomically(out, lines)
    loader.summary("imported", runs, out)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--endpoint", required=True, help="OTLP/gRPC endpoint, HOST:PORT.")
@click.option("--insecure/--tls", default=True, show_default=True, help="Plaintext gRPC, or TLS.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to keep retrying an export.")
@format_option
@tools_option
@reference_option
@strict_option
@click.option(
    "--keep-timestamps",
    is_flag=True,
    help="Send the recorded timestamps as they are. By default each run is moved so that it ends now, every "
    "duration and gap kept, so a trace store's default search window (the last hour, say) finds it.",
)
def replay(
    files: tuple[str, ...],
    endpoint: str,
    insecure: bool,
    timeout: float,
    fmt: Format | None,
    tools_file: str | None,
    with_reference: bool,
    strict: bool,
    keep_timestamps: bool,
) -> None:
    """Send recorded runs to an OTLP/gRPC endpoint, one trace per run.

    Each run is moved in time so that it ends when it is sent, keeping every duration and gap between its
    steps (--keep-timestamps sends the recorded times; `import` always keeps them).

    Every file is read first, so a bad one stops the replay before anything is sent. The first run that
    cannot be delivered (after the exporter's retries) stops it: the rest would not get through either.
    """
    import time

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from .instrument.recorded import ending_at

    _check_endpoint(endpoint)
    loader = RunLoader(fmt, tools_file, strict)
    runs = list(loader.runs(files))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=insecure, timeout=timeout)
    writer = RunSpanWriter(include_reference=with_reference)
    sent = 0
    try:
        for run in runs:
            if not keep_timestamps:
                run = ending_at(run, time.time_ns())
            spans: Sequence[ReadableSpan] = writer.spans(run)
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                where = f"{run.source.file}: run {run.source.index}" if run.source else f"run {sent}"
                raise click.ClickException(
                    f"{endpoint} did not accept {where}; {sent} of {len(runs)} runs were sent, the rest were not"
                )
            sent += 1
    finally:
        exporter.shutdown()
    loader.summary("sent", sent, endpoint)


def _check_endpoint(endpoint: str) -> None:
    """An OTLP/gRPC address to send to: ``HOST:PORT`` (or ``http(s)://HOST:PORT``); anything else exits 2 before
    a file is read, rather than after the exporter's retries."""
    from urllib.parse import urlparse

    url = urlparse(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    try:
        port = url.port
    except ValueError:
        port = None
    if not url.hostname or not port:
        raise BadInput(f"--endpoint {endpoint!r}: expected HOST:PORT (or http(s)://HOST:PORT), a port in 1..65535")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@output_options("Where to write the results, one JSON object per run ('-': stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Input format; detected when omitted.")
@tools_option
@click.option(
    "--reference",
    is_flag=True,
    help="Reference-based evaluation: compare each run with the expected actions and outputs it carries "
    "(τ files). Without it, evaluation reads only what a deployed agent's spans hold.",
)
@pack_options
@calibration_option
@strict_option
@judge_options
def evaluate(
    inputs: tuple[str, ...],
    output: str | None,
    out_alias: str | None,
    fmt: Format | None,
    tools_file: str | None,
    reference: bool,
    packs: tuple[str, ...],
    pack: str,
    calibration_file: str | None,
    strict: bool,
    **judge_settings: Any,
) -> None:
    """Evaluate agent runs and write one result per run: outcome, failure score and failures.

    INPUTS are recorded runs (τ-bench, τ², OpenAI messages) or OTLP JSON trace files. With --judge, an
    evaluation model (any OpenAI-compatible endpoint; its key in AGENT_EVAL_JUDGE_API_KEY) judges the runs
    the detectors leave in doubt, or a sample, or all.
    """
    from .evaluate import Engine, PackLibrary
    from .evaluate.reference import ReferenceEvaluator

    output = output_path(output, out_alias)

    try:
        library = PackLibrary.with_builtins(packs, force=pack)
    except InputError as exc:
        raise BadInput(str(exc)) from None
    if reference and calibration_file not in (None, "builtin", "none"):
        raise BadInput("--calibration is for reference-free evaluation; --reference says what the benchmark says")
    calibration = load_calibration(calibration_file)
    engine = (
        Engine([ReferenceEvaluator()], packs=library) if reference else Engine(packs=library, calibration=calibration)
    )
    judged: Counter[str] = Counter()
    cascade = _cascade(judge_settings, engine, lambda event: judged.update([event.kind]))
    loader = RunLoader(fmt, tools_file, strict)
    runs = list(loader.runs(inputs))
    if reference:
        missing = [r for r in runs if r.reference is None]
        if missing and len(missing) == len(runs):
            raise BadInput("--reference: no run carries expected actions (reward, info.task or evaluation_criteria)")
        for run in missing:
            src = run.source
            click.echo(f"no reference: {src.file if src else '?'}: run {src.index if src else '?'}", err=True)

    def lines() -> Iterator[str]:
        show = sys.stderr.isatty() and len(runs) > 20
        with click.progressbar(runs, label="evaluating", file=sys.stderr) if show else _plain(runs) as items:
            for run in items:
                evaluation = cascade.evaluate(run) if cascade is not None else engine.evaluate(run)
                yield json.dumps(result_record(evaluation), ensure_ascii=False)

    written = write_atomically(output, lines())
    loader.summary("evaluated", written, output)
    if cascade is not None:
        # Offline, the budget refuses runs as fast as the detectors go: say how many, never silently.
        click.echo(
            f"judge: {judged['call']} calls, {judged['cache_hit']} answered from the cache, {judged['error']} "
            f"without an answer, {judged['budget_refused']} runs not judged (the budget per minute was spent)",
            err=True,
        )


def _cascade(settings: dict[str, Any], engine: Engine, on_event: Callable[[JudgeEvent], None]) -> Cascade | None:
    """The judge's cascade from ``--judge*`` options (``None``: off); a bad setting exits 2, naming it."""
    from .processor.judging import cascade_for
    from .processor.security import StartupError

    try:
        return cascade_for(JudgeConfig(**settings), engine, on_event)
    except StartupError as exc:
        raise BadInput(str(exc)) from None


@contextmanager
def _plain(items: Sequence[AgentRun]) -> Iterator[Sequence[AgentRun]]:
    yield items


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Input format; detected when omitted.")
@click.option("--width", default=100, show_default=True, help="Characters of content shown per line.")
def tree(files: tuple[str, ...], fmt: Format | None, width: int) -> None:
    """Print traces as span trees: OTLP JSON trace files, or recorded runs (imported on the fly)."""
    out: TextIO = sys.stdout
    try:
        for file in files:
            kind = fmt or file_format(file)
            if kind == "otlp-json":
                # A trace may be spread over several export requests (lines): group the whole file.
                records = [r for request in read_otlp_json(file) for r in records_from_request(request)]
                _print_traces(records, out, width)
            else:
                writer = RunSpanWriter()
                for run in RunLoader(kind).runs([file]):
                    _print_traces([SpanRecord.from_readable(s) for s in writer.spans(run)], out, width)
    except InputError as exc:
        raise BadInput(str(exc)) from None


def _print_traces(records: list[SpanRecord], out: TextIO, width: int) -> None:
    by_trace: dict[str, list[SpanRecord]] = {}
    for record in records:
        by_trace.setdefault(record.trace_id, []).append(record)
    for spans in by_trace.values():
        out.write(render_trace(spans, width=width) + "\n")


main.add_command(report)
main.add_command(calibrate)
main.add_command(serve)
main.add_command(traces)
main.add_command(show)
main.add_command(deadletter)


if __name__ == "__main__":  # pragma: no cover
    main()
