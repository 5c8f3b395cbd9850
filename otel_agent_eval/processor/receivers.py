"""OTLP receivers: gRPC (``TraceService/Export``) and HTTP (``POST /v1/traces``, protobuf or JSON).

Both parse the request themselves, so a malformed one gets a clear error (gRPC ``INVALID_ARGUMENT``, HTTP 400)
naming what is wrong, and other clients are unaffected. Oversized payloads get ``RESOURCE_EXHAUSTED`` / 413, a
wrong content type 415, a missing or wrong bearer token ``UNAUTHENTICATED`` / 401.
"""

from __future__ import annotations

import gzip
import hmac
import json
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..otlp_json import request_from_json
from .pipeline import Backpressure
from .security import BearerTokenInterceptor, check_endpoint, listen_failure
from .validation import InvalidRequest

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
    """OTLP/HTTP on ``/v1/traces``; also serves ``/healthz``, ``/readyz`` and, if given, ``/metrics``."""

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
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # access logs would carry no content, but are noise
                return

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
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
                if self.path != "/v1/traces" or receive is None:
                    self._send(404, b"not found: POST OTLP traces to /v1/traces\n")
                    return
                if not _token_ok(bearer_token, self.headers.get("Authorization")):
                    self._send(401, b"missing or wrong bearer token\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > max_bytes:
                    self._send(413, f"payload of {length} bytes is over the limit of {max_bytes}\n".encode())
                    self.close_connection = True
                    return
                raw = self.rfile.read(length)
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    try:
                        raw = gzip.decompress(raw)
                    except OSError:
                        self._send(400, b"Content-Encoding gzip, but the body is not gzip\n")
                        return
                    if len(raw) > max_bytes:
                        self._send(413, f"decompressed payload is over the limit of {max_bytes} bytes\n".encode())
                        return
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                try:
                    if content_type == "application/x-protobuf":
                        request = ExportTraceServiceRequest.FromString(raw)
                        payload: bytes | None = raw
                    elif content_type == "application/json":
                        request = request_from_json(raw.decode("utf-8"))
                        payload = None
                    else:
                        self._send(415, b"Content-Type must be application/x-protobuf or application/json\n")
                        return
                except (DecodeError, ValueError, UnicodeDecodeError) as exc:
                    self._send(400, f"not an OTLP ExportTraceServiceRequest: {exc}\n".encode())
                    return
                try:
                    receive(request, payload)
                except Backpressure as exc:
                    self.send_response(503)
                    body = f"{exc}\n".encode()
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                except InvalidRequest as exc:
                    self._send(400, f"{exc}\n".encode())
                    return
                except Exception:
                    logger.exception("could not take an export request")
                    self._send(503, b"the processor could not store the request; retry\n")
                    return
                response = ExportTraceServiceResponse()
                if content_type == "application/json":
                    self._send(200, json.dumps({}).encode(), "application/json")
                else:
                    self._send(200, response.SerializeToString(), "application/x-protobuf")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"{host}:{self.port}"  # the bound address (port 0 in the config picks a free one)
        self._thread = threading.Thread(target=self.server.serve_forever, name="agent-eval-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
