"""The LLM judge on the wire: a real HTTP client against the local server that speaks the OpenAI API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from llm_server import LLMServer, delayed, http_error, json_reply, openai_chat

from otel_agent_eval.evaluate import Engine
from otel_agent_eval.evaluate.judge import Budget, Cascade, CascadeConfig, ChatClient, JudgeEvent, LLMJudge
from otel_agent_eval.evaluate.judge.prompts import PROMPTS
from otel_agent_eval.model import AgentRun, AssistantMessage, ToolCall, ToolDefinition, ToolExecution, UserMessage

KEY = "sk-test-never-logged-9f8e7d"
TOOLS = (
    ToolDefinition(
        name="exchange_item",
        description="Exchange an item of a delivered order for another variant of the same product.",
        parameters={"type": "object", "properties": {"order_id": {"type": "string"}, "new_item": {"type": "string"}}},
    ),
)


GREEN = {"order_id": "#W7", "new_item": "green"}


def run_of() -> AgentRun:
    """The agent exchanges for the wrong variant: nothing a rule sees, what a judge is for."""
    return AgentRun(
        steps=(
            UserMessage(index=0, content="Please exchange the blue kettle in order #W7 for the red one."),
            AssistantMessage(
                index=1,
                tool_calls=(ToolCall(id="c1", name="exchange_item", arguments=GREEN),),
            ),
            ToolExecution(
                index=2,
                name="exchange_item",
                call_id="c1",
                arguments=GREEN,
                result='{"status": "exchange requested", "new_item": "green"}',
            ),
            AssistantMessage(index=3, content="Done: your kettle will be exchanged."),
        ),
        trace_id="0af7651916cd43dd8448eb211c80319c",
        system_instructions="Exchange items only for variants the user asked for.",
        tool_definitions=TOOLS,
    )


def finding(step: int = 1, mode: str = "wrong_action", **kw: Any) -> dict[str, Any]:
    return {
        "step": step,
        "mode": mode,
        "outcome": "terminal",
        "critique": "The user asked for the red kettle; exchange for red, not green.",
        "evidence": "step 0 asks for red; step 1 sends new_item=green",
        "confidence": 0.9,
        **kw,
    }


def answer(*findings: dict[str, Any]) -> Any:
    return openai_chat(json.dumps({"findings": list(findings)}), model="selene")


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


def judge_for(server: LLMServer, events: list[JudgeEvent] | None = None, **kw: Any) -> LLMJudge:
    sleeps: list[float] = kw.pop("sleeps", [])
    client = ChatClient(
        server.openai_base_url,
        "selene",
        api_key=KEY,
        timeout=kw.pop("timeout", 5.0),
        retries=kw.pop("retries", 2),
        sleep=sleeps.append,
    )
    sink = events if events is not None else []
    return LLMJudge(client, families=kw.pop("families", ("workflow",)), on_event=sink.append, **kw)


def judged(judge: LLMJudge, run: AgentRun | None = None) -> list[Any]:
    run = run or run_of()
    return list(judge.evaluate(run, Engine().context(run)))


def test_a_good_answer_gives_findings_on_the_right_steps(server: LLMServer) -> None:
    server.script(answer(finding(1)))
    events: list[JudgeEvent] = []
    [found] = judged(judge_for(server, events))
    assert (found.mode, found.step, found.outcome, found.evidence_kind) == ("wrong_action", 1, "terminal", "judge")
    assert found.evaluator == "judge:selene" and "red" in found.critique and found.confidence == 0.9
    assert "workflow@1.1" in found.evidence  # the prompt that made it
    [request] = server.requests
    assert request.path == "/v1/chat/completions" and request.body["model"] == "selene"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["response_format"]["type"] == "json_schema"
    user = request.body["messages"][1]["content"]
    assert "[1] assistant calls: exchange_item(" in user and "[0] user: Please exchange" in user
    assert "Exchange items only for variants" in user and "exchange_item: Exchange an item" in user
    assert [e.kind for e in events] == ["call"] and events[0].prompt_tokens == 10


def test_malformed_json_is_asked_again_once_saying_why(server: LLMServer) -> None:
    server.script(openai_chat("Sure! Here are the findings: [", model="selene"), answer(finding(3, "missing_action")))
    [found] = judged(judge_for(server))
    assert found.mode == "missing_action" and found.step == 3
    retry = server.requests[1].body["messages"]
    assert retry[-2]["role"] == "assistant" and "not JSON" in retry[-1]["content"]


def test_malformed_twice_is_an_evaluator_error_not_a_crash(server: LLMServer) -> None:
    server.script(openai_chat("no", model="selene"), openai_chat('{"findings": "none"}', model="selene"))
    events: list[JudgeEvent] = []
    [error] = judged(judge_for(server, events))
    assert error.mode == "evaluator_error" and not error.counts and "could not be used" in error.critique
    assert "findings" in error.evidence and len(server.requests) == 2
    assert events[-1].kind == "error" and events[-1].reason == "bad_answer"


@pytest.mark.parametrize(
    ("bad", "said"),
    [(finding(1, "made_up_mode"), "is not one of"), (finding(9), "9 is not a step of the conversation")],
)
def test_an_unknown_mode_or_a_step_out_of_range_is_asked_again(server: LLMServer, bad: Any, said: str) -> None:
    server.script(answer(bad), answer(finding(1)))
    [found] = judged(judge_for(server))
    assert found.step == 1 and said in server.requests[1].body["messages"][-1]["content"]


def test_a_timeout_leaves_an_evaluator_error_and_the_detectors_verdict_stands(server: LLMServer) -> None:
    server.script(delayed(answer(finding(1)), 2.0), delayed(answer(finding(1)), 2.0))
    events: list[JudgeEvent] = []
    judge = judge_for(server, events, timeout=0.3, retries=1)
    run = run_of()
    detectors = Engine().evaluate(run)
    both = Cascade(Engine(), judge, CascadeConfig(mode="all")).evaluate(run)
    [error] = [f for f in both.findings if f.evaluator == "judge:selene"]
    assert error.mode == "evaluator_error" and "no answer from the judge" in error.evidence
    assert both.outcome == detectors.outcome and both.failure_score == detectors.failure_score
    assert events[-1].reason == "timeout"


def test_429_waits_as_retry_after_says(server: LLMServer) -> None:
    server.script(http_error(429, "slow down", retry_after=1.5), answer(finding(1)))
    sleeps: list[float] = []
    [found] = judged(judge_for(server, sleeps=sleeps))
    assert found.step == 1 and sleeps == [1.5]


def test_500_is_retried_then_given_up(server: LLMServer, caplog: pytest.LogCaptureFixture) -> None:
    server.script(http_error(500, "boom"), http_error(503, "down"), http_error(500, "boom"))
    events: list[JudgeEvent] = []
    with caplog.at_level(logging.DEBUG):
        [error] = judged(judge_for(server, events, retries=2))
    assert error.mode == "evaluator_error" and "500" in error.evidence and len(server.requests) == 3
    assert events[-1].reason == "server_error"
    assert KEY not in caplog.text and KEY not in error.evidence and KEY not in repr(judge_for(server).client)


def test_a_server_that_refuses_json_schema_is_asked_for_json_object(server: LLMServer) -> None:
    server.script(http_error(400, "response_format json_schema is not supported"), answer(finding(1)))
    judge = judge_for(server)
    [found] = judged(judge)
    assert found.step == 1
    assert server.requests[1].body["response_format"] == {"type": "json_object"}


def test_a_refusal_is_not_retried(server: LLMServer) -> None:
    server.script(http_error(401, "bad key"))
    [error] = judged(judge_for(server))
    assert error.mode == "evaluator_error" and "401" in error.evidence and len(server.requests) == 1


def test_answers_are_cached_by_what_was_asked(server: LLMServer) -> None:
    server.script(answer(finding(1)))
    events: list[JudgeEvent] = []
    judge = judge_for(server, events)
    first, again = judged(judge), judged(judge)
    assert [f.to_dict() for f in first] == [f.to_dict() for f in again] and len(server.requests) == 1
    assert [e.kind for e in events] == ["call", "cache_hit"]


def test_every_family_is_asked_with_its_own_modes(server: LLMServer) -> None:
    server.script(answer(), answer(finding(3, "wrong_information")), answer(finding(1, "wrong_arguments")))
    found = judged(judge_for(server, families=("workflow", "user_interaction", "tool")))
    assert sorted((f.mode, f.step) for f in found) == [("wrong_arguments", 1), ("wrong_information", 3)]
    for request, family in zip(server.requests, ("workflow", "user_interaction", "tool"), strict=True):
        schema = request.body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["findings"]["items"]["properties"]["mode"]["enum"] == sorted(PROMPTS[family].modes)


def test_the_judge_decides_the_outcome_and_joins_the_score(server: LLMServer) -> None:
    server.script(answer(finding(1)))
    run = run_of()
    detectors = Engine().evaluate(run)
    both = Cascade(Engine(), judge_for(server), CascadeConfig(mode="all")).evaluate(run)
    assert detectors.outcome == "success"  # nothing a rule sees
    assert both.outcome == "terminal" and both.root_cause_step == 1
    assert both.failure_score > detectors.failure_score
    assert [f.evidence_kind for f in both.failures] == ["judge"]


def test_the_cascade_chooses_runs_by_mode() -> None:
    engine = Engine()
    band = Cascade(engine, None, CascadeConfig(mode="off"))
    assert band.choose(0.5, "a") is None
    judge = LLMJudge(ChatClient("http://127.0.0.1:9/v1", "m"))
    suspicious = Cascade(engine, judge, CascadeConfig(mode="suspicious", band=(0.3, 0.6)))
    assert [suspicious.choose(s, "a") for s in (0.1, 0.3, 0.5, 0.6, 0.9)] == [
        None,
        "suspicious",
        "suspicious",
        "suspicious",
        None,
    ]
    sampled = Cascade(engine, judge, CascadeConfig(mode="sampled", sample_rate=0.25))
    ids = [f"{i:032x}" for i in range(2000)]
    chosen = [i for i in ids if sampled.choose(0.0, i)]
    assert 400 < len(chosen) < 600  # about a quarter
    assert chosen == [i for i in ids if sampled.choose(0.99, i)]  # by trace id, whatever the score
    assert Cascade(engine, judge, CascadeConfig(mode="all")).choose(0.0, None) == "all"
    with pytest.raises(ValueError, match="needs a judge"):
        Cascade(engine, None, CascadeConfig(mode="all"))
    with pytest.raises(ValueError, match="judge band"):
        CascadeConfig(mode="suspicious", band=(0.8, 0.2))


def test_a_budget_running_out_keeps_the_detectors_verdict(server: LLMServer) -> None:
    server.script(answer(finding(1)))
    events: list[JudgeEvent] = []
    now = [0.0]
    cascade = Cascade(
        Engine(),
        judge_for(server, events),
        CascadeConfig(mode="all", calls_per_minute=1),
        clock=lambda: now[0],
    )
    run = run_of()
    assert cascade.evaluate(run).outcome == "terminal"  # the one call a minute
    other = AgentRun(steps=run.steps[:2], trace_id="1" * 32, tool_definitions=TOOLS)
    assert cascade.evaluate(other) == Engine().evaluate(other)  # refused: the detectors' verdict
    assert events[-1].kind == "budget_refused" and len(server.requests) == 1
    now[0] = 60.0  # a minute later the bucket is full again
    server.script(answer())
    cascade.evaluate(other)
    assert len(server.requests) == 2


def test_the_budget_refills_continuously() -> None:
    now = [0.0]
    budget = Budget(60, 6000, clock=lambda: now[0])
    assert budget.take(60, 100) and not budget.take(1, 1)
    now[0] = 1.0  # a second: one call and 100 tokens back
    assert budget.take(1, 100) and not budget.take(1, 1)


def test_the_answer_server_error_body_never_reaches_the_finding(server: LLMServer) -> None:
    server.script(json_reply({"choices": []}))
    [error] = judged(judge_for(server))
    assert error.mode == "evaluator_error" and "not a chat completion" in error.evidence


def test_evaluate_and_report_with_judge_all(server: LLMServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evaluate --judge all` on an OTLP trace file: the judge's findings on the right steps and spans, in the
    results; `report` says which findings came from the judge."""
    from click.testing import CliRunner
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from otel_agent_eval.cli import main
    from otel_agent_eval.instrument.recorded import RunSpanWriter
    from otel_agent_eval.otlp_json import request_to_json

    writer = RunSpanWriter()
    spans = writer.spans(run_of())
    writer.shutdown()
    trace = tmp_path / "trace.json"
    trace.write_text(request_to_json(encode_spans(spans)))
    step_span = next(s for s in spans if (s.attributes or {}).get("agent_eval.step.index") == 1)
    # workflow, user_interaction, tool: one call each
    server.script(answer(finding(1)), answer(finding(3, "wrong_information")), answer())
    monkeypatch.setenv("AGENT_EVAL_JUDGE_API_KEY", KEY)
    results = tmp_path / "results.jsonl"
    judge = ["--judge", "all", "--judge-base-url", server.openai_base_url, "--judge-model", "selene"]
    invoked = CliRunner().invoke(main, ["evaluate", str(trace), "-o", str(results), *judge])
    assert invoked.exit_code == 0, invoked.output
    [result] = [json.loads(line) for line in results.read_text().splitlines()]
    judged = {(f["mode"], f["step"]) for f in result["failures"] if f["evidence_kind"] == "judge"}
    assert judged == {("wrong_action", 1), ("wrong_information", 3)}
    assert result["outcome"] == "terminal" and result["root_cause_step"] == 1
    at_step_1 = next(f for f in result["failures"] if f["step"] == 1)
    assert (
        at_step_1["span_id"] == format(step_span.context.span_id, "016x") and at_step_1["evaluator"] == "judge:selene"
    )
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests) and len(server.requests) == 3
    page = tmp_path / "report.html"
    report = CliRunner().invoke(main, ["report", str(results), "--html", str(page)])
    assert report.exit_code == 0, report.output
    assert "From the judge" in report.output and "judge:selene" in report.output
    html = page.read_text()
    assert '<section id="judges">' in html and "<code>judge:selene</code>" in html
    assert KEY not in invoked.output + report.output
    assert "judge: 3 calls, 0 answered from the cache, 0 without an answer, 0 runs not judged" in invoked.stderr


def test_evaluate_judge_needs_an_endpoint(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from otel_agent_eval.cli import main

    (tmp_path / "x.json").write_text("[]")
    out = ["-o", str(tmp_path / "r.jsonl")]
    invoked = CliRunner().invoke(main, ["evaluate", str(tmp_path / "x.json"), *out, "--judge", "all"])
    assert invoked.exit_code == 2 and "needs --judge-base-url and --judge-model" in invoked.output
    invoked = CliRunner().invoke(main, ["evaluate", str(tmp_path / "x.json"), *out, "--judge", "most"])
    assert invoked.exit_code == 2 and "one of off, suspicious, sampled, all" in invoked.output


def test_the_judge_quality_benchmark_runs_against_an_endpoint(server: LLMServer, capsys: Any) -> None:
    """bench/judge_quality.py, one run a file, against the local server: the table comes out, calls counted."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    import judge_quality

    server.script(*[answer() for _ in range(9)])  # 3 files x 1 run x 3 families; the cascade's are cached
    code = judge_quality.main(["--judge-base-url", server.openai_base_url, "--judge-model", "selene", "--limit", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "| judge alone | 3 |" in out and "| cascade | 3 |" in out
    assert "cache hits: 9" in out and len(server.requests) == 9


def test_the_guard_sends_back_what_the_judge_finds_at_the_proposed_step(server: LLMServer) -> None:
    from otel_agent_eval import Guard

    run = run_of()
    history, proposed = replace_steps(run, 1), run.steps[1]
    server.script(answer(finding(1)))
    guard = Guard(tools=TOOLS, judge=judge_for(server))
    verdict = guard.check(history, proposed)
    assert verdict.action == "revise" and verdict.critique == finding(1)["critique"]
    assert [f.evidence_kind for f in verdict.findings] == ["judge"]
    server.script(answer(finding(0, "missing_action")))  # about another step: not the proposed one's fault
    assert Guard(tools=TOOLS, judge=judge_for(server)).check(history, proposed).action == "allow"  # a fresh cache


def test_the_guards_judge_has_a_latency_budget_and_fails_open(server: LLMServer) -> None:
    import time

    from otel_agent_eval import Guard

    run = run_of()
    history, proposed = replace_steps(run, 1), run.steps[1]
    server.script(delayed(answer(finding(1)), 3.0))
    guard = Guard(tools=TOOLS, judge=judge_for(server, retries=0), judge_budget=0.3)
    started = time.monotonic()
    verdict = guard.check(history, proposed)
    assert verdict.action == "allow" and time.monotonic() - started < 2.5  # not the 3 s the judge takes
    server.script(delayed(answer(finding(1)), 3.0))
    closed = Guard(tools=TOOLS, judge=judge_for(server, retries=0), judge_budget=0.3, judge_fail_closed=True)
    verdict = closed.check(history, proposed)
    assert verdict.action == "revise" and "could not be checked" in verdict.critique


def replace_steps(run: AgentRun, end: int) -> AgentRun:
    from dataclasses import replace

    return replace(run, steps=run.steps[:end])


def test_the_example_agent_runs_with_a_judge_in_its_guard(server: LLMServer) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    server.script(*[answer() for _ in range(60)])  # the judge finds nothing: the detectors' guard still works
    env = {**os.environ, "AGENT_EVAL_JUDGE_API_KEY": KEY}
    env.pop("OPENAI_BASE_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    command = [sys.executable, "examples/customer_service_agent.py", "--judge-base-url", server.openai_base_url]
    done = subprocess.run(
        [*command, "--judge-model", "my-judge"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "outcome: recovered" in done.stdout
    assert server.requests and all(r.body["model"] == "my-judge" for r in server.requests)
    assert KEY not in done.stdout + done.stderr


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(server: LLMServer) -> None:
    with LLMServer() as elsewhere:
        elsewhere.script(answer(finding(1)))
        server.script(http_error(302, "moved", headers={"location": elsewhere.openai_base_url + "/chat/completions"}))
        [error] = judged(judge_for(server))
        assert error.mode == "evaluator_error" and "302" in error.evidence
        assert elsewhere.requests == []  # the key was not sent to the host the redirect named


def test_a_key_a_header_cannot_carry_is_refused_without_being_quoted() -> None:
    with pytest.raises(ValueError) as refused:
        ChatClient("http://127.0.0.1:9/v1", "m", api_key=f"{KEY}\r\nx: y")
    assert KEY not in str(refused.value)
    assert repr(ChatClient("http://127.0.0.1:9/v1", "m", api_key=f" {KEY}\n")).endswith("api_key=set)")


def test_nan_and_oversized_answers_are_not_taken(server: LLMServer) -> None:
    nan = json.dumps({"findings": [finding(1)]}).replace("0.9", "NaN")
    server.script(openai_chat(nan, model="selene"), openai_chat(nan, model="selene"))
    [error] = judged(judge_for(server))
    assert error.mode == "evaluator_error" and "NaN is not a number JSON allows" in error.evidence
    server.script(openai_chat("x" * (1 << 20), model="selene"))
    [error] = judged(judge_for(server))
    assert error.mode == "evaluator_error" and "bytes" in error.evidence


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("localhost:8000/v1", "http:// or https://"),
        ("http://user:pw@localhost/v1", "holds credentials"),
        ("http://localhost/v1?api-key=x", "query or a fragment"),
        ("http:///v1", "no host"),
    ],
)
def test_a_bad_base_url_is_refused_naming_what_is_wrong(url: str, said: str) -> None:
    from otel_agent_eval.evaluate.judge.client import check_base_url

    with pytest.raises(ValueError, match=said) as refused:
        check_base_url(url)
    assert "pw" not in str(refused.value) and "api-key=x" not in str(refused.value)


def test_a_server_dripping_its_answer_is_a_timeout() -> None:
    """The time limit holds for the whole answer, not for each read: a byte every 0.1 s never times one out."""
    import socket
    import threading
    import time

    from otel_agent_eval.evaluate.judge import JudgeUnavailable

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n")
            try:
                for _ in range(40):  # 4 s in all: a complete (if useless) body, were the limit per read
                    connection.sendall(b" ")
                    time.sleep(0.1)
            except OSError:  # the client gave up: what the test wants
                pass

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    client = ChatClient(f"http://127.0.0.1:{port}/v1", "m", timeout=0.5, retries=0)
    with pytest.raises(JudgeUnavailable) as unavailable:
        client.complete([{"role": "user", "content": "hi"}])
    assert unavailable.value.reason == "timeout"
    listener.close()
