"""OTLP receivers: gRPC (``TraceService/Export``) and HTTP (``POST /v1/traces``, protobuf or JSON).

Both parse the request themselves, so a malformed one gets a clear error (gRPC ``INVALID_ARGUMENT``, HTTP 400)
naming what is wrong, and other clients are unaffected. Oversized payloads get ``RESOURCE_EXHAUSTED`` / 413, a
wrong content type 415, a missing or wrong bearer token ``UNAUTHENTICATED`` / 401.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import ssl
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .http_wire import (
    PIECE,
    BodyError,
    BoundedHTTPServer,
    DeadlineReader,
    Stalled,
    body_length,
    content_coding,
    decode_request,
    has_body,
    inflate,
    linger,
    raw_response,
    read_body,
    start_tls,
)
from .pipeline import Backpressure
from .security import BearerTokenInterceptor, check_endpoint, listen_failure
from .settings import Component, setting
from .validation import InvalidRequest


@dataclass(frozen=True)
class ReceiversConfig(Component):
    """The OTLP receivers (gRPC, HTTP) and the in-loop evaluation service on the gRPC port: addresses, limits,
    the token and TLS."""

    section = "receivers"
    grpc_endpoint: str | None = setting("127.0.0.1:4317", "OTLP/gRPC receiver address ('' to turn off).")
    http_endpoint: str | None = setting("127.0.0.1:4318", "OTLP/HTTP receiver address ('' to turn off).")
    max_payload_bytes: int = setting(16 * 1024 * 1024, "Largest request accepted.", minimum=1)
    http_read_timeout: float = setting(
        10.0,
        "Seconds a client has to send a whole HTTP request, from its first byte; also how long an idle "
        "connection stays open.",
        minimum=0,
        min_open=True,
    )
    bearer_token: str | None = setting(
        None,
        "Require 'Authorization: Bearer TOKEN' on every gRPC method (OTLP Export and the evaluation service) "
        "and on POST /v1/traces; /metrics, /healthz and /readyz stay open.",
        secret=True,
    )
    tls_cert: Path | None = setting(
        None,
        "PEM certificate for the gRPC and HTTP receivers (with --tls-key): TLS on both, HTTPS only on HTTP.",
    )
    tls_key: Path | None = setting(None, "PEM private key.")
    service_max_concurrency: int = setting(
        4,
        "Evaluation service calls (and open sessions) at once; beyond, RESOURCE_EXHAUSTED at once. They have "
        "gRPC threads of their own: OTLP ingestion is never starved by them.",
        minimum=1,
    )
    service_max_messages: int = setting(
        5_000, "Messages of history in one evaluation service request at most (RESOURCE_EXHAUSTED beyond).", minimum=1
    )
    service_max_request_bytes: int = setting(
        4 * 1024 * 1024, "Bytes of one evaluation service request at most (RESOURCE_EXHAUSTED beyond).", minimum=1
    )

    def validate(self) -> None:
        super().validate()
        for flag, endpoint in (("--grpc-endpoint", self.grpc_endpoint), ("--http-endpoint", self.http_endpoint)):
            if endpoint:
                check_endpoint(endpoint, flag)


logger = logging.getLogger(__name__)

Receive = Callable[[ExportTraceServiceRequest, bytes | None], int]
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _token_ok(expected: str | None, header: str | None) -> bool:
    if not expected:
        return True
    return header is not None and hmac.compare_digest(header.encode(), f"Bearer {expected}".encode())


class GrpcReceiver:
    def __init__(
        self,
        endpoint: str,
        receive: Receive,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        bearer_token: str | None = None,
        tls: tuple[bytes, bytes] | None = None,
        workers: int = 8,
    ) -> None:
        self._receive = receive
        self._token = bearer_token
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agent-eval-grpc"),
            # The token guards every method on this server (the evaluation service too), before its handler.
            interceptors=[BearerTokenInterceptor(bearer_token)] if bearer_token else None,
            # No SO_REUSEPORT: a second serve on the same port is refused, not handed half the connections.
            options=[("grpc.max_receive_message_length", max_bytes), ("grpc.so_reuseport", 0)],
        )
        handler = grpc.unary_unary_rpc_method_handler(
            self._export,
            request_deserializer=lambda raw: raw,  # parsed in _export, to answer bad input clearly
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        try:
            if tls is not None:
                credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
                self.port = self.server.add_secure_port(endpoint, credentials)
            else:
                self.port = self.server.add_insecure_port(endpoint)
        except RuntimeError:  # gRPC's "Failed to bind": the probe finds the system's reason
            self.port = 0
        if not self.port:
            raise listen_failure("OTLP/gRPC", *check_endpoint(endpoint, "--grpc-endpoint"))
        self.endpoint = endpoint.rsplit(":", 1)[0] + f":{self.port}"

    def _export(self, raw: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if not _token_ok(self._token, metadata.get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            request = ExportTraceServiceRequest.FromString(raw)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not an OTLP ExportTraceServiceRequest: {exc}")
        try:
            self._receive(request, raw)
        except InvalidRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Backpressure as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception:
            logger.exception("could not take an export request")
            context.abort(grpc.StatusCode.UNAVAILABLE, "the processor could not store the request; retry")
        return ExportTraceServiceResponse()

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()


class HttpReceiver:
    """OTLP/HTTP on ``/v1/traces``; also serves ``/healthz``, ``/readyz`` and, if given, ``/metrics``.

    The body is read by :mod:`.http_wire`: ``Content-Length`` or chunked framing read strictly, the payload
    limit applied as the body arrives and as it inflates (gzip, deflate), a request cut when it has not arrived
    ``read_timeout`` seconds after its first byte (408), every bad request answered with a 4xx and a one-line
    message. With ``ssl_context`` (:func:`.http_wire.tls_context` makes one from PEM files) it serves HTTPS
    only. At most ``max_connections`` connections are served at once (beyond: 503, retryable).
    """

    def __init__(
        self,
        host: str,
        port: int,
        receive: Receive | None,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        bearer_token: str | None = None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        ready: Callable[[], bool] = lambda: True,
        ssl_context: ssl.SSLContext | None = None,
        read_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        if read_timeout <= 0 or max_connections < 1:
            raise ValueError("read_timeout must be positive and max_connections at least 1")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = read_timeout
            server: BoundedHTTPServer
            _reader: DeadlineReader
            _unread_body = False  # the request has a body not read to its end: closing, after lingering
            _plan: tuple[int | None, str, bool] | None = None
            _answered = False  # a response was begun

            def log_message(self, format: str, *args: Any) -> None:  # access logs would carry no content, but are noise
                return

            def setup(self) -> None:
                if ssl_context is not None:
                    self.request = start_tls(self.request, ssl_context, read_timeout)
                super().setup()
                self.rfile.close()
                self._reader = DeadlineReader(self.connection, read_timeout, self.server.closing)
                self.rfile = io.BufferedReader(self._reader, PIECE)
                with self.server.readers_lock:
                    self.server.readers.add(self._reader)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with self.server.readers_lock:
                        self.server.readers.discard(self._reader)
                    if self._unread_body:
                        linger(self.connection)
                    if ssl_context is not None:
                        self.connection.close()  # the server closes the plain socket it accepted, not this one

            def handle_one_request(self) -> None:
                self._reader.begin()
                self._unread_body = False
                self._answered = False
                self._plan = None
                try:
                    super().handle_one_request()
                except Stalled:
                    self.close_connection = True
                    self._unread_body = True  # a trickle may go on: linger, so that the answer is not reset away
                    with contextlib.suppress(OSError):
                        self.wfile.write(raw_response(408, f"the request did not arrive within {read_timeout:g} s"))
                except OSError:  # reset, broken pipe, TLS error: nobody to answer
                    self.close_connection = True
                    self._unread_body = False
                except Exception:  # a bug of ours: logged, and the client still answered
                    logger.exception("OTLP/HTTP request failed")
                    self.close_connection = True
                    if not self._answered:
                        self._unread_body = True
                        with contextlib.suppress(OSError):
                            self.wfile.write(raw_response(500, "the receiver failed on this request"))

            def handle_expect_100(self) -> bool:
                if self.command == "POST":  # refused before the client sends the body it holds back
                    self._unread_body = has_body(self.headers)
                    try:
                        self._plan = self._check()
                    except BodyError as exc:
                        self._refuse(exc)
                        return False
                return super().handle_expect_100()

            def _send(
                self,
                code: int,
                body: bytes,
                content_type: str = "text/plain; charset=utf-8",
                headers: dict[str, str] | None = None,
            ) -> None:
                self._answered = True
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if self._unread_body:  # what follows would be read as a request
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self, error: BodyError) -> None:
                body = f"{error.message}\n".encode("utf-8", "backslashreplace")
                self._send(error.status, body, headers=error.headers)

            def _check(self) -> tuple[int | None, str, bool]:
                """What is known from the headers: the body's length (``None``: chunked), its content coding,
                whether it is JSON; :class:`BodyError` for a request refused before its body is read."""
                if self.path != "/v1/traces" or receive is None:
                    raise BodyError(404, "not found: POST OTLP traces to /v1/traces")
                if not _token_ok(bearer_token, self.headers.get("Authorization")):
                    raise BodyError(401, "missing or wrong bearer token")
                length = body_length(self.headers, max_bytes, self.request_version)
                coding = content_coding(self.headers)
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if content_type not in ("application/x-protobuf", "application/json"):
                    raise BodyError(415, "Content-Type must be application/x-protobuf or application/json")
                return length, coding, content_type == "application/json"

            def do_GET(self) -> None:
                self._unread_body = has_body(self.headers)
                if self.path == "/healthz":
                    self._send(200, b"ok\n")
                elif self.path == "/readyz":
                    ok = ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                elif self.path == "/metrics" and metrics is not None:
                    body, content_type = metrics()
                    self._send(200, body, content_type)
                else:
                    self._send(404, b"not found\n")

            def do_POST(self) -> None:
                self._unread_body = has_body(self.headers)
                try:
                    length, coding, as_json = self._plan or self._check()
                    raw = inflate(read_body(self.rfile, length, max_bytes), coding, max_bytes)
                    self._unread_body = False
                    request, payload = decode_request(raw, as_json)
                except BodyError as exc:
                    self._refuse(exc)
                    return
                assert receive is not None  # _check answered 404 otherwise
                try:
                    receive(request, payload)
                except Backpressure as exc:
                    self._send(503, f"{exc}\n".encode(), headers={"Retry-After": "1"})
                    return
                except InvalidRequest as exc:
                    self._send(400, f"{exc}\n".encode())
                    return
                except Exception:
                    logger.exception("could not take an export request")
                    self._send(503, b"the processor could not store the request; retry\n")
                    return
                if as_json:
                    self._send(200, json.dumps({}).encode(), "application/json")
                else:
                    self._send(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        self.server = BoundedHTTPServer(
            (host, port), Handler, max_connections=max_connections, tls=ssl_context is not None
        )
        self.port = self.server.server_address[1]
        bound = f"[{host}]" if ":" in host else host
        self.endpoint = f"{bound}:{self.port}"  # the bound address (port 0 in the config picks a free one)
        self._thread = threading.Thread(target=self.server.serve_forever, name="agent-eval-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; end idle connections; wait for the requests being received (bounded by the read
        timeout)."""
        self.server.shutdown()
        self.server.server_close()
