"""The remote guard: a gRPC client of the evaluation service, with the in-process guard's ``check``.

>>> guard = RemoteGuard("127.0.0.1:1", timeout=0.05)  # nothing listens there: the guard fails open
>>> guard.check([{"role": "user", "content": "hi"}], {"role": "assistant", "content": "hello"}).action
'allow'
>>> guard.failures
1
>>> guard.close()

A timeout or an unreachable service fails open by default (the step is allowed) or closed with
``fail_closed=True`` (the step is sent back with a critique saying the guard was unreachable). Either way the
failure is counted (``failures``) and recorded as an event ``agent_eval.guard.error`` on the current span.
A service that refuses for its limits (``RESOURCE_EXHAUSTED``: busy, or a history over its size limits) counts
as unreachable the same way. Other errors (``INVALID_ARGUMENT``: a malformed history; ``UNAUTHENTICATED``: a
missing or wrong ``bearer_token``) raise :class:`RemoteGuardError`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import trace

from ..evaluate import Finding
from ..model import ToolDefinition
from ._proto import evaluation_pb2 as pb
from ._proto import evaluation_pb2_grpc as pb_grpc
from .guard import Verdict, _record

UNAVAILABLE_CODES = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


class RemoteGuardError(RuntimeError):
    """The service refused the request (e.g. ``INVALID_ARGUMENT``): a bug in the caller, not an outage."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class RemoteGuard:
    """Checks proposed steps through an evaluation service at ``endpoint`` (``host:port``).

    ``tools`` (OpenAI function dicts or ``ToolDefinition``) and ``policy`` are sent with every request.
    ``timeout`` is the deadline of one check, in seconds. ``bearer_token``: sent as ``authorization: Bearer ...``
    (``serve --bearer-token``); ``root_certificates``: PEM roots to trust, for a service with TLS (``True``:
    the system's roots). ``channel``: a channel of your own instead (then neither applies to it).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 0.05,
        fail_closed: bool = False,
        tools: Sequence[ToolDefinition | Mapping[str, Any]] = (),
        policy: str | None = None,
        agent_name: str = "",
        channel: grpc.Channel | None = None,
        bearer_token: str | None = None,
        root_certificates: bytes | bool | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.fail_closed = fail_closed
        self.policy = policy
        self.agent_name = agent_name
        self.failures = 0
        """How many checks failed for want of the service (timeouts, unreachable)."""
        self._lock = threading.Lock()
        self._tools = [_tool_to_pb(t) for t in ToolDefinition.parse_list(list(tools))]
        self._own_channel = channel is None
        self._metadata = (("authorization", f"Bearer {bearer_token}"),) if bearer_token else ()
        if channel is not None:
            self._channel = channel
        elif root_certificates:
            roots = root_certificates if isinstance(root_certificates, bytes) else None
            self._channel = grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(roots))
        else:
            self._channel = grpc.insecure_channel(endpoint)
        self._stub = pb_grpc.EvaluationServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def check(self, history: Sequence[Mapping[str, Any]], proposed: Mapping[str, Any]) -> Verdict:
        """The verdict on ``proposed`` (an OpenAI-style assistant message) after ``history`` (OpenAI-style
        messages)."""
        started = time.perf_counter()
        request = self.request(history, proposed)
        try:
            response = self._stub.EvaluateStep(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
            if code not in UNAVAILABLE_CODES:
                raise RemoteGuardError(code, details) from None
            return self._unavailable(code, details, time.perf_counter() - started)
        verdict = verdict_from_response(response, time.perf_counter() - started)
        _record(verdict)
        return verdict

    def request(self, history: Sequence[Mapping[str, Any]], proposed: Mapping[str, Any]) -> pb.EvaluateStepRequest:
        """The protocol request for one check."""
        request = pb.EvaluateStepRequest(
            history=[message_to_pb(m) for m in history],
            proposed=message_to_pb({"role": "assistant", **proposed}),
            tools=self._tools,
            agent_name=self.agent_name,
        )
        if self.policy is not None:
            request.policy = self.policy
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            request.trace_id = span.trace_id.to_bytes(16, "big")
            request.span_id = span.span_id.to_bytes(8, "big")
        return request

    def _unavailable(self, code: grpc.StatusCode, details: str, seconds: float) -> Verdict:
        with self._lock:
            self.failures += 1
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "agent_eval.guard.error",
                {
                    "agent_eval.guard.endpoint": self.endpoint,
                    "agent_eval.guard.error.code": code.name,
                    "agent_eval.guard.error.message": details,
                    "agent_eval.guard.fail_closed": self.fail_closed,
                },
            )
        if not self.fail_closed:
            return Verdict("allow", (), seconds)
        finding = Finding(
            mode="evaluator_error",
            step=-1,
            outcome="terminal",
            critique="The step was not executed: the guard that checks steps was unreachable "
            f"({code.name.lower()}); try again shortly.",
            evidence=f"evaluation service {self.endpoint}: {code.name}: {details}",
            evaluator="remote_guard",
            confidence=1.0,
        )
        return Verdict("revise", (finding,), seconds)

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> RemoteGuard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _tool_to_pb(tool: ToolDefinition) -> pb.ToolDefinition:
    return pb.ToolDefinition(
        name=tool.name,
        description=tool.description or "",
        parameters_json=json.dumps(tool.parameters) if tool.parameters else "",
    )


def message_to_pb(message: Mapping[str, Any]) -> pb.Message:
    """An OpenAI-style message dict as a protocol message (content parts are joined into text)."""
    out = pb.Message(role=str(message.get("role", "")))
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    if content is not None:
        out.content = str(content)
    for call in message.get("tool_calls") or ():
        function = call.get("function", call)
        arguments = function.get("arguments", "")
        out.tool_calls.append(
            pb.ToolCall(
                id=str(call.get("id") or ""),
                name=str(function.get("name", "")),
                arguments_json=arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    if message.get("tool_call_id") is not None:
        out.tool_call_id = str(message["tool_call_id"])
    if isinstance(message.get("name"), str):
        out.name = message["name"]
    out.is_error = message.get("error") is True
    return out


def verdict_from_response(response: pb.EvaluateStepResponse, seconds: float) -> Verdict:
    findings = tuple(
        Finding(
            mode=f.mode,
            step=f.step,
            outcome="recovered" if f.outcome == "recovered" else "terminal",
            critique=f.critique,
            evidence=f.evidence,
            evaluator=f.evaluator,
            confidence=f.confidence,
        )
        for f in response.findings
    )
    return Verdict("revise" if response.verdict == pb.VERDICT_REVISE else "allow", findings, seconds)
