"""The OTLP/HTTP receiver on the wire, with real clients on loopback: chunked bodies, lengths that lie or conflict,
limits applied as the body arrives and as it inflates (gzip bombs), bodies no decoder takes, stalled clients,
the bound on connections, HTTPS.

Every bad request must be answered (a 4xx and a one-line message), never met with a closed connection or a
traceback."""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_processor import config, wait_for

from otel_agent_eval.processor import Processor, http_wire
from otel_agent_eval.processor.http_wire import tls_context
from otel_agent_eval.processor.receivers import HttpReceiver

LIMIT = 64 * 1024
PROTOBUF = "application/x-protobuf"
DEADLINE = 20.0  # a bound on waiting for an answer, not a timing assertion


def request_bytes(name: str = "GET /", spans: int = 1) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        scope.spans.add(
            trace_id=b"\x01" * 16, span_id=bytes([2, 0, 0, 0, 0, 0, 0, i % 256]), name=name, end_time_unix_nano=2
        )
    return request.SerializeToString()


@dataclass
class Served:
    receiver: HttpReceiver
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.receiver.port

    def names(self) -> list[str]:
        return [s.name for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start an ``HttpReceiver`` whose receive callback records what it is given; stopped at the end."""
    started: list[HttpReceiver] = []

    def start(**options: Any) -> Served:
        served: Served

        def receive(request: ExportTraceServiceRequest, payload: bytes | None) -> int:
            served.requests.append(request)
            return 1

        options.setdefault("max_bytes", LIMIT)
        options.setdefault("read_timeout", 30.0)
        receiver = HttpReceiver("127.0.0.1", 0, receive, **options)
        served = Served(receiver)
        receiver.start()
        started.append(receiver)
        return served

    yield start
    for receiver in started:
        receiver.stop()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)


def read_response(sock: socket.socket, *, interim: list[int] | None = None) -> Response:
    """One response off a raw socket (interim 1xx responses skipped, their codes kept in ``interim``)."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"the connection was closed without an answer (after {buffer!r})")
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if status >= 200:
            break
        if interim is not None:
            interim.append(status)
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            raise AssertionError("the connection was closed inside the answer")
        buffer += data
    return Response(status, headers, buffer[:length])


def closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (it answers at once when it does; a live one times out)."""
    sock.settimeout(5.0)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def exchange(port: int, data: bytes) -> tuple[Response, bool]:
    """Send raw bytes, read the answer; and whether the connection was then closed."""
    with connect(port) as sock:
        sock.sendall(data)
        response = read_response(sock)
        return response, closed(sock)


def head(*lines: str, path: str = "/v1/traces") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, at = b"", 0
    for size in sizes:
        piece = body[at : at + size]
        at += size
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    rest = body[at:]
    if rest:
        out += f"{len(rest):X}\r\n".encode() + rest + b"\r\n"
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


def one_line(body: bytes) -> bool:
    return body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) < 400


def post(
    port: int, body: Any, headers: dict[str, str] | None = None, *, conn: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    """A POST through ``http.client`` (a fresh connection unless given one)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PROTOBUF, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


# --- chunked bodies -----------------------------------------------------------------------------------------


def test_a_chunked_body_is_read_and_its_spans_received(serve: Callable[..., Served]) -> None:
    served = serve()
    body = request_bytes("chunked")
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Transfer-Encoding: chunked") + chunked(body, [1, 7, 3]))
        assert read_response(sock).status == 200
        # The same connection goes on: the chunks were not read as a request of their own.
        second = request_bytes("after")
        sock.sendall(head(f"Content-Type: {PROTOBUF}", f"Content-Length: {len(second)}") + second)
        assert read_response(sock).status == 200
    assert served.names() == ["chunked", "after"]

    # http.client sends an iterable body chunked; gzip inside chunks too.
    assert post(served.port, iter([body[:5], body[5:]]))[0] == 200
    packed = gzip.compress(request_bytes("gzip-chunked"))
    status, _ = post(served.port, iter([packed[:10], packed[10:]]), {"Content-Encoding": "gzip"})
    assert status == 200
    assert served.names()[-2:] == ["chunked", "gzip-chunked"]


def test_a_chunked_body_reaches_a_real_processor(tmp_path: Path, running: Callable[..., Processor]) -> None:
    processor = running(config(tmp_path))
    assert processor.http is not None
    status, _ = post(processor.http.port, iter([request_bytes("through")[:4], request_bytes("through")[4:]]))
    assert status == 200
    wait_for(lambda: bool(processor.store.recent_traces()))
    [trace] = processor.store.recent_traces()
    stored = ExportTraceServiceRequest.FromString(trace.spans)
    assert [s.name for rs in stored.resource_spans for ss in rs.scope_spans for s in ss.spans] == ["through"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_chunked_upload(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve(max_bytes=4096)
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(request_bytes("curl"))
    big.write_bytes(request_bytes("x" * 200, spans=40))  # over 4096 bytes

    def curl(path: Path) -> str:
        result = subprocess.run(
            [
                *("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked"),
                *("-H", f"Content-Type: {PROTOBUF}", "--data-binary", f"@{path}"),
                f"http://127.0.0.1:{served.port}/v1/traces",
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        return result.stdout

    assert curl(small) == "200"
    assert curl(big) == "413"
    assert served.names() == ["curl"]


def test_a_chunked_body_over_the_limit_is_413_as_soon_as_it_passes(serve: Callable[..., Served]) -> None:
    served = serve(max_bytes=4096)
    with connect(served.port) as sock:
        # 3000 bytes, then a chunk announced as 2000 more whose data never comes: the answer comes anyway.
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Transfer-Encoding: chunked"))
        sock.sendall(b"bb8\r\n" + b"\0" * 3000 + b"\r\n7d0\r\n")
        response = read_response(sock)
        assert response.status == 413 and b"limit of 4096" in response.body and one_line(response.body)
        assert closed(sock)
    assert served.requests == []


def test_a_body_of_many_tiny_chunks_is_413_at_a_bound_on_the_chunks(serve: Callable[..., Served]) -> None:
    """Framing costs time and memory too: 2,000 one-byte chunks under a 64 KiB limit are refused at chunk
    1,025 (at most one chunk per 64 bytes of the limit, and never fewer than 1,024), before the rest."""
    served = serve(max_bytes=64 * 1024)
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Transfer-Encoding: chunked"))
        sock.sendall(b"1\r\n\0\r\n" * 2000)
        response = read_response(sock)
        assert response.status == 413 and b"chunks" in response.body and one_line(response.body)
    assert served.requests == []


# --- framing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        (["Content-Length: -1"], b"", 400),
        (["Content-Length: abc"], b"abc", 400),
        (["Content-Length: +5"], b"12345", 400),
        (["Content-Length: 0x10"], b"", 400),
        (["Content-Length: 5, 6"], b"123456", 400),
        (["Content-Length: 5", "Content-Length: 6"], b"123456", 400),
        (["Content-Length: 5", "Transfer-Encoding: chunked"], b"5\r\n12345\r\n0\r\n\r\n", 400),
        (["Transfer-Encoding: gzip"], b"", 400),
        (["Transfer-Encoding: chunked, chunked"], b"", 400),
        (["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n", 501),
        (["Transfer-Encoding: chunked"], b"zz\r\n", 400),  # not a chunk size
        (["Transfer-Encoding: chunked"], b"-1\r\n", 400),
        (["Transfer-Encoding: chunked"], b"3\r\nabcX\r\n", 400),  # chunk data not followed by CRLF
        (["Transfer-Encoding: chunked"], b"3\nabc\n0\n\n", 400),  # bare LF
        (["Transfer-Encoding: chunked"], b"f" * 5000 + b"\r\n", 400),  # a chunk-size line too long
    ],
)
def test_lengths_that_lie_or_conflict_are_answered_400(
    serve: Callable[..., Served], headers: list[str], body: bytes, status: int
) -> None:
    served = serve()
    response, was_closed = exchange(served.port, head(f"Content-Type: {PROTOBUF}", *headers) + body)
    assert response.status == status and one_line(response.body), response
    assert was_closed  # the framing is not trusted: nothing more is read from this connection
    assert served.requests == []


def test_a_body_shorter_than_its_length_is_answered(serve: Callable[..., Served]) -> None:
    served = serve()
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Content-Length: 100") + b"only this")
        sock.shutdown(socket.SHUT_WR)
        response = read_response(sock)
    assert response.status == 400 and b"ended after 9 of its 100 bytes" in response.body
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Transfer-Encoding: chunked") + b"5\r\nab")
        sock.shutdown(socket.SHUT_WR)
        assert read_response(sock).status == 400


def test_equal_repeated_lengths_are_one(serve: Callable[..., Served]) -> None:
    served = serve()
    body = request_bytes()
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", f"Content-Length: {len(body)}, {len(body)}") + body)
        assert read_response(sock).status == 200
    assert len(served.requests) == 1


def test_a_length_over_the_limit_is_413_before_the_body(serve: Callable[..., Served]) -> None:
    served = serve(max_bytes=4096)
    response, was_closed = exchange(served.port, head(f"Content-Type: {PROTOBUF}", "Content-Length: 42000000"))
    assert response.status == 413 and b"over the limit of 4096" in response.body and was_closed
    # With Expect: 100-continue the client is told before it sends the body, and never asked for it.
    interim: list[int] = []
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Content-Length: 42000000", "Expect: 100-continue"))
        response = read_response(sock, interim=interim)
    assert response.status == 413 and interim == []
    # An acceptable one is asked for its body.
    body = request_bytes()
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", f"Content-Length: {len(body)}", "Expect: 100-continue"))
        interim_head = b""
        while not interim_head.endswith(b"\r\n\r\n"):
            interim_head += sock.recv(1)
        assert interim_head.startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        assert read_response(sock).status == 200


def test_a_refused_request_with_a_body_is_not_read_as_the_next_request(serve: Callable[..., Served]) -> None:
    served = serve(bearer_token="s3cret")
    smuggled = head(f"Content-Type: {PROTOBUF}", "Authorization: Bearer s3cret", "Content-Length: 0")
    for path, status in (("/elsewhere", 404), ("/v1/traces", 401)):
        request = head(f"Content-Type: {PROTOBUF}", f"Content-Length: {len(smuggled)}", path=path) + smuggled
        response, was_closed = exchange(served.port, request)
        assert response.status == status and was_closed
    assert served.requests == []


# --- content codings ----------------------------------------------------------------------------------------


def _bomb(size: int, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = b"\0" * (1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(size // len(zeros))) + packer.flush()


@pytest.mark.parametrize(("coding", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_a_decompression_bomb_is_413_without_inflating_it(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch, coding: str, wbits: int
) -> None:
    served = serve(max_bytes=1024 * 1024)
    bomb = _bomb(64 * 1024 * 1024, wbits)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 1024 * 1024
    inflated: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args: Any) -> None:
            self._inflater = real(*args)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._inflater.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inflater, name)

    monkeypatch.setattr(http_wire.zlib, "decompressobj", Counting)
    status, body = post(served.port, bomb, {"Content-Encoding": coding})
    assert status == 413 and b"over the limit of 1048576 bytes once decompressed" in body and one_line(body)
    assert 0 < sum(inflated) <= 1024 * 1024 + 1  # stopped at the limit, not after inflating 64 MiB
    assert served.requests == []


def test_bad_compressed_bodies_are_400_and_the_connection_goes_on(serve: Callable[..., Served]) -> None:
    served = serve()
    packed = gzip.compress(request_bytes())
    corrupt = packed[:12] + bytes(b ^ 0x55 for b in packed[12:20]) + packed[20:]
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=DEADLINE)
    for body, coding in (
        (packed[:-6], "gzip"),  # truncated
        (packed[: len(packed) // 2], "gzip"),
        (corrupt, "gzip"),
        (b"not gzip at all", "gzip"),
        (b"", "gzip"),
        (zlib.compress(request_bytes()) + b"junk", "deflate"),
        (b"\x78\x9c garbage", "deflate"),
    ):
        status, answer = post(served.port, body, {"Content-Encoding": coding}, conn=conn)
        assert status == 400 and one_line(answer), (body, answer)
        assert post(served.port, request_bytes(), conn=conn)[0] == 200  # the same connection still works
    conn.close()
    status, answer = post(served.port, packed, {"Content-Encoding": "br"})
    assert status == 415 and b"gzip, deflate" in answer
    accepted = [
        (packed, "gzip"),
        (packed, "x-gzip"),
        (packed + gzip.compress(b""), "gzip"),  # two gzip members
        (zlib.compress(request_bytes()), "deflate"),
        (request_bytes(), "identity"),
    ]
    for body, coding in accepted:
        assert post(served.port, body, {"Content-Encoding": coding})[0] == 200, coding


# --- bodies no decoder takes --------------------------------------------------------------------------------


def _deep_protobuf(levels: int) -> bytes:
    """A request whose resource has an attribute whose value is a kvlist of a kvlist of ... ``levels`` deep."""
    key_value = b"\x0a\x01k"
    for _ in range(levels):
        any_value = _field(6, _field(1, key_value))  # AnyValue.kvlist_value, KeyValueList.values
        key_value = b"\x0a\x01k" + _field(2, any_value)  # KeyValue.key, KeyValue.value
    return _field(1, _field(1, _field(1, key_value)))  # resource_spans, resource, attributes


def _field(number: int, data: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"resourceSpans":' * 100_000 + b"[]" + b"}" * 100_000, "application/json"),
        (rb'{"resourceSpans":[{"\ud800":1}]}', "application/json"),
        (b'{"resourceSpans": [\xff]}', "application/json"),
        (b"\xff\xfe not protobuf", PROTOBUF),
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF),
    ],
    ids=["deep-array", "deep-object", "lone-surrogate-key", "not-utf8", "not-protobuf", "huge-length"],
)
def test_undecodable_bodies_are_400(
    serve: Callable[..., Served], capfd: pytest.CaptureFixture[str], body: bytes, content_type: str
) -> None:
    served = serve(max_bytes=4 * 1024 * 1024)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=DEADLINE)
    status, answer = post(served.port, body, {"Content-Type": content_type}, conn=conn)
    assert status == 400 and answer.startswith(b"not an OTLP ExportTraceServiceRequest") and one_line(answer)
    assert post(served.port, request_bytes(), conn=conn)[0] == 200  # answered, and the connection goes on
    conn.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_protobuf_nested_too_deep_is_400(serve: Callable[..., Served]) -> None:
    served = serve(max_bytes=4 * 1024 * 1024)
    status, answer = post(served.port, _deep_protobuf(3000))
    assert status == 400 and one_line(answer)


@pytest.mark.parametrize(
    "error",
    [RecursionError("deep"), SystemError("upb"), UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x"), OverflowError],
)
def test_whatever_the_decoder_raises_is_400(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], error: Any
) -> None:
    """The receiver does not rely on ``request_from_json`` raising only ValueError."""

    def broken(_text: str) -> ExportTraceServiceRequest:
        raise error

    monkeypatch.setattr(http_wire, "request_from_json", broken)
    served = serve()
    status, answer = post(served.port, b"{}", {"Content-Type": "application/json"})
    assert status == 400 and one_line(answer)
    assert "Traceback" not in capfd.readouterr().err


def test_json_is_answered_in_json(serve: Callable[..., Served]) -> None:
    served = serve()
    as_json = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "03" * 16, "name": "j"}]}]}]})
    status, answer = post(served.port, as_json.encode(), {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200 and json.loads(answer) == {} and served.names() == ["j"]


# --- stalled clients ----------------------------------------------------------------------------------------


def test_stalled_clients_are_cut_after_the_read_timeout(serve: Callable[..., Served]) -> None:
    served = serve(read_timeout=0.5)
    # Headers, then nothing: 408.
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Content-Length: 100"))
        response = read_response(sock)
        assert response.status == 408 and one_line(response.body) and closed(sock)
    # Half a request line, then nothing: 408.
    with connect(served.port) as sock:
        sock.sendall(b"POST /v1/tr")
        assert read_response(sock).status == 408
    # A body trickled a byte at a time, each well within the timeout: cut all the same.
    with connect(served.port) as sock:
        sock.sendall(head(f"Content-Type: {PROTOBUF}", "Content-Length: 1000"))
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.05):
                try:
                    sock.send(b"\0")
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            assert read_response(sock).status == 408
        finally:
            stop.set()
            sender.join()
    # Connected, nothing sent: closed without an answer.
    with connect(served.port) as sock:
        assert sock.recv(100) == b""
    assert served.requests == []
    assert post(served.port, request_bytes())[0] == 200  # the receiver is unaffected


def test_stop_ends_idle_connections(serve: Callable[..., Served]) -> None:
    served = serve(read_timeout=120.0)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=DEADLINE)
    assert post(served.port, request_bytes(), conn=conn)[0] == 200  # kept alive, idle
    started = time.monotonic()
    served.receiver.stop()
    assert time.monotonic() - started < DEADLINE  # not the 120 s read timeout
    conn.close()


def test_connections_are_bounded(serve: Callable[..., Served]) -> None:
    served = serve(max_connections=2)
    holders = [connect(served.port) for _ in range(2)]
    for sock in holders:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\n")  # half a request: each holds its connection
    with connect(served.port) as sock:
        response = read_response(sock)
    assert response.status == 503 and response.headers.get("retry-after") == "1"
    for sock in holders:
        sock.close()

    def accepted() -> bool:
        try:
            return post(served.port, request_bytes())[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    wait_for(accepted, timeout=DEADLINE)


# --- TLS ----------------------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
                *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def test_https_with_a_self_signed_certificate(serve: Callable[..., Served], tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    served = serve(ssl_context=tls_context(cert, key), read_timeout=2.0)
    client = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, timeout=DEADLINE, context=client)
    assert post(served.port, request_bytes("tls"), conn=conn)[0] == 200
    packed = gzip.compress(request_bytes("tls-chunked"))
    assert post(served.port, iter([packed[:7], packed[7:]]), {"Content-Encoding": "gzip"}, conn=conn)[0] == 200
    conn.close()
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, timeout=DEADLINE, context=client)
    status, answer = post(served.port, b"\0" * (LIMIT + 1), conn=conn)
    assert status == 413
    conn.close()
    assert served.names() == ["tls", "tls-chunked"]

    # Plain HTTP to the HTTPS port is refused, in clear text; nothing is received.
    status, answer = post(served.port, request_bytes("plain"))
    assert status == 400 and b"HTTPS" in answer
    # A client that does not trust the certificate fails its handshake.
    untrusting = http.client.HTTPSConnection(
        "127.0.0.1", served.port, timeout=DEADLINE, context=ssl.create_default_context()
    )
    with pytest.raises(ssl.SSLError):
        post(served.port, request_bytes("untrusted"), conn=untrusting)
    untrusting.close()
    # A client that connects and never says hello is dropped after the read timeout.
    with connect(served.port) as sock:
        assert sock.recv(100) == b""
    assert served.names() == ["tls", "tls-chunked"]
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, timeout=DEADLINE, context=client)
    assert post(served.port, request_bytes("still"), conn=conn)[0] == 200
    conn.close()


def test_a_failure_of_the_receiver_itself_is_still_answered(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otel_agent_eval.processor import receivers

    def broken(*_args: Any) -> bytes:
        raise TypeError("a bug")

    monkeypatch.setattr(receivers, "inflate", broken)
    served = serve()
    status, answer = post(served.port, request_bytes())
    assert status == 500 and one_line(answer)
    assert "OTLP/HTTP request failed" in caplog.text  # logged, as a bug is


def test_serve_takes_the_http_read_timeout() -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main
    from otel_agent_eval.processor.command import serve

    ctx = serve.make_context("serve", ["--http-read-timeout", "2.5"])
    assert ctx.params["http_read_timeout"] == 2.5
    result = CliRunner().invoke(main, ["serve", "--http-read-timeout", "0"])
    assert result.exit_code == 2 and "--http-read-timeout" in result.stderr
