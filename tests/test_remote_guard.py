"""The evaluation service and the remote guard: a real gRPC server on loopback."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_agent_eval.hook import Guard, RemoteGuard, RemoteGuardError
from otel_agent_eval.hook._proto import evaluation_pb2 as pb
from otel_agent_eval.hook._proto import evaluation_pb2_grpc as pb_grpc
from otel_agent_eval.hook.remote import message_to_pb
from otel_agent_eval.hook.service import add_evaluation_service

ROOT = Path(__file__).resolve().parent.parent

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "reason": {"enum": ["no longer needed", "ordered by mistake"]},
                },
                "required": ["order_id", "reason"],
            },
        },
    }
]
HISTORY: list[dict[str, Any]] = [{"role": "user", "content": "Cancel order #W1, I no longer need it."}]


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }


WRONG = call("cancel_order", {"order_id": "#W1", "reason": "because"})
RIGHT = call("cancel_order", {"order_id": "#W1", "reason": "no longer needed"})


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    add_evaluation_service(server, Guard(tools=TOOLS))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def stub(endpoint: str) -> Iterator[pb_grpc.EvaluationServiceStub]:
    with grpc.insecure_channel(endpoint) as channel:
        yield pb_grpc.EvaluationServiceStub(channel)


def test_remote_guard_agrees_with_the_in_process_guard(endpoint: str) -> None:
    import otel_agent_eval

    assert otel_agent_eval.RemoteGuard is RemoteGuard and otel_agent_eval.Guard is Guard  # the top-level names
    local = Guard(tools=TOOLS)
    with RemoteGuard(endpoint, timeout=5) as remote:
        for proposed in (WRONG, RIGHT):
            want, got = local.check(HISTORY, proposed), remote.check(HISTORY, proposed)
            assert got.action == want.action
            assert [f.to_dict() for f in got.findings] == [f.to_dict() for f in want.findings]
            assert got.critique == want.critique
        assert remote.check(HISTORY, WRONG).findings[0].mode == "wrong_arguments"
        assert remote.check(HISTORY, RIGHT).allowed
        assert remote.failures == 0


def test_tools_sent_by_the_client_override_the_service_s(endpoint: str) -> None:
    other = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}]
    with RemoteGuard(endpoint, timeout=5, tools=other) as remote:
        verdict = remote.check(HISTORY, RIGHT)  # cancel_order is not among this client's tools
    assert verdict.action == "revise"
    assert verdict.findings[0].mode == "wrong_tool"


def test_an_unknown_tool_is_a_finding_not_an_error(stub: pb_grpc.EvaluationServiceStub) -> None:
    request = pb.EvaluateStepRequest(
        history=[message_to_pb(m) for m in HISTORY],
        proposed=pb.Message(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="drop_tables")]),
    )
    response = stub.EvaluateStep(request, timeout=5)
    assert response.verdict == pb.VERDICT_REVISE
    assert [f.mode for f in response.findings] == ["wrong_tool"]
    assert "drop_tables" in response.critique
    assert response.findings[0].category


def test_a_session_streams_one_verdict_per_step(stub: pb_grpc.EvaluationServiceStub) -> None:
    wrong, right = message_to_pb(WRONG), message_to_pb(RIGHT)
    critique = pb.Message(role="tool", tool_call_id="c1", content="Blocked by the guard.")
    requests = [
        pb.EvaluateStepRequest(history=[message_to_pb(m) for m in HISTORY], proposed=wrong),
        pb.EvaluateStepRequest(history=[*(message_to_pb(m) for m in HISTORY), wrong, critique], proposed=right),
        pb.EvaluateStepRequest(
            history=[
                *(message_to_pb(m) for m in HISTORY),
                right,
                pb.Message(role="tool", tool_call_id="c1", content="ok"),
            ],
            proposed=pb.Message(role="assistant", content="Order #W1 is cancelled."),
        ),
    ]
    responses = list(stub.EvaluateSession(iter(requests), timeout=5))
    assert [r.verdict for r in responses] == [pb.VERDICT_REVISE, pb.VERDICT_ALLOW, pb.VERDICT_ALLOW]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EvaluateStepRequest(history=[pb.Message(role="user", content="hi")]), "proposed"),
        (
            pb.EvaluateStepRequest(
                history=[
                    pb.Message(role="user"),
                    pb.Message(role="assistant"),
                    pb.Message(role="tool"),
                    pb.Message(role="robot"),
                ],
                proposed=pb.Message(role="assistant", content="x"),
            ),
            "history[3].role",
        ),
        (
            pb.EvaluateStepRequest(
                proposed=pb.Message(
                    role="assistant", tool_calls=[pb.ToolCall(name="cancel_order", arguments_json="{oops")]
                )
            ),
            "proposed.tool_calls[0].arguments_json",
        ),
        (
            pb.EvaluateStepRequest(
                history=[pb.Message(role="assistant", tool_calls=[pb.ToolCall(name="f", arguments_json="[1]")])],
                proposed=pb.Message(content="x"),
            ),
            "history[0].tool_calls[0].arguments_json",
        ),
        (pb.EvaluateStepRequest(proposed=pb.Message(role="user", content="x")), "proposed.role"),
        (
            pb.EvaluateStepRequest(
                proposed=pb.Message(content="x"), tools=[pb.ToolDefinition(name="f", parameters_json="nope")]
            ),
            "tools[0].parameters_json",
        ),
    ],
)
def test_a_malformed_request_is_invalid_argument_naming_the_field(
    stub: pb_grpc.EvaluationServiceStub, request_: pb.EvaluateStepRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.EvaluateStep(request_, timeout=5)
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}: "), error.details()
    with pytest.raises(grpc.RpcError) as raised:  # the stream ends the same way
        list(stub.EvaluateSession(iter([request_]), timeout=5))
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}: " in error.details()


def test_the_remote_guard_raises_on_a_refused_request(endpoint: str) -> None:
    with RemoteGuard(endpoint, timeout=5) as remote, pytest.raises(RemoteGuardError, match=r"history\[0\]\.role"):
        remote.check([{"role": "robot", "content": "beep"}], RIGHT)
    assert remote.failures == 0


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("fail_closed", [False, True])
def test_an_unreachable_service_fails_open_or_closed_quickly_and_is_recorded(fail_closed: bool) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with RemoteGuard(f"127.0.0.1:{_unused_port()}", timeout=0.05, fail_closed=fail_closed, tools=TOOLS) as remote:
        started = time.perf_counter()
        with provider.get_tracer("test").start_as_current_span("step"):
            verdict = remote.check(HISTORY, WRONG)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert remote.failures == 1
    if fail_closed:
        assert verdict.action == "revise"
        assert "unreachable" in verdict.critique
    else:
        assert verdict.allowed
    (span,) = exporter.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "agent_eval.guard.error"]
    assert event.attributes is not None
    assert event.attributes["agent_eval.guard.error.code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_a_slow_service_times_out_and_fails_open() -> None:
    class Slow(pb_grpc.EvaluationServiceServicer):
        def EvaluateStep(
            self, request: pb.EvaluateStepRequest, context: grpc.ServicerContext
        ) -> pb.EvaluateStepResponse:
            time.sleep(0.5)
            return pb.EvaluateStepResponse(verdict=pb.VERDICT_REVISE)

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_EvaluationServiceServicer_to_server(Slow(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with RemoteGuard(f"127.0.0.1:{port}", timeout=0.05) as remote:
            started = time.perf_counter()
            verdict = remote.check(HISTORY, WRONG)
            assert time.perf_counter() - started < 0.4
        assert verdict.allowed
        assert remote.failures == 1
    finally:
        server.stop(None)


def test_the_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    committed = ROOT / "otel_agent_eval" / "hook" / "_proto"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(p.name for p in committed.iterdir() if p.suffix in (".py", ".pyi"))
    _, mismatch, errors = filecmp.cmpfiles(tmp_path, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code: run scripts/gen-proto.sh ({mismatch + errors})"


def test_serve_hosts_the_evaluation_service(tmp_path: Path, running: Any) -> None:
    from test_processor import config

    from otel_agent_eval.hook import Guard, RemoteGuard

    processor = running(config(tmp_path))
    history = [{"role": "user", "content": "Cancel order #W1, I no longer need it."}]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "cancel_order",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}, "reason": {"enum": ["no longer needed"]}},
                    "required": ["order_id", "reason"],
                },
            },
        }
    ]
    proposed = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "cancel_order", "arguments": '{"order_id": "#W1", "reason": "because"}'},
            }
        ],
    }
    with RemoteGuard(processor.grpc.endpoint, timeout=5.0, tools=tools) as remote:
        verdict = remote.check(history, proposed)
    assert verdict.action == "revise" == Guard(tools=tools).check(history, proposed).action
