"""Throughput, added latency and memory of ``otel-agent-eval serve``, with evaluation and as a pass-through, beside
the project's OpenTelemetry Collector as a pass-through and the load generator's own ceiling.

Run from the repository root::

    .venv/bin/python bench/processor.py                 # 2 rounds, about 6 minutes
    .venv/bin/python bench/processor.py --quick         # smoke run: 1 round of short phases
    .venv/bin/python bench/processor.py --soak 600      # also 10 minutes of load for the memory slope
    .venv/bin/python bench/processor.py --variants pass-through,evaluate   # without the Collector

The goals (issue 11): the pass-through at most 20 µs of CPU a span (at least 0.5x the Collector's spans/s in
the same run); with evaluation at most 50 µs a span (at least 20,000 spans/s per core) and at least 0.5x the
pass-through; p99 added latency at the paced load at most 50 ms beyond the quiet period; peak RSS at most
250 MB at saturation, and flat over a 10-minute load. Every figure beside the one it is compared with: the
project's Collector build doing a plain pass-through, measured in the same run, so every ratio is taken side by side.

**Variants.** Three processes under test, each in turn in the same place:

* ``evaluate``: the real command, ``otel-agent-eval serve``;
* ``pass-through``: the same with ``--no-evaluate`` (same inbox, assembly, outbox and export);
* ``collector``: the project's OpenTelemetry Collector (``scripts/build-collector.sh``: the binary it prints,
  built if need be; ``--collector PATH`` for another) with ``bench/collector-passthrough.yaml``: OTLP/gRPC
  receiver -> batch -> ``otlp_grpc`` exporter (sending queue and retries on, no compression, as serve sends).
  When it can be neither found nor built the benchmark says so and runs the other two.

And the *ceiling*: the load sending straight to a sink that only acknowledges (``sink_main``, a process pinned
where the processor runs), so it is known whether the load could have gone faster than a variant did.

**Processes.** The process under test is pinned to one core with ``taskset -c 0`` (serve's on-disk inbox and
outbox in a fresh temporary directory per phase; the Collector's ports fresh too). The load is a separate
process pinned to the other core: it reads OTLP requests built once from the recorded runs in
``../shared/data`` (each run written as spans by ``RunSpanWriter``, encoded by the SDK's ``encode_spans``: one
trace per request, about 30 spans and 48 KB a trace), gives every send fresh random trace ids (so every trace
is new to the processor) and sends them with a few concurrent OTLP/gRPC clients (``TraceService/Export``, the
bytes as they are: no client-side protobuf work). The downstream is an OTLP/gRPC ``TraceService`` in this
process (pinned to the load's core too): it counts the spans of every trace and notes when they arrived.

**Phases.** Each round runs, for every variant, in a shuffled order:

* *throughput* (and the ceiling): senders as fast as the processor accepts, but with at most ``--window``
  spans sent and not yet delivered downstream (otherwise receiving, which never waits on evaluation, runs
  ahead of it and the backlog, not the processor, is measured; ``--window 0`` turns that off). Rates are taken
  over the steady part (after a warm-up of a fifth of the phase, at least the quiet period + 1 s): spans
  acknowledged to the senders per second (*received*) and spans arriving downstream per second (*delivered*);
* *latency*: the same load paced at a fixed rate that every variant sustains (by default half the throughput
  measured with evaluation in the first round). Added latency of a trace: from the moment its request was
  sent to the moment the downstream received its last span, minus, for serve, the quiet period (the time the
  processor is told to wait for late spans; the Collector has none: its batch timeout stays in its figure).
  At saturation latency is mostly queueing, so it is given for the paced load; the throughput phase's figures
  are printed too, for what they are.

After a phase's load stops, the benchmark waits until the downstream has every span (each trace complete,
none twice), then stops the processor with SIGTERM. The processor's RSS and CPU time are sampled from
``/proc`` every half second; peak RSS is ``VmHWM``. CPU per span is the processor's CPU time (all threads)
over the steady part divided by the spans delivered in it: unlike spans/s it does not depend on whether the
load could keep the processor busy. The busy share of each core is shown, since the machine is shared.
``--soak SECONDS`` then runs the throughput load with evaluation for that long and fits the slope of RSS over
its second half ("flat": growth over the second half under 5% of the RSS).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
RECORD = struct.Struct("<16sddI")  # trace id, send time, ack time, spans
GOAL_SPANS_PER_S = 20_000
GOAL_RATIO = 0.5  # with evaluation ÷ pass-through, and pass-through ÷ the Collector
GOAL_PASS_US = 20.0  # CPU µs a span, pass-through
GOAL_EVAL_US = 50.0  # CPU µs a span, with evaluation
GOAL_P99_MS = 50.0
GOAL_RSS_MB = 250.0
FLAT_GROWTH = 0.05
MAX_MESSAGE = 256 * 1024 * 1024
COLLECTOR_DEFAULT_MAX = 4 * 1024 * 1024  # an OpenTelemetry Collector's OTLP receiver refuses larger messages
FILES = (
    ("tau-bench/airline-gpt-4o-tasks-00-24.json", "tau-bench/airline-tools.json"),
    ("tau2/retail-gpt-4.1.json", "tau-bench/retail-tools.json"),
    ("tau2/retail-gpt-4.1-finetuned.json", "tau-bench/retail-tools.json"),
)
VARIANTS = ("collector", "pass-through", "evaluate")
SERVE_VARIANTS = ("pass-through", "evaluate")
CEILING = "ceiling"
"""Not a variant: the load sending straight to a sink that only acknowledges (throughput phases only)."""
COLLECTOR_CONFIG = REPO / "bench" / "collector-passthrough.yaml"
BUILD_COLLECTOR = REPO / "scripts" / "build-collector.sh"
LOAD_BOUND_CPU = 0.85
"""A processor busy less than this share of its core was held back (by the load, the window or the machine's
other processes): its spans/s is then not its capacity, and the summary says so with the facts of the phase."""


# --- requests ----------------------------------------------------------------------------------------------


@dataclass
class Template:
    payload: bytes
    """A serialized ExportTraceServiceRequest."""
    traces: list[tuple[bytes, int]]
    """Its traces: the trace id as recorded (replaced at each send), and the trace's span count."""

    @property
    def spans(self) -> int:
        return sum(n for _, n in self.traces)


def build_templates(data: Path, traces_per_request: int, seed: int) -> list[Template]:
    """One request per recorded run (or ``traces_per_request`` runs per request), built once."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from otel_agent_eval.ingest.recorded import load_runs, load_tools
    from otel_agent_eval.instrument.recorded import RunSpanWriter
    from otel_agent_eval.model import AgentRun

    writer = RunSpanWriter(include_reference=False)  # as a deployed agent's spans: no benchmark answers
    singles: list[Template] = []
    for name, tools in FILES:
        for run in load_runs(data / name, tools=load_tools(data / tools)):
            if not isinstance(run, AgentRun):
                continue
            spans = writer.spans(run)
            payload = encode_spans(spans).SerializeToString()
            trace_id = spans[0].context.trace_id.to_bytes(16, "big")
            if payload.count(trace_id) != len(spans):  # the id must occur only as the spans' trace_id
                raise SystemExit(f"{name}: trace id of run {run.trace_id} occurs elsewhere in its request")
            singles.append(Template(payload, [(trace_id, len(spans))]))
    writer.shutdown()
    if not singles:
        raise SystemExit(f"no runs found in {data}")
    random.Random(seed).shuffle(singles)
    if traces_per_request <= 1:
        return singles
    out = []
    for i in range(0, len(singles) - traces_per_request + 1, traces_per_request):
        group = singles[i : i + traces_per_request]
        # Serialized requests concatenated are one request with all their spans (repeated fields merge).
        out.append(Template(b"".join(t.payload for t in group), [t.traces[0] for t in group]))
    return out


# --- the load: a separate process --------------------------------------------------------------------------


@dataclass
class LoadConfig:
    target: str
    templates: str
    out: str
    core: int | None
    senders: int
    duration: float
    max_spans: int
    window: int
    rate: float
    """Spans per second, paced; 0: as fast as accepted (within the window)."""
    seed: int


def load_main(cfg: LoadConfig, delivered: Any) -> None:
    """Send until the duration (or span count) is reached; write one record per accepted trace to ``cfg.out``."""
    if cfg.core is not None:
        os.sched_setaffinity(0, {cfg.core})
    templates: list[Template] = pickle.loads(Path(cfg.templates).read_bytes())
    mean_spans = statistics.fmean(t.spans for t in templates)
    interval = mean_spans / cfg.rate if cfg.rate > 0 else 0.0
    lock = threading.Lock()
    state = {"sent": 0, "slot": 0, "errors": 0}
    records: list[bytes] = []
    start = time.monotonic()
    end = start + cfg.duration

    def sender(index: int) -> None:
        channel = grpc.insecure_channel(
            cfg.target,
            options=[("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)],
        )
        export = channel.unary_unary(METHOD)  # no serializer: the request's bytes as built, the response's raw
        rng = random.Random(cfg.seed * 1000 + index)
        k = index
        try:
            while True:
                now = time.monotonic()
                if now >= end or state["sent"] >= cfg.max_spans:
                    return
                template = templates[k % len(templates)]
                if interval:
                    with lock:
                        slot = state["slot"]
                        state["slot"] += 1
                    delay = start + slot * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                elif cfg.window:
                    while state["sent"] - delivered.value > cfg.window and time.monotonic() < end:
                        time.sleep(0.001)
                if time.monotonic() >= end:
                    return
                ids = [rng.randbytes(16) for _ in template.traces]
                payload = template.payload
                for (old, _), new in zip(template.traces, ids, strict=True):
                    payload = payload.replace(old, new)
                with lock:
                    state["sent"] += template.spans
                sent_at = time.monotonic()
                try:
                    export(payload, timeout=60)
                except grpc.RpcError:
                    with lock:
                        state["sent"] -= template.spans
                        state["errors"] += 1
                    time.sleep(0.01)
                    continue
                acked_at = time.monotonic()
                k += cfg.senders
                with lock:
                    records.extend(
                        RECORD.pack(new, sent_at, acked_at, n) for new, (_, n) in zip(ids, template.traces, strict=True)
                    )
        finally:
            channel.close()

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(cfg.senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(cfg.out).write_bytes(struct.pack("<I", state["errors"]) + b"".join(records))


# --- the downstream: in this process -----------------------------------------------------------------------


class Downstream:
    """An OTLP/gRPC trace receiver that counts spans per trace and notes arrival times. With ``ack_only`` (the
    ceiling's sink, ``sink_main``) it answers every request at once and looks at nothing."""

    def __init__(self, delivered: Any, ack_only: bool = False, port: int = 0) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self._parse = ExportTraceServiceRequest.FromString
        self.delivered = delivered  # shared with the load process (its window)
        self.lock = threading.Lock()
        self.traces: dict[bytes, list[float]] = {}  # trace id -> [spans, last arrival]
        self.arrivals: list[tuple[float, int]] = []  # (time, spans) per request
        self.labelled_roots = 0
        self.requests = 0
        self.max_request_bytes = 0
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-downstream"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
        )
        handler = grpc.unary_unary_rpc_method_handler(self._ack if ack_only else self._export)  # raw bytes, both ways
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")

    def _export(self, raw: bytes, context: Any) -> bytes:
        now = time.monotonic()
        counts: dict[bytes, int] = {}
        for rs in self._parse(raw).resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    tid = span.trace_id
                    counts[tid] = counts.get(tid, 0) + 1
        spans = sum(counts.values())
        labelled = raw.count(b"agent_eval.trace.outcome")  # a key written on the root span of an evaluated run
        with self.lock:
            for tid, n in counts.items():
                entry = self.traces.get(tid)
                if entry is None:
                    self.traces[tid] = [n, now]
                else:
                    entry[0] += n
                    entry[1] = now
            self.arrivals.append((now, spans))
            self.labelled_roots += labelled
            self.requests += 1
            self.max_request_bytes = max(self.max_request_bytes, len(raw))
            self.delivered.value += spans
        return b""  # an empty ExportTraceServiceResponse

    @staticmethod
    def _ack(raw: bytes, context: Any) -> bytes:
        return b""

    def delivered_as_acked(self, sent: Sequence[tuple[bytes, float, float, int]]) -> None:
        """For the sink: each trace counts as delivered when its request was acknowledged, as the load saw it."""
        for tid, _sent_at, acked_at, n in sent:
            self.traces[tid] = [n, acked_at]
            self.arrivals.append((acked_at, n))
        self.requests = len({(r[1], r[2]) for r in sent})

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


def sink_main(port: int) -> None:
    """The ceiling's target (``processor.py --sink PORT``, pinned where the processor runs): acknowledges every
    request and does nothing else, until SIGTERM. A process of its own on the processor's core, not a server in
    this one: on the load's core a Python gRPC server costs about as much per request as the load's clients do
    (and the load sends one trace a request), so there it would halve the ceiling it is meant to show."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sink = Downstream(None, ack_only=True, port=port)
    sink.start()
    stop.wait()
    sink.stop()


# --- sampling /proc ----------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int | str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def _core_times() -> dict[str, tuple[int, int]]:
    """Per core: (busy ticks, total ticks)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            v = [int(x) for x in values]
            idle = v[3] + v[4]
            out[name] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


@dataclass
class Sample:
    t: float
    rss_kb: int
    cpu_s: float
    load_cpu_s: float
    self_cpu_s: float
    cores: dict[str, tuple[int, int]]


class Sampler(threading.Thread):
    """Samples ``pid`` (the processor; None for the ceiling, which has none), the load and this process."""

    def __init__(self, pid: int | None, every: float) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.pid, self.every = pid, every
        self.load_pid: int | None = None
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()
        self._load_cpu = math.nan

    def sample(self) -> Sample:
        load_cpu = _cpu_seconds(self.load_pid) if self.load_pid else math.nan
        if not math.isnan(load_cpu):
            self._load_cpu = load_cpu  # after the load process exits: its last reading
        s = Sample(
            time.monotonic(),
            _status_kb(self.pid, "VmRSS") if self.pid else 0,
            _cpu_seconds(self.pid) if self.pid else math.nan,
            self._load_cpu,
            _cpu_seconds("self"),
            _core_times(),
        )
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def at(self, t: float) -> Sample:
        """The sample nearest to ``t``."""
        return min(self.samples, key=lambda s: abs(s.t - t))


# --- one phase ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(given: str | None = None) -> list[str]:
    if given:
        return shlex.split(given)
    script = Path(sys.executable).parent / "otel-agent-eval"
    return [str(script)] if script.exists() else [sys.executable, "-m", "otel_agent_eval.cli"]


@dataclass
class Phase:
    mode: str
    kind: str  # "throughput" | "latency" | "soak"
    round: int
    seconds: float
    steady_seconds: float = 0.0
    spans_sent: int = 0
    traces_sent: int = 0
    send_errors: int = 0
    received_per_s: float = 0.0
    delivered_per_s: float = 0.0
    end_to_end_per_s: float = 0.0
    offered_per_s: float = 0.0
    drain_seconds: float = 0.0
    complete: bool = False
    missing_spans: int = 0
    duplicated_spans: int = 0
    labelled_roots: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_share: float = 0.0
    cpu_us_per_span: float = 0.0
    core_busy: dict[str, float] = field(default_factory=dict)
    others_share: dict[str, float] = field(default_factory=dict)
    """Per core: the busy share not ours (other processes on a shared machine)."""
    load_cpu_share: float = 0.0
    bench_cpu_share: float = 0.0
    peak_rss_mb: float = 0.0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    rss_slope_mb_per_min: float = math.nan
    rss_growth_second_half: float = math.nan
    max_export_bytes: int = 0
    downstream_requests: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    held_seconds: float = 0.0
    """Subtracted from every added latency: serve's quiet period; 0 for the Collector and the ceiling."""


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def scrape(port: int, prefix: str) -> dict[str, float]:
    """A processor's own counters whose names start with ``prefix`` (summed over labels) from /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(prefix):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.endswith("_bucket") or name.endswith("_created"):
            continue
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return out


def _serve_ready(metrics_port: int) -> bool:
    try:
        return bool(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2).status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _listening(port: int) -> bool:
    """The Collector has no readiness endpoint in this build (no health_check extension), but it starts its
    receivers last, after the exporters and processors: once the receiver's port accepts, the pipeline is up."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(ready: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with status {proc.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError("the processor did not get ready in time")


@dataclass
class Target:
    """What the load sends to in a phase: a process under test, or for the ceiling the downstream itself."""

    address: str
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    metrics_prefix: str = ""
    held_seconds: float = 0.0
    """How long the processor is told to hold a finished trace (serve's quiet period): subtracted from latency."""
    ready: Callable[[], bool] | None = None
    """True once the processor takes requests."""


def start_target(args: argparse.Namespace, variant: str, data_dir: Path, downstream_port: int, log: Any) -> Target:
    grpc_port, metrics_port = free_port(), free_port()
    pin = ["taskset", "-c", str(args.processor_core)]
    if variant == CEILING:
        command = [*pin, sys.executable, str(Path(__file__).resolve()), "--sink", str(grpc_port)]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return Target(f"127.0.0.1:{grpc_port}", proc, 0, "", 0.0, lambda: _listening(grpc_port))
    if variant == "collector":
        env = {
            **os.environ,
            "BENCH_RECEIVER_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "BENCH_DOWNSTREAM_ENDPOINT": f"127.0.0.1:{downstream_port}",
            "BENCH_COLLECTOR_METRICS_PORT": str(metrics_port),
        }
        command = [*pin, str(args.collector), "--config", str(args.collector_config)]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        return Target(f"127.0.0.1:{grpc_port}", proc, metrics_port, "otelcol_", 0.0, lambda: _listening(grpc_port))
    command = [
        *pin,
        *serve_command(args.serve_command),
        "serve",
        "--data-dir",
        str(data_dir),
        "--grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--http-endpoint",
        "",
        "--metrics-endpoint",
        f"127.0.0.1:{metrics_port}",
        "--downstream",
        f"grpc://127.0.0.1:{downstream_port}",
        "--quiet-period",
        str(args.quiet_period),
        "--log-level",
        "WARNING",
        *(["--no-evaluate"] if variant == "pass-through" else []),
    ]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    ready = lambda: _serve_ready(metrics_port)  # noqa: E731 - a closure over this phase's port
    return Target(f"127.0.0.1:{grpc_port}", proc, metrics_port, "agent_eval_", args.quiet_period, ready)


def stop_target(target: Target) -> int | None:
    proc = target.proc
    if proc is None:
        return 0
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_phase(args: argparse.Namespace, workdir: Path, templates_path: Path, mode: str, kind: str, rnd: int,
              seconds: float, rate: float) -> Phase:  # fmt: skip
    ctx = mp.get_context("spawn")
    delivered = ctx.Value("q", 0, lock=False)
    downstream = Downstream(delivered)  # idle in the ceiling phase, whose sink is its own process
    downstream.start()
    data_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{kind}-", dir=workdir))
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    phase = Phase(mode, kind, rnd, seconds)
    target: Target | None = None
    sampler: Sampler | None = None
    try:
        target = start_target(args, mode, data_dir, downstream.port, log)
        phase.held_seconds = target.held_seconds
        proc = target.proc
        if proc is not None and target.ready is not None:
            wait_ready(target.ready, proc)
        sampler = Sampler(proc.pid if proc else None, 1.0 if kind == "soak" else 0.5)
        sampler.start()
        out = data_dir.parent / f"{data_dir.name}.load"
        # The sink never counts deliveries, and has no backlog to bound: an acknowledgement is its delivery.
        window = args.window if rate <= 0 and mode != CEILING else 0
        max_spans = args.spans if (args.spans and kind == "throughput") else 2**62
        cfg = LoadConfig(target.address, str(templates_path), str(out), args.load_core, args.senders,
                         seconds if not (args.spans and kind == "throughput") else 3600.0, max_spans, window, rate,
                         args.seed + rnd)  # fmt: skip
        load = ctx.Process(target=load_main, args=(cfg, delivered), name="bench-load")
        load.start()
        sampler.load_pid = load.pid
        load.join()
        if load.exitcode != 0:
            raise RuntimeError(f"the load process failed (exit status {load.exitcode})")
        stopped = time.monotonic()
        raw = out.read_bytes()
        phase.send_errors = struct.unpack_from("<I", raw)[0]
        sent = [RECORD.unpack_from(raw, 4 + i * RECORD.size) for i in range((len(raw) - 4) // RECORD.size)]
        if mode == CEILING:
            downstream.delivered_as_acked(sent)
            delivered.value = sum(r[3] for r in sent)
        phase.traces_sent = len(sent)
        phase.spans_sent = sum(r[3] for r in sent)
        progress, last_count = time.monotonic(), -1
        # Drained, or no progress for a minute.
        while delivered.value < phase.spans_sent and (proc is None or proc.poll() is None):
            if delivered.value != last_count:
                progress, last_count = time.monotonic(), delivered.value
            elif time.monotonic() - progress > 60:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # anything sent twice would show up now
        phase.drain_seconds = time.monotonic() - stopped
        if target.metrics_port:
            phase.metrics = scrape(target.metrics_port, target.metrics_prefix)
        phase.peak_rss_mb = _status_kb(proc.pid, "VmHWM") / 1024 if proc else math.nan
        sampler.stop()
    finally:
        phase.exit_code = stop_target(target) if target else None
        log.close()
        downstream.stop()
        if sampler is not None and sampler.is_alive():
            sampler.stop()
    assert sampler is not None  # started, or the phase has raised
    analyse(phase, args, sent, downstream, sampler, stopped)
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return phase


def analyse(phase: Phase, args: argparse.Namespace, sent: list[tuple[bytes, float, float, int]],
            downstream: Downstream, sampler: Sampler, stopped: float) -> None:  # fmt: skip
    q = args.quiet_period
    first = min(r[1] for r in sent)
    last_send = max(r[1] for r in sent)
    warm = max(q + 1.0, 0.2 * (last_send - first)) if phase.kind != "latency" else min(2.0, 0.2 * (last_send - first))
    lo, hi = first + warm, last_send
    phase.steady_seconds = hi - lo
    expected = {r[0]: r[3] for r in sent}
    missing = duplicated = 0
    latencies, steady_latencies = [], []
    for tid, n in expected.items():
        got = downstream.traces.get(tid)
        count = int(got[0]) if got else 0
        missing += max(0, n - count)
        duplicated += max(0, count - n)
    extra = sum(int(v[0]) for k, v in downstream.traces.items() if k not in expected)
    phase.missing_spans, phase.duplicated_spans = missing, duplicated + extra
    phase.complete = missing == 0 and duplicated + extra == 0
    phase.labelled_roots = downstream.labelled_roots
    phase.max_export_bytes = downstream.max_request_bytes
    phase.downstream_requests = downstream.requests
    for tid, sent_at, _acked, _n in sent:
        got = downstream.traces.get(tid)
        if got is None:
            continue
        added = got[1] - sent_at - phase.held_seconds
        latencies.append(added)
        if lo <= sent_at <= hi:
            steady_latencies.append(added)
    chosen = steady_latencies or latencies
    phase.latency_ms = {
        "p50": 1000 * percentile(chosen, 0.50),
        "p99": 1000 * percentile(chosen, 0.99),
        "max": 1000 * max(chosen, default=math.nan),
        "traces": float(len(chosen)),
    }
    if phase.steady_seconds > 0:
        phase.received_per_s = sum(r[3] for r in sent if lo <= r[2] <= hi) / phase.steady_seconds
        phase.delivered_per_s = sum(n for t, n in downstream.arrivals if lo <= t <= hi) / phase.steady_seconds
        phase.offered_per_s = sum(r[3] for r in sent if lo <= r[1] <= hi) / phase.steady_seconds
    last_arrival = max((t for t, _ in downstream.arrivals), default=first)
    phase.end_to_end_per_s = phase.spans_sent / max(last_arrival - first, 1e-9)
    if sampler.samples:
        a, b = sampler.at(lo), sampler.at(hi)
        wall = max(b.t - a.t, 1e-9)
        phase.cpu_share = (b.cpu_s - a.cpu_s) / wall
        phase.load_cpu_share = (b.load_cpu_s - a.load_cpu_s) / wall
        phase.bench_cpu_share = (b.self_cpu_s - a.self_cpu_s) / wall
        delivered_steady = sum(n for t, n in downstream.arrivals if a.t <= t <= b.t)
        phase.cpu_us_per_span = 1e6 * (b.cpu_s - a.cpu_s) / max(delivered_steady, 1)
        for core in (f"cpu{args.processor_core}", f"cpu{args.load_core}"):
            if core in a.cores and core in b.cores:
                busy = b.cores[core][0] - a.cores[core][0]
                total = b.cores[core][1] - a.cores[core][1]
                phase.core_busy[core] = busy / total if total else math.nan
        ours = {
            f"cpu{args.processor_core}": 0.0 if math.isnan(phase.cpu_share) else phase.cpu_share,  # the ceiling
            f"cpu{args.load_core}": phase.load_cpu_share + phase.bench_cpu_share,
        }
        phase.others_share = {k: max(0.0, v - ours[k]) for k, v in phase.core_busy.items()}
        t0 = sampler.samples[0].t
        phase.rss_mb = [(round(s.t - t0, 1), round(s.rss_kb / 1024, 1)) for s in sampler.samples if s.rss_kb]
        load_samples = [s for s in sampler.samples if s.t <= stopped and s.rss_kb]
        if phase.kind == "soak" and len(load_samples) >= 4:
            half = load_samples[0].t + (load_samples[-1].t - load_samples[0].t) / 2
            second = [(s.t, s.rss_kb / 1024) for s in load_samples if s.t >= half]
            slope = _slope(second)
            phase.rss_slope_mb_per_min = slope * 60
            mean_rss = statistics.fmean(v for _, v in second)
            phase.rss_growth_second_half = slope * (second[-1][0] - second[0][0]) / mean_rss


def _slope(points: Sequence[tuple[float, float]]) -> float:
    if len(points) < 2:
        return math.nan
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else math.nan


# --- where the time goes: the pipeline's steps in process ------------------------------------------------


def breakdown(templates: list[Template], passes: int) -> tuple[dict[str, float], int]:
    """CPU µs per span of each step the processor takes for a trace, timed one by one in this process, on one
    thread, without network or thread hand-offs: the steps of ``Pipeline.receive``, ``Pipeline.process`` /
    ``_evaluate`` and ``OutboxExporter.flush_once``, called the same way. Returns (µs per span by step, spans)."""
    import gc

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otel_agent_eval.evaluate import Engine, PackLibrary
    from otel_agent_eval.ingest.spans import runs_from_records
    from otel_agent_eval.processor.assembly import ResourceSpansBatch, TraceAssembler, encode_request
    from otel_agent_eval.processor.labelling import label_spans
    from otel_agent_eval.processor.store import Store
    from otel_agent_eval.processor.trace_reading import TraceReading

    clock = time.process_time_ns
    engine = Engine(packs=PackLibrary.with_builtins(()))
    parts: dict[str, int] = {}
    spans_total = 0
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as tmp:
        store = Store(Path(tmp) / "agent-eval.sqlite")
        assembler = TraceAssembler(quiet_period=0.0)
        rng = random.Random(1)
        gc.collect()
        for _ in range(passes):
            for template in templates:
                payload = template.payload
                for old, _n in template.traces:
                    payload = payload.replace(old, rng.randbytes(16))
                t = [clock()]
                request = ExportTraceServiceRequest.FromString(payload)
                t.append(clock())
                batch = ResourceSpansBatch.of(request.resource_spans)
                t.append(clock())
                batch.inbox_id = store.inbox_add(payload, batch.trace_ids())
                t.append(clock())
                assembler.add(batch)
                pendings = assembler.ready()
                t.append(clock())
                records, runs, evaluations = [], [], []
                readings = [TraceReading() for _ in pendings]  # as Pipeline._evaluate reads a trace
                for pending, reading in zip(pendings, readings, strict=True):
                    records.append(reading.records(pending.spans))
                t.append(clock())
                for trace_records, reading in zip(records, readings, strict=True):
                    runs.append(runs_from_records(trace_records, read=reading.read))
                t.append(clock())
                for trace_runs in runs:
                    evaluations.append([engine.evaluate(run) for run in trace_runs])
                t.append(clock())
                for pending, trace_evaluations in zip(pendings, evaluations, strict=True):
                    by_id = {entry.span.span_id.hex(): entry.span for entry in pending.spans}
                    for evaluation in trace_evaluations:
                        label_spans(by_id, evaluation)
                t.append(clock())
                outgoing = [encode_request(pending.spans) for pending in pendings]
                t.append(clock())
                b"".join(outgoing)  # as the exporter does with a batch taken in memory: sent as it is
                t.append(clock())
                # Delivered at once: the batch leaves the inbox in one commit (the outbox is not written).
                store.inbox_done_many([(pending.trace_id, pending.inbox_ids) for pending in pendings])
                t.append(clock())
                names = BREAKDOWN_STEPS
                for name, a, b in zip(names, t[:-1], t[1:], strict=True):
                    parts[name] = parts.get(name, 0) + b - a
                spans_total += template.spans
        store.close()
    return {name: ns / 1000 / spans_total for name, ns in parts.items()}, spans_total


BREAKDOWN_STEPS = (
    "receive: parse the request (FromString)",
    "receive: flatten spans (ResourceSpansBatch.of)",
    "receive: inbox_add (SQLite)",
    "assembly: add + ready",
    "evaluate: spans to records (TraceReading.records)",
    "evaluate: records to runs (runs_from_records)",
    "evaluate: Engine.evaluate (built-in detectors)",
    "evaluate: label_spans",
    "hand on: serialize (encode_request)",
    "export: join the batch taken in memory",
    "export: inbox_done_many (SQLite, the batch delivered)",
)
EVALUATION_STEPS = BREAKDOWN_STEPS[4:8]


# --- printing ----------------------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def fmt(value: float, digits: int = 0) -> str:
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def describe(p: Phase) -> str:
    cores = ", ".join(
        f"{k} {100 * v:.0f}% busy ({100 * p.others_share.get(k, math.nan):.0f}% others)" for k, v in p.core_busy.items()
    )
    return (
        f"  round {p.round} {p.kind:10} {p.mode:12}: sent {p.spans_sent:,} spans / {p.traces_sent:,} traces; "
        f"received {fmt(p.received_per_s)}/s, delivered {fmt(p.delivered_per_s)}/s (steady {p.steady_seconds:.0f} s)"
        f"; latency p50 {fmt(p.latency_ms['p50'])} ms p99 {fmt(p.latency_ms['p99'])} ms; processor CPU "
        f"{fmt(100 * p.cpu_share)}% ({fmt(p.cpu_us_per_span, 1)} µs/span), load {100 * p.load_cpu_share:.0f}%, "
        f"downstream {100 * p.bench_cpu_share:.0f}%, {cores}; peak RSS {fmt(p.peak_rss_mb)} MB; "
        f"drained in {p.drain_seconds:.1f} s; {'complete' if p.complete else 'INCOMPLETE'}"
        f"{f', {p.send_errors} send errors' if p.send_errors else ''}{_processor_notes(p)}"
    )


def _processor_notes(p: Phase) -> str:
    """What the processor's own /metrics say, where it adds something: evaluation time, limits, errors."""
    m, notes = p.metrics, []
    if p.mode == "collector":
        notes = _collector_notes(p)
    if m.get("agent_eval_evaluation_duration_seconds_count"):
        per_trace = m["agent_eval_evaluation_duration_seconds_sum"] / m["agent_eval_evaluation_duration_seconds_count"]
        notes.append(f"evaluation {1000 * per_trace:.1f} ms/trace (wall, its histogram)")
    for name, label in (
        ("agent_eval_traces_released_early_total", "traces released early"),
        ("agent_eval_evaluation_errors_total", "evaluation errors"),
        ("agent_eval_export_failures_total", "export failures"),
    ):
        if m.get(name):
            notes.append(f"{m[name]:,.0f} {label}")
    if p.mode in SERVE_VARIANTS and m and m.get("agent_eval_spans_received_total") != p.spans_sent:
        notes.append(f"it counted {m.get('agent_eval_spans_received_total', 0):,.0f} spans received")
    if p.exit_code != 0:
        notes.append(f"EXIT STATUS {p.exit_code} after SIGTERM")
    return "; " + "; ".join(notes) if notes else ""


def _collector_notes(p: Phase) -> list[str]:
    """The Collector's own counters: spans it refused or failed to queue or send, and a count that is not ours."""
    # Its Prometheus names carry no _total in this build; older builds add one.
    m, notes = {k.removesuffix("_total"): v for k, v in p.metrics.items()}, []
    for name, value in sorted(m.items()):
        if value and name.endswith("_spans") and ("refused" in name or "failed" in name):
            notes.append(f"{value:,.0f} {name.removeprefix('otelcol_').replace('_', ' ')}")
    accepted = m.get("otelcol_receiver_accepted_spans")
    if m and accepted != p.spans_sent:
        notes.append(f"it counted {accepted or 0:,.0f} spans accepted")
    return notes


def print_breakdown(parts: dict[str, float], spans: int) -> None:
    total = sum(parts.values())
    evaluation = sum(parts[k] for k in EVALUATION_STEPS)
    print(f"\n### Where the time goes: CPU per span of each step, in process, one thread ({spans:,} spans)\n")
    print("| step | µs/span | share |")
    print("|---|---:|---:|")
    for name, value in parts.items():
        print(f"| {name} | {value:.1f} | {100 * value / total:.0f}% |")
    print(f"| **all steps** | **{total:.1f}** | 100% |")
    print(
        f"\nThe steps alone would allow {1e6 / total:,.0f} spans/s on a core with evaluation and "
        f"{1e6 / (total - evaluation):,.0f} without it (evaluation steps: {evaluation:.1f} µs/span); the server adds "
        "gRPC, threads and the GIL."
    )


PAIRS = (("evaluate", "pass-through"), ("pass-through", "collector"), ("evaluate", "collector"))
"""The ratios printed, each a ÷ b."""


def round_ratios(phases: Sequence[Phase], kind: str, a: str, b: str, attr: str) -> list[float]:
    """``attr`` of variant a ÷ the same of variant b, within each round: the two measured minutes apart at most,
    on the machine as it was then, which is what makes a ratio worth more than the figures it comes from."""
    out = []
    for rnd in sorted({p.round for p in phases if p.kind == kind}):
        x = [getattr(p, attr) for p in phases if p.kind == kind and p.mode == a and p.round == rnd]
        y = [getattr(p, attr) for p in phases if p.kind == kind and p.mode == b and p.round == rnd]
        if x and y and y[0] and not math.isnan(x[0]) and not math.isnan(y[0]):
            out.append(x[0] / y[0])
    return out


def _label(variant: str) -> str:
    return "ceiling (load → ack-only sink)" if variant == CEILING else variant


def report(args: argparse.Namespace, phases: list[Phase], latency_rate: float) -> dict[str, Any]:
    def of(kind: str, mode: str) -> list[Phase]:
        return [p for p in phases if p.kind == kind and p.mode == mode]

    lines = []
    shown = [v for v in (*VARIANTS, CEILING) if of("throughput", v)]
    proc_core, load_core = f"cpu{args.processor_core}", f"cpu{args.load_core}"
    rows: dict[str, dict[str, float]] = {}
    for m in (*VARIANTS, CEILING):
        ps = of("throughput", m)
        rows[m] = {
            "received": med([p.received_per_s for p in ps]),
            "delivered": med([p.delivered_per_s for p in ps]),
            "end_to_end": med([p.end_to_end_per_s for p in ps]),
            "cpu_share": med([p.cpu_share for p in ps]),
            "cpu_us": med([p.cpu_us_per_span for p in ps]),
            "spans_per_cpu_s": 1e6 / med([p.cpu_us_per_span for p in ps]) if ps else math.nan,
            "peak_rss": max((p.peak_rss_mb for p in ps), default=math.nan),
            "p50": med([p.latency_ms["p50"] for p in ps]),
            "p99": med([p.latency_ms["p99"] for p in ps]),
            "load_cpu_share": med([p.load_cpu_share for p in ps]),
            "downstream_cpu_share": med([p.bench_cpu_share for p in ps]),
            "processor_core_busy": med([p.core_busy.get(proc_core, math.nan) for p in ps]),
            "processor_core_others": med([p.others_share.get(proc_core, math.nan) for p in ps]),
            "load_core_busy": med([p.core_busy.get(load_core, math.nan) for p in ps]),
        }
    pairs: dict[str, dict[str, Any]] = {}
    for a, b in PAIRS:
        delivered = round_ratios(phases, "throughput", a, b, "delivered_per_s")
        cpu = round_ratios(phases, "throughput", a, b, "cpu_us_per_span")
        if delivered or cpu:
            pairs[f"{a}/{b}"] = {"delivered": med(delivered), "delivered_rounds": delivered,
                                 "cpu_us": med(cpu), "cpu_us_rounds": cpu}  # fmt: skip
    ratios = pairs.get("evaluate/pass-through", {}).get("delivered_rounds", [])
    ratio = med(ratios)
    n_rounds = len({p.round for p in phases if p.kind == "throughput"})
    lines.append(
        f"\n### Throughput: as fast as accepted, "
        f"{f'at most {args.window:,} spans in flight' if args.window else 'no limit on spans in flight'}, medians of "
        f"{n_rounds} round(s); processor on core {args.processor_core}, load and downstream on core {args.load_core}\n"
    )
    lines.append(
        "| variant | received spans/s | delivered spans/s | end to end spans/s | processor CPU | CPU µs/span "
        "| spans per CPU-second | peak RSS MB | latency p50 / p99 ms (queueing) |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in shown:
        r = rows[m]
        lines.append(
            f"| {_label(m)} | {fmt(r['received'])} | {fmt(r['delivered'])} | {fmt(r['end_to_end'])} | "
            f"{fmt(100 * r['cpu_share'])}% | {fmt(r['cpu_us'], 1)} | {fmt(r['spans_per_cpu_s'])} | "
            f"{fmt(r['peak_rss'])} | {fmt(r['p50'])} / {fmt(r['p99'])} |"
        )
    for name, pr in pairs.items():
        rounds_d = ", ".join(f"{x:.2f}" for x in pr["delivered_rounds"])
        rounds_c = ", ".join(f"{x:.2f}" for x in pr["cpu_us_rounds"])
        lines.append(
            f"| {name.replace('/', ' ÷ ')} | | {fmt(pr['delivered'], 2)}× (rounds: {rounds_d}) | | | "
            f"{fmt(pr['cpu_us'], 2)}× (rounds: {rounds_c}) | | | |"
        )
    load_bound = []
    if shown:
        lines.append("")
    if CEILING in shown:
        c = rows[CEILING]
        fastest = max((v for v in VARIANTS if v in shown), key=lambda v: rows[v]["delivered"], default=None)
        reached = (
            f"; the fastest variant, {fastest}, reached {fmt(100 * rows[fastest]['delivered'] / c['delivered'])}% of it"
            if fastest
            else ""
        )
        lines.append(
            f"- load side: the ceiling, the load (core {args.load_core}) sending straight to a sink that only "
            f"acknowledges (core {args.processor_core}; its figures in the processor columns), is "
            f"{fmt(c['delivered'])} spans/s, the load process at {fmt(100 * c['load_cpu_share'])}% of its core"
            f"{reached}"
        )
    for v in VARIANTS:
        r = rows[v]
        if v not in shown or not r["cpu_share"] < LOAD_BOUND_CPU:
            continue
        load_bound.append(v)
        ceiling = rows[CEILING]["delivered"] if CEILING in shown else math.nan
        # The facts, not a diagnosis: on a shared machine which of them held it back is rarely one thing.
        lines.append(
            f"- {v}: busy {fmt(100 * r['cpu_share'])}% of one core; that core {fmt(100 * r['processor_core_busy'])}% "
            f"busy ({fmt(100 * r['processor_core_others'])}% other processes), the load's "
            f"{fmt(100 * r['load_core_busy'])}% (load {fmt(100 * r['load_cpu_share'])}%, downstream "
            f"{fmt(100 * r['downstream_cpu_share'])}%), {fmt(100 * r['delivered'] / ceiling)}% of the ceiling: its "
            f"spans/s is what it got, not what it can do. Its CPU µs/span holds: a whole core would be about "
            f"{fmt(r['spans_per_cpu_s'])} spans/s"
        )
    lat = {m: of("latency", m) for m in VARIANTS}
    lat_rows = {}
    if any(lat.values()):
        lines.append(
            f"\n### Added latency at a paced load of {latency_rate:,.0f} spans/s (every variant): serve's quiet "
            f"period ({args.quiet_period} s) subtracted; the Collector holds nothing on purpose, its batch timeout "
            "is in its figure\n"
        )
        lines.append("| variant | achieved spans/s | traces | p50 ms | p99 ms | max ms | processor CPU | CPU µs/span "
                     "| peak RSS MB |")  # fmt: skip
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in VARIANTS:
            ps = lat[m]
            if not ps:
                continue
            lat_rows[m] = {
                "achieved": med([p.delivered_per_s for p in ps]),
                "traces": sum(p.latency_ms["traces"] for p in ps),
                "p50": med([p.latency_ms["p50"] for p in ps]),
                "p99": med([p.latency_ms["p99"] for p in ps]),
                "max": max(p.latency_ms["max"] for p in ps),
                "cpu_share": med([p.cpu_share for p in ps]),
                "cpu_us": med([p.cpu_us_per_span for p in ps]),
                "peak_rss": max(p.peak_rss_mb for p in ps),
            }
            r = lat_rows[m]
            lines.append(
                f"| {m} | {fmt(r['achieved'])} | {fmt(r['traces'])} | {fmt(r['p50'])} | {fmt(r['p99'])} | "
                f"{fmt(r['max'])} | {fmt(100 * r['cpu_share'])}% | {fmt(r['cpu_us'], 1)} | {fmt(r['peak_rss'])} |"
            )
    soak = of("soak", "evaluate")
    if soak:
        s = soak[0]
        lines.append(f"\n### Soak: {s.seconds:.0f} s of the throughput load with evaluation\n")
        lines.append(
            "| spans delivered | delivered spans/s | RSS at start MB | RSS at half MB | RSS at end MB | peak RSS MB "
            "| slope over 2nd half MB/min | growth over 2nd half |"
        )
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        load_rss = [v for t, v in s.rss_mb if t <= s.seconds + 1] or [math.nan]
        lines.append(
            f"| {s.spans_sent:,} | {fmt(s.delivered_per_s)} | {fmt(load_rss[0])} | "
            f"{fmt(load_rss[len(load_rss) // 2])} | {fmt(load_rss[-1])} | {fmt(s.peak_rss_mb)} | "
            f"{fmt(s.rss_slope_mb_per_min, 2)} | {fmt(100 * s.rss_growth_second_half, 1)}% |"
        )
        step = max(1, len(s.rss_mb) // 12)
        lines.append("\nRSS over time (s: MB): " + ", ".join(f"{t:.0f}: {v:.0f}" for t, v in s.rss_mb[::step]))
    all_complete = all(p.complete for p in phases)
    eval_delivered = rows["evaluate"]["delivered"]
    lines.append("\n### Goals\n")
    lines.append(
        f"- ≥ {GOAL_SPANS_PER_S:,} spans/s per core with the built-in detectors: "
        f"{fmt(eval_delivered)} delivered spans/s on one core "
        f"({fmt(rows['evaluate']['spans_per_cpu_s'])} per CPU-second): "
        f"**{_verdict(eval_delivered, eval_delivered >= GOAL_SPANS_PER_S)}**"
    )
    lines.append(f"- ≥ {GOAL_RATIO}× pass-through: {fmt(ratio, 2)}×: **{_verdict(ratio, ratio >= GOAL_RATIO)}**")
    for variant, goal in (("pass-through", GOAL_PASS_US), ("evaluate", GOAL_EVAL_US)):
        if variant in rows:
            us = rows[variant]["cpu_us"]
            lines.append(f"- {variant} ≤ {goal:g} µs of CPU a span: {fmt(us, 1)} µs: **{_verdict(us, us <= goal)}**")
    if "pass-through" in rows and "collector" in rows:
        vs = rows["pass-through"]["delivered"] / rows["collector"]["delivered"]
        lines.append(
            f"- pass-through ≥ {GOAL_RATIO}× the Collector: {fmt(vs, 2)}×: **{_verdict(vs, vs >= GOAL_RATIO)}**"
        )
    if "evaluate" in lat_rows:
        p99 = lat_rows["evaluate"]["p99"]
        lines.append(
            f"- p99 added latency ≤ {GOAL_P99_MS:g} ms at {latency_rate:,.0f} spans/s: {fmt(p99)} ms with evaluation "
            f"(**{_verdict(p99, p99 <= GOAL_P99_MS)}**), "
            f"{fmt(lat_rows.get('pass-through', {}).get('p99', math.nan))} ms pass-through, "
            f"{fmt(lat_rows.get('collector', {}).get('p99', math.nan))} ms the Collector"
        )
    serve_phases = [p for p in phases if p.mode in SERVE_VARIANTS]
    peak_rss = max((p.peak_rss_mb for p in serve_phases), default=math.nan)
    collector_rss = max((p.peak_rss_mb for p in phases if p.mode == "collector"), default=math.nan)
    lines.append(
        f"- peak RSS ≤ {GOAL_RSS_MB:g} MB: {fmt(peak_rss)} MB (**{_verdict(peak_rss, peak_rss <= GOAL_RSS_MB)}**; "
        f"the Collector's, for comparison: {fmt(collector_rss)} MB)"
    )
    if soak:
        s = soak[0]
        flat = abs(s.rss_growth_second_half) < FLAT_GROWTH
        long_enough = s.seconds >= 600
        lines.append(
            f"- memory flat over a 10-minute load (growth over the second half < {100 * FLAT_GROWTH:.0f}% of RSS): "
            f"{fmt(100 * s.rss_growth_second_half, 1)}% over {s.seconds / 2:.0f} s, "
            f"{fmt(s.rss_slope_mb_per_min, 2)} MB/min: **{'met' if flat and long_enough else 'not met'}"
            f"{'' if long_enough else ' (soak shorter than 10 minutes: run --soak 600)'}**"
        )
    unlabelled = ", ".join(
        f"{v} {sum(p.labelled_roots for p in phases if p.mode == v)}" for v in ("pass-through", "collector")
    )
    lines.append(
        f"- every span delivered, each once, in every phase, and every processor stopped cleanly on SIGTERM: "
        f"**{'yes' if all_complete and all(p.exit_code == 0 for p in phases) else 'NO'}** "
        f"(labelled root spans with evaluation: "
        f"{sum(p.labelled_roots for p in phases if p.mode == 'evaluate'):,} of "
        f"{sum(p.traces_sent for p in phases if p.mode == 'evaluate'):,} traces; without: {unlabelled})"
    )
    big = max((p.max_export_bytes for p in serve_phases), default=0)
    if big > COLLECTOR_DEFAULT_MAX:
        lines.append(
            f"- note: the largest export the processor sent downstream was {big / 2**20:.1f} MiB, over the 4 MiB an "
            "OpenTelemetry Collector's OTLP receiver accepts by default"
        )
    print("\n".join(lines))
    return {"throughput": {m: rows[m] for m in shown}, "ratio": ratio, "ratios": ratios, "pairs": pairs,
            "load_bound": load_bound, "latency": lat_rows, "latency_rate": latency_rate}  # fmt: skip


def _verdict(value: float, met: bool) -> str:
    return "not measured" if math.isnan(value) else "met" if met else "not met"


# --- main --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per throughput phase")
    parser.add_argument("--spans", type=int, default=0, help="spans per throughput phase instead of --duration")
    parser.add_argument("--latency-duration", type=float, default=15.0, help="seconds per paced latency phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each: every variant, throughput and latency)")
    parser.add_argument("--soak", type=float, default=30.0, help="seconds of the soak phase (0: none)")
    parser.add_argument("--quiet-period", type=float, default=0.5, help="the processor's --quiet-period")
    parser.add_argument("--senders", type=int, default=4, help="concurrent OTLP/gRPC clients in the load process")
    parser.add_argument("--window", type=int, default=20_000, help="spans in flight at most (0: no limit)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="spans/s of the latency phases (default: half the throughput)"
    )
    parser.add_argument("--latency-load", type=float, default=0.5, help="latency rate as a share of throughput")
    parser.add_argument("--traces-per-request", type=int, default=1, help="traces per export request")
    parser.add_argument(
        "--breakdown", type=int, default=2, help="passes over the requests for the per-step CPU table (0: none)"
    )
    parser.add_argument(
        "--variants",
        "--modes",
        dest="variants",
        default=",".join(VARIANTS),
        help=f"variants to run, comma-separated, of {', '.join(VARIANTS)} (default: all three)",
    )
    parser.add_argument(
        "--ceiling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the load's own ceiling (load -> a sink that only acknowledges) in each round",
    )
    parser.add_argument(
        "--collector", type=Path, default=None, help="the Collector binary (default: what scripts/build-collector.sh "
        "prints, building it if need be)"
    )  # fmt: skip
    parser.add_argument("--collector-config", type=Path, default=COLLECTOR_CONFIG, help="the Collector's config")
    parser.add_argument(
        "--serve-command", default=None, help="the command run as `COMMAND serve ...` (default: otel-agent-eval)"
    )
    parser.add_argument("--processor-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1, help="core of the load process and the downstream")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 6 s phases, 10 s soak")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the processors' data directories and logs")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)  # the ceiling's sink: sink_main
    args = parser.parse_args(argv)
    if args.sink:
        sink_main(args.sink)
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows when piped too
    if args.quick:  # smaller defaults; options given explicitly still win
        for name, value in (("duration", 6.0), ("latency_duration", 6.0), ("rounds", 1), ("soak", 10.0)):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset not found: install util-linux")
    cores = os.sched_getaffinity(0)
    if not {args.processor_core, args.load_core} <= cores or args.processor_core == args.load_core:
        raise SystemExit(f"need two distinct cores among {sorted(cores)} (--processor-core, --load-core)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise SystemExit(f"--variants: {', '.join(unknown) or 'none given'}: choose among {', '.join(VARIANTS)}")

    from google.protobuf.internal import api_implementation

    import otel_agent_eval

    print(
        f"# otel-agent-eval serve beside the Collector: throughput, latency, memory "
        f"({time.strftime('%Y-%m-%d %H:%M')})\n"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"otel-agent-eval {otel_agent_eval.__version__}, Python {platform.python_version()}, grpcio {grpc.__version__}"
        f", protobuf {api_implementation.Type()}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {_cpu_model()}"
    )
    print(f"measured: {_code_state(Path(otel_agent_eval.__file__).resolve().parent)}")
    collector: dict[str, Any] = {"config": str(args.collector_config)}
    if "collector" in variants:
        found, why = find_collector(args.collector)
        if found is None:
            # Never a made-up figure: the run goes on with serve alone, and says so at the top and in the summary.
            print(f"collector variant SKIPPED: {why}")
            variants.remove("collector")
            collector["skipped"] = why
        else:
            args.collector = found
            collector.update(binary=str(found), version=why)
            print(f"collector: {why} ({found}), config {args.collector_config}")
    if not variants:
        raise SystemExit("no variant left to run")
    started = time.monotonic()
    templates = build_templates(args.data, args.traces_per_request, args.seed)
    spans = [t.spans for t in templates]
    print(
        f"load: {len(templates)} requests from the recorded runs in {args.data} ({sum(spans):,} spans; "
        f"{statistics.fmean(spans):.1f} spans and {statistics.fmean(len(t.payload) for t in templates) / 1024:.0f} "
        f"KB per request), fresh trace ids at every send, {args.senders} senders on core {args.load_core}; "
        f"processor on core {args.processor_core}, quiet period {args.quiet_period} s"
    )
    parts: dict[str, float] = {}
    if args.breakdown > 0:
        os.sched_setaffinity(0, {args.processor_core})  # where the processor will run, before it does
        parts, measured_spans = breakdown(templates, args.breakdown)
        print_breakdown(parts, measured_spans)
        print()
    os.sched_setaffinity(0, {args.load_core})  # this process (the downstream) and the threads it starts
    workdir = Path(tempfile.mkdtemp(prefix="bench-processor-"))
    templates_path = workdir / "templates.pickle"
    templates_path.write_bytes(pickle.dumps(templates))
    rng = random.Random(args.seed)
    phases: list[Phase] = []
    latency_rate = args.rate
    try:
        for rnd in range(1, args.rounds + 1):
            for kind in ("throughput", "latency"):
                if kind == "latency" and args.latency_duration <= 0:
                    continue
                order = [v for v in VARIANTS if v in variants]
                if kind == "throughput" and args.ceiling:
                    order.append(CEILING)  # in the same shuffle: it sees the machine as the variants do
                rng.shuffle(order)
                for mode in order:
                    if kind == "latency" and latency_rate <= 0:
                        # The slowest variant's rate, so that every variant sustains it (with evaluation: serve).
                        measured = [p.delivered_per_s for p in phases if p.kind == "throughput" and p.mode != CEILING]
                        latency_rate = args.latency_load * min(measured)
                        print(f"  latency phases paced at {latency_rate:,.0f} spans/s")
                    seconds = args.duration if kind == "throughput" else args.latency_duration
                    phase = run_phase(args, workdir, templates_path, mode, kind, rnd, seconds,
                                      0.0 if kind == "throughput" else latency_rate)  # fmt: skip
                    print(describe(phase), flush=True)
                    phases.append(phase)
        if args.soak > 0:
            phase = run_phase(args, workdir, templates_path, "evaluate", "soak", 0, args.soak, 0.0)
            print(describe(phase), flush=True)
            phases.append(phase)
        summary = report(args, phases, latency_rate)
        summary["breakdown_us_per_span"] = parts
        summary["collector"] = collector
    finally:
        if args.keep:
            print(f"\nkept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "phases": [asdict(p) for p in phases]}, indent=1))


def find_collector(given: Path | None) -> tuple[Path | None, str]:
    """The Collector binary and its version, or None and why not. Without ``given``: the path that
    scripts/build-collector.sh prints last (it waits for a build in progress, or builds: minutes when cold)."""
    if given is None:
        print("collector: scripts/build-collector.sh (builds it when it is not in the cache: can take minutes)")
        try:
            done = subprocess.run(["bash", str(BUILD_COLLECTOR)], capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"scripts/build-collector.sh did not finish: {e}"
        if done.returncode != 0 or not done.stdout.strip():
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            return None, f"scripts/build-collector.sh failed (exit {done.returncode}): {tail}"
        given = Path(done.stdout.strip().splitlines()[-1])
    if not (given.is_file() and os.access(given, os.X_OK)):
        return None, f"{given} is not an executable file"
    try:
        version = subprocess.run([str(given), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{given} --version did not run: {e}"
    if version.returncode != 0:
        return None, f"{given} --version exited {version.returncode}"
    return given, version.stdout.strip() or "unknown version"


def _code_state(package: Path) -> str:
    """Which code serve runs: the package's folder and, in a git checkout, its commit and uncommitted files
    (the tree may be shared: figures of a working tree others are editing are worth knowing as such)."""
    try:
        head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return f"{package} (no git)"
    if head.returncode != 0:
        return f"{package} (not in a git checkout)"
    changed = len(dirty.stdout.splitlines())
    return f"{package} at {head.stdout.strip()}" + (f", {changed} file(s) changed and not committed" if changed else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
