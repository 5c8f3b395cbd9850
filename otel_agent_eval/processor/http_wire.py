"""The OTLP/HTTP receiver's side of the wire: framing, bounded bodies, bounded inflation, deadlines, TLS.

The standard library's ``http.server`` parses the request line and the headers; the body is read here, strictly
as RFC 9112 says, so that no request is misread and every bad one is answered:

- a body is framed by one ``Content-Length`` (digits only; equal repeated values are one) or by
  ``Transfer-Encoding: chunked``; a negative, non-numeric or conflicting length, both headers at once, or a
  transfer coding other than ``chunked`` is refused (400; 501 for a coding that is not ``chunked``);
- the payload limit applies as the body arrives (a ``Content-Length`` over it, or the chunk that passes it,
  is answered 413 at once) and again as it is inflated: ``gzip`` and ``deflate`` bodies are decompressed in
  bounded steps, never beyond the limit (413), and a truncated or corrupt one is a 400; another
  ``Content-Encoding`` is a 415;
- a request must arrive whole within the read timeout of its first byte (a trickle is cut too, not only
  silence: 408); a connection idle that long is closed;
- the decoders' every failure is a 400 with a one-line message (:func:`decode_request`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from email.message import Message
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..otlp_json import request_from_json

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

PIECE = 64 * 1024
"""Bytes read (and inflated) at a time."""
_LENGTH = re.compile(rb"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_LINE = 4096  # a chunk-size line, with its extensions
_MAX_TRAILER = 16 * 1024
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024
STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 500: "Internal Server Error", 503: "Service Unavailable"}


class BodyError(Exception):
    """A request answered with ``status`` and the one-line ``message``, and not taken."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}


class Stalled(Exception):
    """The client did not send its whole request within the read timeout of its first byte."""


class Dropped(Exception):
    """A connection given up before any request (a TLS handshake that failed, plain HTTP on the HTTPS port)."""


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _values(headers: Message, name: str) -> list[str]:
    """A header's comma-separated values, over all its occurrences, stripped (empty ones kept)."""
    return [part.strip() for value in headers.get_all(name) or [] for part in str(value).split(",")]


def has_body(headers: Message) -> bool:
    """Whether the request says it has a body (then one not read to its end means closing the connection)."""
    return headers.get("Transfer-Encoding") is not None or any(v != "0" for v in _values(headers, "Content-Length"))


def body_length(headers: Message, max_bytes: int, version: str) -> int | None:
    """The body's length from the headers; ``None``: chunked. Raises :class:`BodyError` (400, 413, 501)."""
    lengths = _values(headers, "Content-Length")
    if headers.get("Transfer-Encoding") is not None:
        if lengths:
            raise BodyError(400, "both Content-Length and Transfer-Encoding: the body's length is ambiguous")
        if version == "HTTP/1.0":
            raise BodyError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.lower() for c in _values(headers, "Transfer-Encoding")]
        if not codings or codings[-1] != "chunked" or "" in codings or "chunked" in codings[:-1]:
            raise BodyError(400, f"Transfer-Encoding {', '.join(codings)!r}: chunked must be the final coding, once")
        if len(codings) > 1:
            raise BodyError(
                501, f"Transfer-Encoding {', '.join(codings)} is not supported: chunked only (and Content-Encoding)"
            )
        return None
    if not lengths:
        return 0
    if not all(_LENGTH.fullmatch(v.encode()) for v in lengths):
        raise BodyError(400, f"Content-Length {', '.join(lengths)!r} is not a number of bytes")
    if len({int(v) for v in lengths}) > 1:
        raise BodyError(400, f"conflicting Content-Length values {', '.join(lengths)}")
    length = int(lengths[0])
    if length > max_bytes:
        raise BodyError(413, f"payload of {length} bytes is over the limit of {max_bytes}")
    return length


def content_coding(headers: Message) -> str:
    """``identity``, ``gzip`` or ``deflate``; another coding (or several) is :class:`BodyError` 415."""
    codings = [c.lower() for c in _values(headers, "Content-Encoding") if c and c.lower() != "identity"]
    if not codings:
        return "identity"
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return "deflate" if codings[0] == "deflate" else "gzip"
    raise BodyError(
        415,
        f"Content-Encoding {', '.join(codings)} is not supported: gzip, deflate or none",
        {"Accept-Encoding": "gzip, deflate"},
    )


def read_body(rfile: io.BufferedIOBase, length: int | None, max_bytes: int) -> Iterator[bytes]:
    """The body's bytes as they arrive (``length`` from :func:`body_length`; ``None``: chunked, decoded)."""
    if length is not None:
        yield from _exactly(rfile, length, "the body")
        return
    total = 0
    chunks = 0
    while True:
        line = _line(rfile)
        size_text = line.split(b";", 1)[0].rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise BodyError(400, f"chunked body: bad chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        chunks += 1
        # Framing costs too: a body of many tiny chunks would take far more time and memory than its payload
        # says (millions of 1-byte chunks under a 16 MB limit). One chunk per 64 bytes of limit is plenty for
        # any real client (they send kilobytes a chunk).
        if chunks > max(1024, max_bytes // 64):
            raise BodyError(413, f"chunked body: more than {max(1024, max_bytes // 64)} chunks")
        total += size
        if total > max_bytes:  # refused before the chunk is read
            raise BodyError(413, f"chunked payload is over the limit of {max_bytes} bytes")
        yield from _exactly(rfile, size, "a chunk")
        if rfile.read(2) != b"\r\n":
            raise BodyError(400, "chunked body: chunk data not followed by CRLF")
    trailer = 0
    while line := _line(rfile):  # trailer fields, ignored, up to the empty line
        trailer += len(line)
        if trailer > _MAX_TRAILER:
            raise BodyError(400, "chunked body: trailer section too long")


def _exactly(rfile: io.BufferedIOBase, length: int, what: str) -> Iterator[bytes]:
    left = length
    while left:
        piece = rfile.read(min(left, PIECE))
        if not piece:
            raise BodyError(400, f"{what} ended after {length - left} of its {length} bytes")
        left -= len(piece)
        yield piece


def _line(rfile: io.BufferedIOBase) -> bytes:
    line = rfile.readline(_MAX_LINE + 2)
    if not line:
        raise BodyError(400, "chunked body: the request ended before its last chunk")
    if not line.endswith(b"\r\n"):
        raise BodyError(400, "chunked body: a chunk-size or trailer line too long or not ended by CRLF")
    return line[:-2]


def inflate(pieces: Iterable[bytes], coding: str, max_bytes: int) -> bytes:
    """The payload: the body's pieces joined, decompressed as they come, never beyond ``max_bytes``."""
    if coding == "identity":
        body = bytearray()  # one growing buffer, not a list of many small objects joined at the end
        for piece in pieces:
            body += piece
        return bytes(body)  # the wire limit bounds it already
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS  # HTTP deflate is zlib (RFC 9110)
    out = bytearray()
    inflater = zlib.decompressobj(wbits)
    for piece in pieces:
        data = piece
        while data:
            if inflater.eof:
                if coding != "gzip":
                    raise BodyError(400, "Content-Encoding deflate: data after the end of the stream")
                inflater = zlib.decompressobj(wbits)  # a further gzip member
            try:
                out += inflater.decompress(data, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise BodyError(400, f"Content-Encoding {coding}, but the body is not valid {coding}: {exc}") from None
            if len(out) > max_bytes:
                raise BodyError(413, f"payload is over the limit of {max_bytes} bytes once decompressed ({coding})")
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    if not inflater.eof:
        raise BodyError(400, f"Content-Encoding {coding}, but the body is truncated or not {coding}")
    return bytes(out)


def decode_request(raw: bytes, as_json: bool) -> tuple[ExportTraceServiceRequest, bytes | None]:
    """The request, and its protobuf bytes when it came as protobuf; any failure is :class:`BodyError` 400."""
    try:
        if as_json:
            return request_from_json(raw.decode("utf-8")), None
        return ExportTraceServiceRequest.FromString(raw), raw
    except MemoryError:
        raise BodyError(413, "payload too large to decode") from None
    except RecursionError:
        raise BodyError(400, "not an OTLP ExportTraceServiceRequest: nested too deeply") from None
    except (DecodeError, ValueError) as exc:  # UnicodeError and json's errors are ValueErrors
        raise BodyError(400, f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    except Exception as exc:  # the decoders' own failures (SystemError from upb, ...): still the request's fault
        logger.debug("OTLP/HTTP request not decoded", exc_info=True)
        raise BodyError(400, f"not an OTLP ExportTraceServiceRequest ({type(exc).__name__}: {exc})") from None


def raw_response(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole ``Connection: close`` response, written without the handler (no request parsed, or none to be)."""
    body = f"{one_line(message)}\n".encode("utf-8", "backslashreplace")
    head = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, '')}".rstrip()]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class DeadlineReader(io.RawIOBase):
    """A connection's reading side: a request must arrive whole within ``timeout`` seconds of its first byte (a
    trickle is cut as silence is: :class:`Stalled`); before it, ``timeout`` seconds idle end the connection."""

    def __init__(self, sock: socket.socket, timeout: float, closing: threading.Event) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout
        self.deadline: float | None = None
        self._closing = closing

    def begin(self) -> None:
        """A new request: its clock starts at its first byte."""
        self.deadline = None

    @property
    def started(self) -> bool:
        return self.deadline is not None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.deadline is None:
            if self._closing.is_set():
                return 0  # the server stops: an idle connection ends
            wait = self.timeout
        else:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                raise Stalled
        self.sock.settimeout(wait)
        try:
            received = self.sock.recv_into(buffer)
        except TimeoutError:
            if self.deadline is None:
                return 0  # idle for the whole timeout: end of the connection
            raise Stalled from None
        finally:
            self.sock.settimeout(self.timeout)  # writes get the whole timeout
        if received and self.deadline is None:
            self.deadline = time.monotonic() + self.timeout
        return received

    def wake_if_idle(self) -> None:
        """On stopping: end a connection that waits for its next request (one being received goes on)."""
        if self.deadline is None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.sock, socket.SHUT_RD)  # the fd's, under a TLS layer too


def linger(sock: socket.socket) -> None:
    """Half-close, then read and discard what the client still sends, for a while: closing with unread input
    would reset the connection, and the client might lose the answer it has not read yet."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES and (wait := deadline - time.monotonic()) > 0:
            sock.settimeout(wait)
            data = socket.socket.recv(sock, PIECE)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass


def tls_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (TLS 1.2 at least, ``http/1.1`` by ALPN)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def start_tls(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    """The TLS side of an accepted connection, handshaken in the connection's own thread, never the accepting
    one; plain HTTP is answered 400 in clear text. Raises :class:`Dropped`."""
    sock.settimeout(timeout)
    try:
        first = sock.recv(1, socket.MSG_PEEK)
        if first and first != b"\x16":  # not a TLS handshake record
            sock.sendall(raw_response(400, "this port speaks HTTPS: send the request over TLS (https://)"))
            linger(sock)
        if first != b"\x16":
            raise Dropped("no TLS handshake")
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError as exc:
        raise Dropped(str(exc)) from None
    try:
        tls.do_handshake()
    except OSError as exc:  # ssl.SSLError included
        tls.close()
        raise Dropped(f"TLS handshake failed: {exc}") from None
    return tls


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (beyond: 503 and closed, retryable); quiet
    about connections that fail (logged at debug, never a traceback on stderr); idle connections end on
    ``server_close``, which waits for the requests being received."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, *, max_connections: int, tls: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.closing = threading.Event()
        self.readers: set[DeadlineReader] = set()
        self.readers_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._tls = tls
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if not self._tls:
                try:
                    request.setblocking(False)
                    request.send(raw_response(503, "too many connections; retry", {"Retry-After": "1"}))
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("OTLP/HTTP connection from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        self.closing.set()
        with self.readers_lock:
            readers = list(self.readers)
        for reader in readers:
            reader.wake_if_idle()
        super().server_close()
