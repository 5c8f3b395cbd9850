"""The evaluation service (``otel_agent_eval.v1.EvaluationService``): the in-process :class:`Guard` over gRPC.

The protocol is ``proto/otel_agent_eval/v1/evaluation.proto``. Requests are converted to OpenAI-style
messages (the guard's input), checked, and the verdict converted back. A malformed request gets
``INVALID_ARGUMENT`` with a message that starts with the offending field (``history[3].role: ...``); a proposed
call to a tool that is not defined is a finding (``wrong_tool``, verdict REVISE), not an error.

Host it in any ``grpc.Server``::

    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    add_evaluation_service(server, Guard(tools=tools))
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ..errors import InputError
from ..ingest.jsonfile import loads
from ..model import ToolDefinition
from ._proto import evaluation_pb2 as pb
from ._proto import evaluation_pb2_grpc as pb_grpc
from .guard import Guard, Verdict

ROLES = ("system", "user", "assistant", "tool")


class RequestError(ValueError):
    """A malformed request: ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class OverLimit(RequestError):
    """A request beyond one of the service's :class:`ServiceLimits` (``RESOURCE_EXHAUSTED``, as gRPC answers a
    message over its size limit)."""


@dataclass(frozen=True)
class ServiceLimits:
    """What the service takes on at most, so that a server hosting other methods too (``serve``: OTLP
    ``Export`` on the same port) always keeps worker threads for them. ``None``: no bound.

    * ``max_concurrency``: evaluations in flight (``EvaluateStep`` calls and open ``EvaluateSession`` streams,
      each of which holds a worker thread); beyond it a call is refused at once with ``RESOURCE_EXHAUSTED``
      (retryable: the service is busy), never queued.
    * ``max_messages``: messages of history in one request; ``max_request_bytes``: the size of one request.
      Beyond either, ``RESOURCE_EXHAUSTED`` naming the limit, before anything is decoded.
    """

    max_concurrency: int | None = None
    max_messages: int | None = None
    max_request_bytes: int | None = None

    def check(self, request: pb.EvaluateStepRequest) -> None:
        """:class:`OverLimit` when ``request`` is beyond the size limits."""
        if self.max_messages is not None and len(request.history) > self.max_messages:
            raise OverLimit(
                "history",
                f"{len(request.history)} messages, over this service's limit of {self.max_messages} a request",
            )
        if self.max_request_bytes is not None:
            size = request.ByteSize()
            if size > self.max_request_bytes:
                raise OverLimit(
                    "request", f"{size} bytes, over this service's limit of {self.max_request_bytes} bytes a request"
                )


def message_to_dict(message: pb.Message, *, field: str) -> dict[str, Any]:
    """A protocol message as an OpenAI-style message dict; :class:`RequestError` when it is malformed."""
    if message.role not in ROLES:
        raise RequestError(f"{field}.role", f"{message.role!r} is not one of {', '.join(ROLES)}")
    out: dict[str, Any] = {"role": message.role, "content": message.content if message.HasField("content") else None}
    if message.tool_calls:
        if message.role != "assistant":
            raise RequestError(f"{field}.tool_calls", f"a {message.role} message carries tool calls")
        calls = []
        for i, call in enumerate(message.tool_calls):
            where = f"{field}.tool_calls[{i}]"
            if not call.name:
                raise RequestError(f"{where}.name", "a tool call needs the tool's name")
            arguments = call.arguments_json or "{}"
            try:
                parsed = loads(arguments)  # never a RecursionError: nesting is bounded (jsonfile.MAX_DEPTH)
            except ValueError as exc:
                raise RequestError(f"{where}.arguments_json", f"not JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise RequestError(f"{where}.arguments_json", f"not a JSON object but a {type(parsed).__name__}")
            calls.append({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}})
        out["tool_calls"] = calls
    if message.role == "tool":
        if message.tool_call_id:
            out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
        if message.is_error:  # unset: the parser's own heuristics decide (τ-bench's "Error: ..." results)
            out["error"] = True
    return out


def tools_from_request(request: pb.EvaluateStepRequest) -> list[dict[str, Any]]:
    """The request's tool definitions as OpenAI function dicts."""
    tools = []
    for i, tool in enumerate(request.tools):
        where = f"tools[{i}]"
        if not tool.name:
            raise RequestError(f"{where}.name", "a tool needs a name")
        parameters: Any = {}
        if tool.parameters_json:
            try:
                parameters = loads(tool.parameters_json)
            except ValueError as exc:
                raise RequestError(f"{where}.parameters_json", f"not JSON: {exc}") from None
            if not isinstance(parameters, dict):
                raise RequestError(f"{where}.parameters_json", f"not a JSON object but a {type(parameters).__name__}")
        function = {"name": tool.name, "description": tool.description, "parameters": parameters}
        tools.append({"type": "function", "function": function})
    return tools


def request_to_messages(request: pb.EvaluateStepRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(history, proposed)`` as OpenAI-style messages; :class:`RequestError` when the request is malformed."""
    history = [message_to_dict(m, field=f"history[{i}]") for i, m in enumerate(request.history)]
    if not request.HasField("proposed"):
        raise RequestError("proposed", "the proposed step is required")
    proposed = request.proposed
    if proposed.role not in ("", "assistant"):
        raise RequestError("proposed.role", f"the proposed step is an assistant message, not {proposed.role!r}")
    copy = pb.Message()
    copy.CopyFrom(proposed)
    copy.role = "assistant"
    return history, message_to_dict(copy, field="proposed")


def verdict_to_response(verdict: Verdict) -> pb.EvaluateStepResponse:
    return pb.EvaluateStepResponse(
        verdict=pb.VERDICT_REVISE if verdict.action == "revise" else pb.VERDICT_ALLOW,
        findings=[
            pb.Finding(
                mode=f.mode,
                category=f.category,
                step=f.step,
                outcome=f.outcome,
                critique=f.critique,
                evidence=f.evidence,
                evaluator=f.evaluator,
                confidence=f.confidence,
            )
            for f in verdict.findings
        ],
        critique=verdict.critique,
        seconds=verdict.seconds,
    )


class EvaluationServicer(pb_grpc.EvaluationServiceServicer):
    """``EvaluationService`` backed by an in-process :class:`Guard`.

    A request's own tools and policy override the guard's; otherwise the guard's configuration applies.
    """

    def __init__(self, guard: Guard | None = None, limits: ServiceLimits | None = None) -> None:
        self.guard = guard if guard is not None else Guard()
        self.limits = limits if limits is not None else ServiceLimits()
        self._slots = (
            threading.BoundedSemaphore(self.limits.max_concurrency) if self.limits.max_concurrency is not None else None
        )
        self._per_request: dict[tuple[str, str | None], Guard] = {}

    def evaluate(self, request: pb.EvaluateStepRequest) -> pb.EvaluateStepResponse:
        """The verdict on one request; :class:`RequestError` when the request is malformed, :class:`OverLimit`
        when it is beyond the service's limits."""
        self.limits.check(request)
        history, proposed = request_to_messages(request)
        guard = self._guard_for(request)
        try:
            verdict = guard.check(history, proposed)
        except InputError as exc:  # what the conversion above lets through and the parser still refuses
            raise RequestError(exc.field or "request", exc.message) from None
        return verdict_to_response(verdict)

    def _guard_for(self, request: pb.EvaluateStepRequest) -> Guard:
        tools = tools_from_request(request)
        policy = request.policy if request.HasField("policy") else None
        if not tools and policy is None:
            return self.guard
        key = (json.dumps(tools, sort_keys=True), policy)
        guard = self._per_request.get(key)
        if guard is None:
            try:
                definitions = ToolDefinition.parse_list(tools) if tools else self.guard.tools
            except ValueError as exc:
                raise RequestError("tools", str(exc)) from None
            guard = Guard(
                tools=definitions,
                policy=policy if policy is not None else self.guard.policy,
                engine=self.guard.engine,
                min_confidence=self.guard.min_confidence,
            )
            if len(self._per_request) >= 64:  # a small cache: agents reuse the same tools from step to step
                self._per_request.pop(next(iter(self._per_request)))
            self._per_request[key] = guard
        return guard

    def _enter(self, context: grpc.ServicerContext) -> None:
        """Take one of the service's slots, or refuse the call at once (``RESOURCE_EXHAUSTED``)."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the evaluation service is busy: {self.limits.max_concurrency} evaluations in flight, its limit; "
                "retry shortly",
            )

    def _leave(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def EvaluateStep(self, request: pb.EvaluateStepRequest, context: grpc.ServicerContext) -> pb.EvaluateStepResponse:
        self._enter(context)
        try:
            return self.evaluate(request)
        except OverLimit as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise  # abort raises; this only satisfies the type checker
        except RequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this only satisfies the type checker
        finally:
            self._leave()

    def EvaluateSession(
        self, request_iterator: Iterator[pb.EvaluateStepRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.EvaluateStepResponse]:
        self._enter(context)  # a session holds its slot (and its worker thread) while it is open
        try:
            for i, request in enumerate(request_iterator):
                try:
                    yield self.evaluate(request)
                except OverLimit as exc:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request {i}: {exc}")
                    raise
                except RequestError as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request {i}: {exc}")
                    raise
        finally:
            self._leave()


def add_evaluation_service(
    server: grpc.Server, guard: Guard | None = None, limits: ServiceLimits | None = None
) -> EvaluationServicer:
    """Host ``otel_agent_eval.v1.EvaluationService`` on ``server``, backed by ``guard`` (a default
    :class:`Guard`, the built-in evaluators and no tools, when none is given), within ``limits`` (none by
    default). Call before ``server.start()``; returns the servicer."""
    servicer = EvaluationServicer(guard, limits)
    pb_grpc.add_EvaluationServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    return servicer
