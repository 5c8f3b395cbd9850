"""`serve`'s access control on loopback, with real grpcio clients: the bearer token on every gRPC method and on
OTLP/HTTP, the evaluation service's own limits (OTLP ingestion never starved by evaluations), and TLS (half a
configuration or a bad file refused; gRPC and HTTPS served with a self-signed certificate)."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_agent_eval.cli import main
from otel_agent_eval.evaluate import Engine
from otel_agent_eval.hook import RemoteGuard, RemoteGuardError
from otel_agent_eval.hook._proto import evaluation_pb2 as pb
from otel_agent_eval.hook._proto import evaluation_pb2_grpc as pb_grpc
from otel_agent_eval.hook.remote import message_to_pb
from otel_agent_eval.processor import Processor, ServeConfig

TOKEN = "s3cret-token"
GOOD = (("authorization", f"Bearer {TOKEN}"),)
WRONG = (("authorization", "Bearer not-the-token"),)
TOOLS = [
    pb.ToolDefinition(
        name="cancel_order",
        parameters_json=json.dumps(
            {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed"]}},
                "required": ["order_id", "reason"],
            }
        ),
    )
]


def config(tmp_path: Path, **overrides: Any) -> ServeConfig:
    values: dict[str, Any] = {
        "grpc_endpoint": "127.0.0.1:0",
        "http_endpoint": "127.0.0.1:0",
        "metrics_endpoint": "127.0.0.1:0",
        "data_dir": tmp_path / "data",
        "quiet_period": 0.2,
        "drain_seconds": 2.0,
    }
    values.update(overrides)
    return ServeConfig.of(**values)


def step_request(history: int = 1, content: str = "Cancel order #W1, I no longer need it.") -> pb.EvaluateStepRequest:
    """A request whose proposed call breaks the tool's schema ('because' is not an allowed reason)."""
    messages = [message_to_pb({"role": "user", "content": content}) for _ in range(history)]
    proposed = message_to_pb(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "cancel_order", "arguments": '{"order_id": "#W1", "reason": "because"}'},
                }
            ],
        }
    )
    return pb.EvaluateStepRequest(history=messages, proposed=proposed, tools=TOOLS)


def _request_bytes() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "x"
    return request.SerializeToString()


def exporter(channel: grpc.Channel) -> Callable[..., bytes]:
    return channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


@pytest.fixture
def channel(tmp_path: Path, running: Callable[..., Processor]) -> Iterator[tuple[Processor, grpc.Channel]]:
    processor = running(config(tmp_path, bearer_token=TOKEN))
    with grpc.insecure_channel(processor.grpc.endpoint) as ch:  # type: ignore[union-attr]
        yield processor, ch


# --- the bearer token ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "expected"), [((), "UNAUTHENTICATED"), (WRONG, "UNAUTHENTICATED"), (GOOD, "OK")])
def test_every_grpc_method_checks_the_token(
    channel: tuple[Processor, grpc.Channel], metadata: tuple[tuple[str, str], ...], expected: str
) -> None:
    _, ch = channel
    stub = pb_grpc.EvaluationServiceStub(ch)  # type: ignore[no-untyped-call]
    step = code_of(lambda: stub.EvaluateStep(step_request(), metadata=metadata, timeout=30))
    session = code_of(lambda: list(stub.EvaluateSession(iter([step_request()] * 2), metadata=metadata, timeout=30)))
    export = code_of(lambda: exporter(ch)(_request_bytes(), metadata=metadata, timeout=30))
    assert (step.name, session.name, export.name) == (expected, expected, expected)


def test_an_authorised_call_gets_its_verdict(channel: tuple[Processor, grpc.Channel]) -> None:
    _, ch = channel
    stub = pb_grpc.EvaluationServiceStub(ch)  # type: ignore[no-untyped-call]
    response = stub.EvaluateStep(step_request(), metadata=GOOD, timeout=30)
    assert response.verdict == pb.VERDICT_REVISE and response.critique
    responses = list(stub.EvaluateSession(iter([step_request()] * 2), metadata=GOOD, timeout=30))
    assert [r.verdict for r in responses] == [pb.VERDICT_REVISE, pb.VERDICT_REVISE]
    with pytest.raises(grpc.RpcError) as refused:
        stub.EvaluateStep(step_request(), metadata=(("authorization", f"bearer {TOKEN} "),), timeout=30)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "bearer token" in (refused.value.details() or "")


def test_remote_guard_sends_the_token(channel: tuple[Processor, grpc.Channel]) -> None:
    processor, _ = channel
    endpoint = processor.grpc.endpoint  # type: ignore[union-attr]
    history = [{"role": "user", "content": "Cancel order #W1, I no longer need it."}]
    proposed = {"role": "assistant", "content": "Your order is cancelled."}
    with RemoteGuard(endpoint, timeout=30, bearer_token=TOKEN) as guard:
        assert guard.check(history, proposed).action in ("allow", "revise") and guard.failures == 0
    with RemoteGuard(endpoint, timeout=30) as anonymous, pytest.raises(RemoteGuardError, match="UNAUTHENTICATED"):
        anonymous.check(history, proposed)


def _http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None, **kwargs: Any) -> int:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30, **kwargs) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_http_takes_data_only_with_the_token_and_health_stays_open(channel: tuple[Processor, grpc.Channel]) -> None:
    processor, _ = channel
    traces = f"http://{processor.http.endpoint}/v1/traces"  # type: ignore[union-attr]
    protobuf = {"Content-Type": "application/x-protobuf"}
    assert _http(traces, _request_bytes(), protobuf) == 401
    assert _http(traces, _request_bytes(), {**protobuf, "Authorization": "Bearer nope"}) == 401
    assert _http(traces, _request_bytes(), {**protobuf, "Authorization": f"Bearer {TOKEN}"}) == 200
    admin = f"http://{processor.admin.endpoint}"  # type: ignore[union-attr]
    assert [_http(f"{admin}{path}") for path in ("/healthz", "/readyz", "/metrics")] == [200, 200, 200]


# --- the evaluation service's limits ---------------------------------------------------------------------------


class BlockingEngine(Engine):
    """The guard's checks wait for ``gate`` (the processor's own evaluations do not: they call ``evaluate``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def check(self, run: Any, step: Any) -> Any:
        self.entered.release()
        self.gate.wait(60)
        return super().check(run, step)


def test_service_calls_beyond_the_limit_are_refused_and_export_goes_on(
    tmp_path: Path, running: Callable[..., Processor]
) -> None:
    engine = BlockingEngine()
    limit = 3
    processor = running(config(tmp_path, service_max_concurrency=limit), engine)
    endpoint = processor.grpc.endpoint  # type: ignore[union-attr]
    channel = grpc.insecure_channel(endpoint)
    stub = pb_grpc.EvaluationServiceStub(channel)  # type: ignore[no-untyped-call]
    pool = ThreadPoolExecutor(max_workers=limit + 12)
    try:
        held = [pool.submit(lambda: stub.EvaluateStep(step_request(), timeout=120)) for _ in range(limit)]
        for _ in range(limit):  # all `limit` calls are inside the engine, holding their slots and threads
            assert engine.entered.acquire(timeout=60)
        # More calls than there are gRPC worker threads for OTLP: each is refused at once, none waits.
        extra = [pool.submit(code_of, lambda: stub.EvaluateStep(step_request(), timeout=60)) for _ in range(12)]
        assert {f.result(timeout=60) for f in extra} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        session = code_of(lambda: list(stub.EvaluateSession(iter([step_request()]), timeout=60)))
        assert session is grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as busy:
            stub.EvaluateStep(step_request(), timeout=60)
        assert f"{limit} evaluations in flight" in (busy.value.details() or "")
        # OTLP ingestion is served while the service calls are blocked (a generous deadline, no timing).
        exports = [pool.submit(exporter(channel), _request_bytes(), timeout=60) for _ in range(10)]
        assert [f.result(timeout=90) for f in exports] == [b""] * 10
        assert not any(f.done() for f in held)  # the exports completed while the evaluations were blocked
        # A remote guard facing a busy service fails open (or closed, as told), as if it were unreachable.
        with RemoteGuard(endpoint, timeout=30) as guard:
            assert guard.check([{"role": "user", "content": "hi"}], {"content": "hello"}).action == "allow"
            assert guard.failures == 1
    finally:
        engine.gate.set()
        verdicts = [f.result(timeout=60).verdict for f in held]
        pool.shutdown()
        channel.close()
    assert verdicts == [pb.VERDICT_REVISE] * limit
    with grpc.insecure_channel(endpoint) as again:  # the slots were given back
        reply = pb_grpc.EvaluationServiceStub(again).EvaluateStep(step_request(), timeout=60)  # type: ignore[no-untyped-call]
        assert reply.verdict == pb.VERDICT_REVISE


def test_oversized_requests_are_refused_naming_the_limit(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path, service_max_messages=10, service_max_request_bytes=20_000))
    with grpc.insecure_channel(processor.grpc.endpoint) as ch:  # type: ignore[union-attr]
        stub = pb_grpc.EvaluationServiceStub(ch)  # type: ignore[no-untyped-call]
        assert stub.EvaluateStep(step_request(history=10), timeout=30).verdict == pb.VERDICT_REVISE
        with pytest.raises(grpc.RpcError) as long:
            stub.EvaluateStep(step_request(history=11), timeout=30)
        assert long.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "history: 11 messages, over this service's limit of 10" in (long.value.details() or "")
        with pytest.raises(grpc.RpcError) as big:
            stub.EvaluateStep(step_request(content="x" * 30_000), timeout=30)
        assert big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over this service's limit of 20000 bytes" in (big.value.details() or "")
        with pytest.raises(grpc.RpcError) as in_session:
            list(stub.EvaluateSession(iter([step_request(), step_request(history=50)]), timeout=30))
        assert in_session.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (in_session.value.details() or "").startswith("request 1: history: 50 messages")


def test_service_limit_settings(tmp_path: Path) -> None:
    ctx = main.commands["serve"].make_context("serve", ["--service-max-concurrency", "2"])
    assert ctx.params["service_max_concurrency"] == 2
    assert ctx.params["service_max_messages"] == 5_000
    assert ctx.params["service_max_request_bytes"] == 4 * 1024 * 1024
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--service-max-concurrency", "0"])
    assert result.exit_code == 2 and "--service-max-concurrency" in result.stderr


# --- TLS -------------------------------------------------------------------------------------------------------


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 and its key, as PEM files."""
    crypto = pytest.importorskip("cryptography", reason="cryptography makes the test certificate")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def serve(*args: str, data_dir: Path) -> Any:
    off = ["--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "", "--metrics-endpoint", ""]
    return CliRunner().invoke(main, ["serve", "--data-dir", str(data_dir), *off, *args])


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    only_cert = serve("--tls-cert", str(cert), data_dir=tmp_path / "d")
    assert only_cert.exit_code == 2
    assert f"--tls-cert {cert} without --tls-key" in only_cert.stderr
    only_key = serve("--tls-key", str(key), data_dir=tmp_path / "d")
    assert only_key.exit_code == 2
    assert f"--tls-key {key} without --tls-cert" in only_key.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_bad_tls_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    missing = tmp_path / "missing.pem"
    cases = [
        ((missing, key), f"--tls-cert {missing}: cannot read"),
        ((cert, missing), f"--tls-key {missing}: cannot read"),
        ((key, key), f"--tls-cert {key}: not a PEM certificate"),
        ((garbage, key), f"--tls-cert {garbage}: not a valid PEM certificate"),
        ((cert, cert), f"--tls-key {cert}: not a PEM private key"),
        ((cert, other_key), f"--tls-key {other_key}: not an unencrypted private key matching --tls-cert {cert}"),
    ]
    for (c, k), message in cases:
        result = serve("--tls-cert", str(c), "--tls-key", str(k), data_dir=tmp_path / "d")
        assert result.exit_code == 2, (message, result.output)
        assert message in result.stderr, result.stderr


def test_grpc_with_tls(tmp_path: Path, running: Callable[..., Processor]) -> None:
    cert, key = self_signed(tmp_path)
    processor = running(config(tmp_path, tls_cert=cert, tls_key=key, bearer_token=TOKEN, http_endpoint=None))
    port = processor.grpc.port  # type: ignore[union-attr]
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as ch:
        assert exporter(ch)(_request_bytes(), metadata=GOOD, timeout=30) == b""
        stub = pb_grpc.EvaluationServiceStub(ch)  # type: ignore[no-untyped-call]
        assert stub.EvaluateStep(step_request(), metadata=GOOD, timeout=30).verdict == pb.VERDICT_REVISE
        assert code_of(lambda: stub.EvaluateStep(step_request(), timeout=30)) is grpc.StatusCode.UNAUTHENTICATED
    with RemoteGuard(f"localhost:{port}", timeout=30, bearer_token=TOKEN, root_certificates=cert.read_bytes()) as g:
        assert g.check([{"role": "user", "content": "hi"}], {"content": "hello"}).action == "allow"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:  # plaintext to the TLS port: no answer
        assert code_of(lambda: exporter(plain)(_request_bytes(), metadata=GOOD, timeout=10)) in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )


def test_https_with_tls(tmp_path: Path, running: Callable[..., Processor]) -> None:
    cert, key = self_signed(tmp_path)
    processor = running(config(tmp_path, tls_cert=cert, tls_key=key, bearer_token=TOKEN))
    port = processor.http.port  # type: ignore[union-attr]
    context = ssl.create_default_context(cafile=str(cert))
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"}
    assert _http(f"https://localhost:{port}/v1/traces", _request_bytes(), headers, context=context) == 200
    assert (
        _http(
            f"https://localhost:{port}/v1/traces", _request_bytes(), {**headers, "Authorization": ""}, context=context
        )
        == 401
    )
    try:  # plaintext to the TLS port: refused one way or another, never taken
        plain = _http(f"http://127.0.0.1:{port}/v1/traces", _request_bytes(), headers)
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
        plain = 0
    assert plain != 200
