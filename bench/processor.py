"""Throughput, added latency and memory of ``otel-agent-eval serve``, with evaluation and as a pass-through.

Run from the repository root::

    .venv/bin/python bench/processor.py                 # 2 rounds, a few minutes
    .venv/bin/python bench/processor.py --quick         # smoke run: 1 round of short phases
    .venv/bin/python bench/processor.py --soak 600      # also 10 minutes of load for the memory slope

The goals (issue 4, item 11): at least 20,000 spans/s through receive -> evaluate -> export on one core with
the built-in detectors, at least 0.7x of the same server with evaluation off (``--no-evaluate``, a durable
pass-through: same inbox, assembly, outbox and export), the p99 added latency, the peak RSS, and memory flat
over a 10-minute load.

**Processes.** The processor is the real command, ``otel-agent-eval serve``, a subprocess pinned to one core
with ``taskset -c 0`` (its on-disk inbox and outbox in a fresh temporary directory per phase). The load is a
separate process pinned to the other core: it reads OTLP requests built once from the recorded runs in
``../shared/data`` (each run written as spans by ``RunSpanWriter``, encoded by the SDK's ``encode_spans``: one
trace per request, about 30 spans and 48 KB a trace), gives every send fresh random trace ids (so every trace
is new to the processor) and sends them with a few concurrent OTLP/gRPC clients (``TraceService/Export``, the
bytes as they are: no client-side protobuf work). The downstream is an OTLP/gRPC ``TraceService`` in this
process (pinned to the load's core too): it counts the spans of every trace and notes when they arrived.

**Phases.** Each round runs, for both modes, in a shuffled order:

* *throughput*: senders as fast as the processor accepts, but with at most ``--window`` spans sent and not yet
  delivered downstream (otherwise receiving, which never waits on evaluation, runs ahead of it and the
  backlog, not the processor, is measured; ``--window 0`` turns that off). Rates are taken over the steady part
  (after a warm-up of a fifth of the phase, at least the quiet period + 1 s): spans acknowledged to the
  senders per second (*received*) and spans arriving downstream per second (*delivered*);
* *latency*: the same load paced at a fixed rate that both modes sustain (by default half the throughput
  measured with evaluation in the first round). Added latency of a trace: from the moment its request was
  sent to the moment the downstream received its last span, minus the quiet period (the time the processor
  is told to wait for late spans). At saturation latency is mostly queueing, so it is given for the paced
  load; the throughput phase's figures are printed too, for what they are.

After a phase's load stops, the benchmark waits until the downstream has every span (each trace complete,
none twice), then stops the processor with SIGTERM. The processor's RSS and CPU time are sampled from
``/proc`` every half second; peak RSS is ``VmHWM``. CPU per span is the processor's CPU time (all threads)
over the steady part divided by the spans delivered in it; the busy share of each core is shown, since the
machine is shared. ``--soak SECONDS`` then runs the throughput load with evaluation for that long and fits
the slope of RSS over its second half ("flat": growth over the second half under 5% of the RSS).
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
from collections.abc import Sequence
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
GOAL_RATIO = 0.7
FLAT_GROWTH = 0.05
MAX_MESSAGE = 256 * 1024 * 1024
COLLECTOR_DEFAULT_MAX = 4 * 1024 * 1024  # an OpenTelemetry Collector's OTLP receiver refuses larger messages
FILES = (
    ("tau-bench/airline-gpt-4o-tasks-00-24.json", "tau-bench/airline-tools.json"),
    ("tau2/retail-gpt-4.1.json", "tau-bench/retail-tools.json"),
    ("tau2/retail-gpt-4.1-finetuned.json", "tau-bench/retail-tools.json"),
)
MODES = ("evaluate", "pass-through")


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
    """An OTLP/gRPC trace receiver that counts spans per trace and notes arrival times."""

    def __init__(self, delivered: Any) -> None:
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
        handler = grpc.unary_unary_rpc_method_handler(self._export)  # raw bytes in, raw bytes out
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

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

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


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
    def __init__(self, pid: int, every: float) -> None:
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
            _status_kb(self.pid, "VmRSS"),
            _cpu_seconds(self.pid),
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


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def scrape(port: int) -> dict[str, float]:
    """The processor's own counters (summed over labels) from /metrics."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith("agent_eval_"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name.endswith("_bucket") or name.endswith("_created"):
            continue
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return out


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with status {proc.returncode} before it was ready")
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the processor did not get ready in time")


def run_phase(args: argparse.Namespace, workdir: Path, templates_path: Path, mode: str, kind: str, rnd: int,
              seconds: float, rate: float) -> Phase:  # fmt: skip
    ctx = mp.get_context("spawn")
    delivered = ctx.Value("q", 0, lock=False)
    downstream = Downstream(delivered)
    downstream.start()
    grpc_port, metrics_port = free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-{kind}-", dir=workdir))
    command = [
        "taskset",
        "-c",
        str(args.processor_core),
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
        f"grpc://127.0.0.1:{downstream.port}",
        "--quiet-period",
        str(args.quiet_period),
        "--log-level",
        "WARNING",
        *(["--no-evaluate"] if mode == "pass-through" else []),
    ]
    log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    phase = Phase(mode, kind, rnd, seconds)
    sampler = Sampler(proc.pid, 1.0 if kind == "soak" else 0.5)
    try:
        wait_ready(metrics_port, proc)
        sampler.start()
        out = data_dir.parent / f"{data_dir.name}.load"
        window = args.window if rate <= 0 else 0
        max_spans = args.spans if (args.spans and kind == "throughput") else 2**62
        cfg = LoadConfig(f"127.0.0.1:{grpc_port}", str(templates_path), str(out), args.load_core, args.senders,
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
        phase.traces_sent = len(sent)
        phase.spans_sent = sum(r[3] for r in sent)
        progress, last_count = time.monotonic(), -1
        while delivered.value < phase.spans_sent and proc.poll() is None:  # drained, or no progress for a minute
            if delivered.value != last_count:
                progress, last_count = time.monotonic(), delivered.value
            elif time.monotonic() - progress > 60:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # anything sent twice would show up now
        phase.drain_seconds = time.monotonic() - stopped
        phase.metrics = scrape(metrics_port)
        phase.peak_rss_mb = _status_kb(proc.pid, "VmHWM") / 1024
        sampler.stop()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                phase.exit_code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                phase.exit_code = proc.wait()
        else:
            phase.exit_code = proc.returncode
        log.close()
        downstream.stop()
        if sampler.is_alive():
            sampler.stop()
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
        added = got[1] - sent_at - q
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
            f"cpu{args.processor_core}": phase.cpu_share,
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
    from otel_agent_eval.ingest.span_record import SpanRecord
    from otel_agent_eval.ingest.spans import runs_from_records
    from otel_agent_eval.processor.assembly import ResourceSpansBatch, TraceAssembler, group_for_export
    from otel_agent_eval.processor.labelling import label_spans
    from otel_agent_eval.processor.store import Store

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
                for pending in pendings:
                    records.append([SpanRecord.from_proto(e.span, _resource(e.resource)) for e in pending.spans])
                t.append(clock())
                for trace_records in records:
                    runs.append(runs_from_records(trace_records))
                t.append(clock())
                for trace_runs in runs:
                    evaluations.append([engine.evaluate(run) for run in trace_runs])
                t.append(clock())
                for pending, trace_evaluations in zip(pendings, evaluations, strict=True):
                    by_id = {entry.span.span_id.hex(): entry.span for entry in pending.spans}
                    for evaluation in trace_evaluations:
                        label_spans(by_id, evaluation)
                t.append(clock())
                outgoing = [
                    ExportTraceServiceRequest(resource_spans=list(group_for_export(pending.spans))).SerializeToString()
                    for pending in pendings
                ]
                t.append(clock())
                for data, pending in zip(outgoing, pendings, strict=True):
                    store.outbox_add(data, len(pending.spans))
                for pending in pendings:
                    store.inbox_done(pending.trace_id, pending.inbox_ids)
                t.append(clock())
                rows = store.outbox_peek(64)
                b"".join(row for _, row, _ in rows)  # as the exporter does: the stored bytes go out as they are
                store.outbox_done([i for i, _, _ in rows])
                t.append(clock())
                names = BREAKDOWN_STEPS
                for name, a, b in zip(names, t[:-1], t[1:], strict=True):
                    parts[name] = parts.get(name, 0) + b - a
                spans_total += template.spans
        store.close()
    return {name: ns / 1000 / spans_total for name, ns in parts.items()}, spans_total


def _resource(resource: Any) -> dict[str, Any]:
    from otel_agent_eval.ingest.span_record import attributes_from_proto

    return attributes_from_proto(resource.attributes)  # as Pipeline._evaluate reads it


BREAKDOWN_STEPS = (
    "receive: parse the request (FromString)",
    "receive: flatten spans (ResourceSpansBatch.of)",
    "receive: inbox_add (SQLite)",
    "assembly: add + ready",
    "evaluate: spans to SpanRecord (from_proto)",
    "evaluate: records to runs (runs_from_records)",
    "evaluate: Engine.evaluate (built-in detectors)",
    "evaluate: label_spans",
    "hand on: regroup + serialize (group_for_export)",
    "hand on: outbox_add + inbox_done (SQLite)",
    "export: outbox_peek, join, outbox_done",
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
        f"{100 * p.cpu_share:.0f}% ({fmt(p.cpu_us_per_span, 1)} µs/span), load {100 * p.load_cpu_share:.0f}%, "
        f"downstream {100 * p.bench_cpu_share:.0f}%, {cores}; peak RSS {p.peak_rss_mb:.0f} MB; "
        f"drained in {p.drain_seconds:.1f} s; {'complete' if p.complete else 'INCOMPLETE'}"
        f"{f', {p.send_errors} send errors' if p.send_errors else ''}{_processor_notes(p)}"
    )


def _processor_notes(p: Phase) -> str:
    """What the processor's own /metrics say, where it adds something: evaluation time, limits, errors."""
    m, notes = p.metrics, []
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
    if m and m.get("agent_eval_spans_received_total") != p.spans_sent:
        notes.append(f"it counted {m.get('agent_eval_spans_received_total', 0):,.0f} spans received")
    if p.exit_code != 0:
        notes.append(f"EXIT STATUS {p.exit_code} after SIGTERM")
    return "; " + "; ".join(notes) if notes else ""


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


def report(args: argparse.Namespace, phases: list[Phase], latency_rate: float) -> dict[str, Any]:
    def of(kind: str, mode: str) -> list[Phase]:
        return [p for p in phases if p.kind == kind and p.mode == mode]

    lines = []
    tput = {m: of("throughput", m) for m in MODES}
    ratios = []
    for rnd in sorted({p.round for p in phases if p.kind == "throughput"}):
        e = [p for p in tput["evaluate"] if p.round == rnd]
        b = [p for p in tput["pass-through"] if p.round == rnd]
        if e and b and b[0].delivered_per_s:
            ratios.append(e[0].delivered_per_s / b[0].delivered_per_s)
    rows: dict[str, dict[str, float]] = {}
    for m in MODES:
        ps = tput[m]
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
        }
    ratio = med(ratios)
    n_rounds = len(ratios)
    lines.append(
        f"\n### Throughput: as fast as accepted, "
        f"{f'at most {args.window:,} spans in flight' if args.window else 'no limit on spans in flight'}, medians of "
        f"{n_rounds} round(s); processor on core {args.processor_core}\n"
    )
    lines.append(
        "| mode | received spans/s | delivered spans/s | end to end spans/s | processor CPU | CPU µs/span "
        "| spans per CPU-second | peak RSS MB | latency p50 / p99 ms (queueing) |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in MODES:
        r = rows[m]
        lines.append(
            f"| {m} | {fmt(r['received'])} | {fmt(r['delivered'])} | {fmt(r['end_to_end'])} | "
            f"{fmt(100 * r['cpu_share'])}% | {fmt(r['cpu_us'], 1)} | {fmt(r['spans_per_cpu_s'])} | "
            f"{fmt(r['peak_rss'])} | {fmt(r['p50'])} / {fmt(r['p99'])} |"
        )
    lines.append(
        f"| evaluate ÷ pass-through | | {fmt(ratio, 2)}× (rounds: {', '.join(f'{x:.2f}' for x in ratios)}) | | | "
        f"{fmt(rows['evaluate']['cpu_us'] / rows['pass-through']['cpu_us'], 2)}× | | | |"
    )
    lat = {m: of("latency", m) for m in MODES}
    lat_rows = {}
    if any(lat.values()):
        lines.append(
            f"\n### Added latency at a paced load of {latency_rate:,.0f} spans/s (both modes), quiet period "
            f"{args.quiet_period} s subtracted\n"
        )
        lines.append("| mode | achieved spans/s | traces | p50 ms | p99 ms | max ms | processor CPU | peak RSS MB |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m in MODES:
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
                "peak_rss": max(p.peak_rss_mb for p in ps),
            }
            r = lat_rows[m]
            lines.append(
                f"| {m} | {fmt(r['achieved'])} | {fmt(r['traces'])} | {fmt(r['p50'])} | {fmt(r['p99'])} | "
                f"{fmt(r['max'])} | {fmt(100 * r['cpu_share'])}% | {fmt(r['peak_rss'])} |"
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
        f"**{'met' if eval_delivered >= GOAL_SPANS_PER_S else 'not met'}**"
    )
    lines.append(f"- ≥ {GOAL_RATIO}× pass-through: {fmt(ratio, 2)}×: **{'met' if ratio >= GOAL_RATIO else 'not met'}**")
    if "evaluate" in lat_rows:
        lines.append(
            f"- p99 added latency (reported, no target): {fmt(lat_rows['evaluate']['p99'])} ms with evaluation, "
            f"{fmt(lat_rows.get('pass-through', {}).get('p99', math.nan))} ms pass-through, at "
            f"{latency_rate:,.0f} spans/s"
        )
    peak_rss = max((p.peak_rss_mb for p in phases), default=math.nan)
    lines.append(f"- peak RSS of the processor (reported): {fmt(peak_rss)} MB")
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
    lines.append(
        f"- every span delivered, each once, in every phase, and the processor stopped cleanly on SIGTERM: "
        f"**{'yes' if all_complete and all(p.exit_code == 0 for p in phases) else 'NO'}** "
        f"(labelled root spans with evaluation: "
        f"{sum(p.labelled_roots for p in phases if p.mode == 'evaluate'):,} of "
        f"{sum(p.traces_sent for p in phases if p.mode == 'evaluate'):,} traces; pass-through: "
        f"{sum(p.labelled_roots for p in phases if p.mode == 'pass-through')})"
    )
    big = max((p.max_export_bytes for p in phases), default=0)
    if big > COLLECTOR_DEFAULT_MAX:
        lines.append(
            f"- note: the largest export the processor sent downstream was {big / 2**20:.1f} MiB, over the 4 MiB an "
            "OpenTelemetry Collector's OTLP receiver accepts by default"
        )
    print("\n".join(lines))
    return {"throughput": rows, "ratio": ratio, "ratios": ratios, "latency": lat_rows, "latency_rate": latency_rate}


# --- main --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per throughput phase")
    parser.add_argument("--spans", type=int, default=0, help="spans per throughput phase instead of --duration")
    parser.add_argument("--latency-duration", type=float, default=15.0, help="seconds per paced latency phase")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each: both modes, throughput and latency)")
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
    parser.add_argument("--modes", default=",".join(MODES), help="modes to run, comma-separated (default: both)")
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
    args = parser.parse_args(argv)
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

    from google.protobuf.internal import api_implementation

    import otel_agent_eval

    print(f"# otel-agent-eval serve: throughput, latency, memory ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"otel-agent-eval {otel_agent_eval.__version__}, Python {platform.python_version()}, grpcio {grpc.__version__}"
        f", protobuf {api_implementation.Type()}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {_cpu_model()}"
    )
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
                order = [m for m in MODES if m in args.modes.split(",")]
                rng.shuffle(order)
                for mode in order:
                    if kind == "latency" and latency_rate <= 0:
                        measured = [p.delivered_per_s for p in phases if p.kind == "throughput"]
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
    finally:
        if args.keep:
            print(f"\nkept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "phases": [asdict(p) for p in phases]}, indent=1))


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
