"""What keeps ``serve`` safe to run: its settings checked before anything starts, the bearer token on every
gRPC method, TLS files that are whole, a private data directory that one processor holds at a time.

Every refusal is a :class:`StartupError` naming the flag, the file or the address; ``serve`` exits 2 with it.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import socket
import ssl
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

import grpc

logger = logging.getLogger(__name__)

LOCK_NAME = "agent-eval.lock"
DB_NAME = "agent-eval.sqlite"
OWN_PREFIX = "agent-eval"
"""Files of the processor in its data directory all start with this (the database, its WAL and shared-memory
files, the lock)."""


class StartupError(ValueError):
    """A setting, a file or an address ``serve`` cannot start with; the message names it."""


# --- addresses ------------------------------------------------------------------------------------------------


def check_endpoint(value: str, flag: str) -> tuple[str, int]:
    """``(host, port)`` of a listening address ``HOST:PORT`` (``[::1]:4317`` for IPv6; port 0: any free one).

    >>> check_endpoint("[::1]:4317", "--grpc-endpoint")
    ('::1', 4317)
    >>> check_endpoint("localhost:abc", "--grpc-endpoint")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    otel_agent_eval.processor.security.StartupError: --grpc-endpoint 'localhost:abc': the port 'abc' is not a number ...
    """
    host, sep, port = value.strip().rpartition(":")
    where = f"{flag} {value!r}"
    if not sep:
        raise StartupError(f"{where}: expected HOST:PORT (e.g. 127.0.0.1:4317)")
    if not port.isascii() or not port.isdigit():
        raise StartupError(f"{where}: the port {port!r} is not a number (HOST:PORT, a port in 0..65535)")
    number = int(port)
    if number > 65535:
        raise StartupError(f"{where}: the port {number} is not in 0..65535")
    if host.startswith("[") != host.endswith("]"):
        raise StartupError(f"{where}: an IPv6 host goes in brackets, e.g. [::1]:4317")
    bare = host[1:-1] if host.startswith("[") else host
    if ":" in bare and not host.startswith("["):
        raise StartupError(f"{where}: an IPv6 host goes in brackets, e.g. [::1]:4317")
    if any(c.isspace() or c in "/?#@" for c in bare):
        raise StartupError(f"{where}: {bare!r} is not a host name or address")
    return bare or "127.0.0.1", number


def check_downstream(value: str) -> None:
    """The downstream's URL has a scheme ``serve`` can send with, a host and, if it names one, a numeric port
    in 1..65535."""
    url = urlparse(value if "://" in value else f"grpc://{value}")
    where = f"--downstream {value!r}"
    if url.scheme not in ("grpc", "grpcs", "http", "https"):
        raise StartupError(f"{where}: use grpc://HOST:PORT, grpcs://, http://HOST:PORT or https://HOST:PORT")
    if not url.hostname:
        raise StartupError(f"{where}: no host (grpc://HOST:PORT or http(s)://HOST:PORT[/v1/traces])")
    try:
        port = url.port
    except ValueError:
        raw = url.netloc.rpartition(":")[2]
        problem = f"the port {raw} is not in 1..65535" if raw.isdigit() else f"the port {raw!r} is not a number"
        raise StartupError(f"{where}: {problem}") from None
    if port == 0:
        raise StartupError(f"{where}: port 0 is not an address to send to")


def listen_failure(what: str, host: str, port: int) -> StartupError:
    """The error for an address that cannot be listened on, with the system's reason when a probe finds it."""
    reason = "the address is in use or not available here"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        infos, reason = [], f"cannot resolve {host!r}: {exc.strerror or exc}"
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if exc.errno == errno.EADDRINUSE:
                    reason += " (another process listens there: another serve?)"
    shown = f"[{host}]" if ":" in host else host
    return StartupError(f"cannot listen for {what} on {shown}:{port}: {reason}")


# --- TLS --------------------------------------------------------------------------------------------------------


def load_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """``(certificate chain, private key)`` as PEM, or None without TLS. Both or neither; each readable, the
    certificate a PEM certificate, the key a PEM private key (not encrypted) that matches it."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        path = cert if cert is not None else key
        raise StartupError(f"{given} {path} without {missing}: TLS needs both (or neither, for plaintext)")
    data = {}
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            data[flag] = path.read_bytes()
        except OSError as exc:
            raise StartupError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data["--tls-cert"]:
        raise StartupError(f"--tls-cert {cert}: not a PEM certificate (no BEGIN CERTIFICATE block)")
    if b"PRIVATE KEY-----" not in data["--tls-key"]:
        raise StartupError(f"--tls-key {key}: not a PEM private key (no BEGIN ... PRIVATE KEY block)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cadata=data["--tls-cert"].decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise StartupError(f"--tls-cert {cert}: not a valid PEM certificate: {exc}") from None
    try:
        context.load_cert_chain(cert, key, password=b"")  # an encrypted key fails here, never prompts
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(
            f"--tls-key {key}: not an unencrypted private key matching --tls-cert {cert}: {exc}"
        ) from None
    return data["--tls-cert"], data["--tls-key"]


# --- the bearer token on every gRPC method ---------------------------------------------------------------------


def token_ok(expected: str | None, header: str | None) -> bool:
    """``header`` is ``Bearer <expected>`` (compared in constant time); always true without a token."""
    if not expected:
        return True
    return header is not None and hmac.compare_digest(header.encode(), f"Bearer {expected}".encode())


def _refuse(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")


if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:  # not subscriptable at run time
    _ServerInterceptor = grpc.ServerInterceptor


class BearerTokenInterceptor(_ServerInterceptor):
    """Every method of the server (OTLP ``Export``, the evaluation service, any added later) answers
    ``UNAUTHENTICATED`` unless the call carries ``authorization: Bearer <token>``, before its handler runs
    (the request is not even parsed)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        header = next(
            (
                value
                for name, value in (handler_call_details.invocation_metadata or ())
                if name == "authorization" and isinstance(value, str)
            ),
            None,
        )
        if token_ok(self._token, header):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        streaming_in = handler is not None and handler.request_streaming
        streaming_out = handler is not None and handler.response_streaming
        if streaming_in and streaming_out:
            return grpc.stream_stream_rpc_method_handler(_refuse)
        if streaming_in:
            return grpc.stream_unary_rpc_method_handler(_refuse)
        if streaming_out:
            return grpc.unary_stream_rpc_method_handler(_refuse)
        return grpc.unary_unary_rpc_method_handler(_refuse)


# --- the data directory ----------------------------------------------------------------------------------------


def prepare_data_dir(directory: Path) -> None:
    """The data directory made private: created 0700; the processor's files in it (the SQLite database, its WAL
    and shared-memory files, the lock) 0600, the database created 0600 before SQLite opens it (SQLite gives its
    WAL and SHM files the database's mode).

    An existing directory open to others (group or world bits) is tightened to 0700, with a warning, when it is
    the processor's own: owned by this user and holding nothing but the processor's files. Otherwise (a shared
    directory such as a home or /tmp) its mode is left alone, with a warning: the files in it are still 0600."""
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            os.chmod(directory, 0o700)  # whatever the umask
        info = directory.stat()
    except OSError as exc:
        raise StartupError(f"--data-dir {directory}: cannot create it: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise StartupError(f"--data-dir {directory}: not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        others = sorted(p.name for p in directory.iterdir() if not p.name.startswith(OWN_PREFIX))
        if info.st_uid == os.getuid() and not others:
            os.chmod(directory, 0o700)
            logger.warning("data directory %s was mode %04o (open to others): tightened to 0700", directory, mode)
        else:
            logger.warning(
                "data directory %s is mode %04o (open to others) and %s: left as it is; the processor's files in "
                "it are 0600. Give serve a directory of its own (--data-dir)",
                directory,
                mode,
                "holds other files" if others else "belongs to another user",
            )
    for path in directory.iterdir():
        if path.name.startswith(OWN_PREFIX) and path.is_file() and not path.is_symlink():
            file_mode = stat.S_IMODE(path.stat().st_mode)
            if file_mode & 0o077:
                os.chmod(path, 0o600)
                logger.warning("%s was mode %04o: tightened to 0600", path, file_mode)
    database = directory / DB_NAME
    if not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))  # an empty file is an empty database


class DataDirLock:
    """An exclusive lock on the data directory (``flock`` on ``agent-eval.lock``, which holds the holder's PID),
    held while the processor runs: a second ``serve`` on the same directory is refused, naming the first's PID.
    The kernel releases it when the process dies, even by ``kill -9``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._file: IO[bytes] | None = None
        if sys.platform == "win32":  # pragma: no cover - no flock; the processor runs on POSIX systems
            logger.warning("no lock on the data directory on this platform: run one serve per --data-dir")
            return
        import fcntl

        try:
            handle = open(self.path, "a+b", opener=lambda p, flags: os.open(p, flags, 0o600))  # noqa: SIM115
        except OSError as exc:
            raise StartupError(f"--data-dir {directory}: cannot create {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(handle.fileno(), 32, 0).decode("ascii", "replace").strip()
            handle.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StartupError(f"--data-dir {directory}: cannot lock {self.path}: {exc.strerror}") from None
            raise StartupError(
                f"--data-dir {directory} is in use by another otel-agent-eval serve "
                f"(pid {holder or 'unknown'}, holding {self.path}): stop it, or give this one another --data-dir"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the directory up (the file stays: removing it would let two processes lock different files)."""
        if self._file is not None:
            self._file.truncate(0)
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
