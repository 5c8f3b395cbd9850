"""Unmodified agents, evaluated: each agent in this folder runs under ``opentelemetry-instrument``, its spans go
to ``otel-agent-eval serve``, and the evaluated, labelled traces are listed.

    .venv/bin/python examples/unmodified/run.py              # offline: a local server plays the models
    .venv/bin/python examples/unmodified/run.py --out DIR    # keep the store (and serve's log) in DIR

Offline, a local HTTP server speaking the OpenAI and Anthropic APIs (``tests/llm_server.py``) answers with a
scripted conversation in which the model cancels an order with a reason the tool does not take, and then
says it is done: each trace should come out ``terminal`` with ``wrong_arguments``. With ``OPENAI_BASE_URL`` /
``ANTHROPIC_BASE_URL`` (and keys) set in the environment, the agents talk to those endpoints instead, and
whatever the real model does is what gets evaluated.

Nothing in the agents changes: ``opentelemetry-instrument`` loads the instrumentors registered under the
``opentelemetry_instrumentor`` entry points (otel-agent-eval's ``otel_agent_eval_openai``,
``otel_agent_eval_anthropic``, ``otel_agent_eval_langchain``), and the OpenTelemetry distro exports the spans
over OTLP. Other OpenAI instrumentations installed in the same environment (OpenInference's, OpenLLMetry's,
both named ``openai``) are switched off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``, or each call would be
recorded twice.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
AGENTS = ["openai_agent.py", "anthropic_agent.py", "langgraph_agent.py"]


def scripted_server(stack: ExitStack) -> dict[str, str]:
    """Start the local model server with one scripted conversation per agent; the environment to reach it."""
    sys.path.insert(0, str(REPO / "tests"))
    from llm_server import LLMServer, anthropic_message, openai_chat

    server = stack.enter_context(LLMServer())
    wrong = {"order_id": "#W1", "reason": "found it cheaper"}  # not one of the reasons the tool takes
    done = "Your order #W1 has been cancelled."
    server.script(
        # openai_agent.py
        openai_chat(tool_calls=[("call_1", "cancel_order", wrong)]),
        openai_chat(done),
        # anthropic_agent.py
        anthropic_message(tool_uses=[("toolu_1", "cancel_order", wrong)]),
        anthropic_message(done),
        # langgraph_agent.py
        openai_chat(tool_calls=[("call_2", "cancel_order", wrong)]),
        openai_chat(done),
    )
    return {
        "OPENAI_BASE_URL": server.openai_base_url,
        "OPENAI_API_KEY": "offline",
        "ANTHROPIC_BASE_URL": server.anthropic_base_url,
        "ANTHROPIC_API_KEY": "offline",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"otel-agent-eval serve did not listen on port {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where the store and serve's log go (default: a temporary folder)")
    args = parser.parse_args()
    offline = not (os.environ.get("OPENAI_BASE_URL") or os.environ.get("ANTHROPIC_BASE_URL"))
    with ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(scripted_server(stack) if offline else {})}
        port = free_port()
        log = (out / "serve.log").open("w")
        serve = subprocess.Popen(
            [str(BIN / "otel-agent-eval"), "serve", "--data-dir", str(out / "store"),
             "--grpc-endpoint", f"127.0.0.1:{port}", "--http-endpoint", "", "--metrics-endpoint", "",
             "--quiet-period", "0.5"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_listening(port)
            otel = {
                "OTEL_SERVICE_NAME": "unmodified-agents",
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",  # OpenInference's and OpenLLMetry's, not ours
            }
            for agent in AGENTS:
                print(f"$ opentelemetry-instrument python {agent}", flush=True)
                subprocess.run(
                    [str(BIN / "opentelemetry-instrument"), sys.executable, str(HERE / agent)],
                    env={**env, **otel},
                    check=True,
                )
        finally:
            serve.send_signal(signal.SIGTERM)  # stops receiving, evaluates what it holds
            serve.wait(timeout=60)
        print(flush=True)
        subprocess.run([str(BIN / "otel-agent-eval"), "traces", "--data-dir", str(out / "store")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
