"""`serve` settings: flags, environment variables and a YAML file, in that order; bad settings are clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT

from otel_agent_eval.cli import main
from otel_agent_eval.processor.assembly import AssemblyConfig
from otel_agent_eval.processor.command import build_config, config_keys, serve
from otel_agent_eval.processor.export import ExporterConfig
from otel_agent_eval.processor.metrics import METRICS, ProcessorMetrics, TelemetryConfig
from otel_agent_eval.processor.metrics import markdown_table as metrics_table
from otel_agent_eval.processor.pipeline import QueueConfig
from otel_agent_eval.processor.receivers import ReceiversConfig
from otel_agent_eval.processor.security import StartupError
from otel_agent_eval.processor.server import ServeConfig
from otel_agent_eval.processor.settings import markdown_table
from otel_agent_eval.processor.workers import EvaluationConfig


def settings(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = serve.make_context("serve", args)
    return dict(ctx.params)


def test_precedence_flag_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("quiet_period: 7\nmax_wait: 70\nworkers: 3\ndownstream: grpc://file:1\n")
    params = settings(["--config", str(cfg), "--workers", "5"], {"AGENT_EVAL_MAX_WAIT": "80"}, monkeypatch)
    assert params["quiet_period"] == 7.0  # from the file
    assert params["max_wait"] == 80.0  # the environment beats the file
    assert params["workers"] == 5  # a flag beats both
    assert params["downstream"] == "grpc://file:1"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    params = settings([], {}, monkeypatch)
    assert params["grpc_endpoint"] == "127.0.0.1:4317" and params["http_endpoint"] == "127.0.0.1:4318"
    assert params["quiet_period"] == 2.0 and params["evaluate"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("quiet_priod: 3\n", "unknown setting(s) quiet_priod"),
        ("- a\n- b\n", "a YAML mapping"),
        ("quiet_period: [\n", "not YAML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(text)
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2 and message in result.stderr and str(cfg) in result.stderr


def test_help_documents_every_setting() -> None:
    text = CliRunner().invoke(main, ["serve", "--help"]).stdout
    for param in serve.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.opts[0] in text


def test_bad_downstream_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--downstream",
            "ftp://x:1",
            "--grpc-endpoint",
            "127.0.0.1:0",
            "--http-endpoint",
            "",
            "--metrics-endpoint",
            "",
        ],
    )
    assert result.exit_code == 2 and "ftp://x:1" in result.stderr


# --- one declaration per setting: defaults, the file, the environment, the flags, validation, the docs ----------


PACKS = ROOT / "otel_agent_eval" / "evaluate" / "packs"  # real files: --print-config reads them as serve would


def print_config(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["serve", *args, "--print-config"], env=env or {})
    assert result.exit_code == 0, result.output
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def test_without_settings_the_config_is_the_declared_defaults() -> None:
    assert print_config([]) == ServeConfig().to_dict()
    assert build_config(dict(serve.make_context("serve", []).params)) == ServeConfig()


def test_a_config_file_gives_the_whole_config(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        "receivers:\n  grpc_endpoint: 0.0.0.0:14317\n  http_endpoint: ''\n  service_max_messages: 100\n"
        "queue:\n  data_dir: /var/lib/agent-eval\n"
        "assembly:\n  quiet_period: 5\n  max_traces: 99\n"
        f"evaluation:\n  workers: 4\n  policy_packs: [{PACKS}/tau-retail.yaml, {PACKS}/generic.yaml]\n"
        "  evaluate: false\n"
        "exporter:\n  downstream: grpc://collector:4317\n  downstream_headers: {authorization: Bearer abc}\n"
        "telemetry:\n  agent_labels: [shop, support]\n"
        "max_wait: 45\n"  # a setting's name alone, at the top level
    )
    env = {"AGENT_EVAL_EXPORT_MAX_REQUESTS": "8", "AGENT_EVAL_WORKERS": "3"}  # the environment beats the file
    for key, value in env.items():
        os.environ[key] = value
    try:
        params = serve.make_context("serve", ["--config", str(cfg), "--quiet-period", "6"]).params  # flag wins
        config = build_config(params)
    finally:
        for key in env:
            del os.environ[key]
    expected = ServeConfig(
        receivers=ReceiversConfig(grpc_endpoint="0.0.0.0:14317", http_endpoint=None, service_max_messages=100),
        queue=QueueConfig(data_dir=Path("/var/lib/agent-eval")),
        assembly=AssemblyConfig(quiet_period=6.0, max_wait=45.0, max_traces=99),
        evaluation=EvaluationConfig(
            workers=3, policy_packs=(PACKS / "tau-retail.yaml", PACKS / "generic.yaml"), evaluate=False
        ),
        exporter=ExporterConfig(
            downstream="grpc://collector:4317",
            downstream_headers={"authorization": "Bearer abc"},
            export_max_requests=8,
        ),
        telemetry=TelemetryConfig(agent_labels=("shop", "support")),
    )
    assert config == expected
    printed = print_config(["--config", str(cfg), "--quiet-period", "6"], env)
    assert printed == {**expected.to_dict()}
    assert printed["exporter"]["downstream_headers"] == {"authorization": "<redacted>"}  # never the value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("evaluation:\n  workers: 0\n", "--workers"),
        ("assembly:\n  max_traces: -1\n", "--max-traces"),
        ("evaluation:\n  evaluation_timeout: 0\n", "--evaluation-timeout"),
        ("assembly:\n  quiet_priod: 1\n", "unknown setting(s) assembly.quiet_priod"),
        ("exporter:\n  downstream: ftp://x:1\n", "ftp://x:1"),
        ("exporter:\n  export_min_backoff: 9\n  export_max_backoff: 1\n", "--export-min-backoff"),
        ("evaluation:\n  workers: {a: 1}\n", "evaluation.workers: expected one value"),
        ("assembly:\n  quiet_period: [1]\n", "assembly.quiet_period: expected one value"),
        ("evaluation:\n  pack: [a, b]\n", "evaluation.pack: expected one value"),
        ("exporter:\n  downstream_headers: {a: {b: 1}}\n", "exporter.downstream_headers: expected a mapping"),
        ("exporter:\n  downstream_headers: [a]\n", "exporter.downstream_headers: expected a mapping"),
        ("evaluation:\n  workers: abc\n", "--workers"),
        ("evaluation:\n  pack: nosuch\n", "no policy pack named 'nosuch'"),  # checked as serve would check it
        ("evaluation:\n  calibration: /nonexistent.json\n", "/nonexistent.json"),
    ],
)
def test_a_bad_value_in_the_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    """Out of its range, of the wrong shape, or naming what serve cannot read: exit 2 naming it."""
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(text)
    result = CliRunner().invoke(main, ["serve", "--config", str(cfg), "--print-config"])
    assert result.exit_code == 2 and message in result.stderr, (result.exit_code, result.output)


def test_validate_names_the_component_and_the_flag() -> None:
    with pytest.raises(StartupError, match=r"assembly\.max_spans_per_trace \(--max-spans-per-trace\) 0"):
        ServeConfig.of(max_spans_per_trace=0).validate()
    with pytest.raises(StartupError, match=r"--grpc-endpoint"):
        ServeConfig.of(grpc_endpoint="nowhere").validate()
    with pytest.raises(TypeError, match="quiet_priod"):
        ServeConfig.of(quiet_priod=1)


def test_every_declared_setting_is_a_flag_an_env_var_and_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {p.name: p for p in serve.params if isinstance(p, click.Option)}
    keys = set(config_keys())
    for f in ServeConfig.settings():
        assert f.name in options and f.flag in options[f.name].opts[0], (f.flag, options.get(f.name))
        assert f"{f.section}.{f.name}" in keys
    numbers = [f for f in ServeConfig.settings() if f.type in (int, float)]

    def other(f: Any) -> Any:  # another value than the default, in its range
        top = f.spec.maximum
        return f.default + 1 if top is None else (f.default + top) / 2

    for f in numbers:  # each from its own environment variable, AGENT_EVAL_<NAME>
        monkeypatch.setenv(f"AGENT_EVAL_{f.name.upper()}", str(other(f)))
    params = serve.make_context("serve", []).params
    assert {f.name: params[f.name] for f in numbers} == {f.name: other(f) for f in numbers}


def _generated(table: str) -> str:
    """The ``table`` (settings, metrics) docs/processor.md holds between its markers."""
    text = (ROOT / "docs" / "processor.md").read_text()
    start = text.index(f"<!-- {table} table: generated from the declarations -->\n")
    return text[start : text.index(f"<!-- end of {table} table -->")].split("\n", 1)[1]


def test_the_docs_table_is_current() -> None:
    assert _generated("settings") == markdown_table(ServeConfig.COMPONENTS), "regenerate the table in docs/processor.md"


def test_the_docs_metrics_table_is_the_declaration() -> None:
    assert _generated("metrics") == metrics_table(), "regenerate the metrics table in docs/processor.md"


def test_every_declared_metric_is_exposed() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = ProcessorMetrics([PrometheusMetricReader(registry=registry)])
    try:
        metrics.agent("shop")  # an agent's series start at 0
        metrics.duration.record(0.1)
        metrics.judge_duration.record(1.5)  # a histogram shows once it has a value
        metrics.deadletters.add(1, {"reason": "INVALID_ARGUMENT"})  # a reason is known at its first dead letter
        exposed = generate_latest(registry).decode()
    finally:
        metrics.shutdown()
    for metric in METRICS.values():
        assert f"\n{metric.prometheus}" in exposed or exposed.startswith(metric.prometheus), metric.prometheus


def test_a_list_in_the_environment_is_comma_separated_so_a_header_keeps_its_spaces() -> None:
    env = {"AGENT_EVAL_DOWNSTREAM_HEADERS": "authorization=Bearer xyz,x-team=ai", "AGENT_EVAL_AGENT_LABELS": "a b,c"}
    result = CliRunner().invoke(main, ["serve", "--print-config"], env=env)
    assert result.exit_code == 0, result.output
    for key, value in env.items():
        os.environ[key] = value
    try:
        params = dict(serve.make_context("serve", []).params)
    finally:
        for key in env:
            del os.environ[key]
    config = build_config(params)
    assert config.exporter.downstream_headers == {"authorization": "Bearer xyz", "x-team": "ai"}
    assert config.telemetry.agent_labels == ("a b", "c")


def test_no_credential_is_printed() -> None:
    url = "http://user:hunter2@collector:4318/v1/traces"
    printed = print_config(["--downstream", url, "--bearer-token", "s3cret"])
    assert printed["exporter"]["downstream"] == "http://collector:4318/v1/traces"
    assert printed["receivers"]["bearer_token"] == "<redacted>"


def test_settings_given_in_code_are_type_checked() -> None:
    with pytest.raises(StartupError, match=r"evaluation\.workers \(--workers\) 'abc': expected int"):
        ServeConfig.of(workers="abc").validate()
    with pytest.raises(StartupError, match=r"expected a tuple of Path"):
        ServeConfig.of(policy_packs="x.yaml").validate()
    ServeConfig.of(quiet_period=1).validate()  # an int where a float is declared is a number all the same


def test_the_diagram_names_the_modules_and_their_sections() -> None:
    """docs/processor.md's diagram: every module it names exists, and every component's module and settings
    section are in it."""
    import re

    text = (ROOT / "docs" / "processor.md").read_text()
    start = text.index("Each box is a module of `otel_agent_eval/processor/`")
    diagram = text[start : text.index("## What happens to a span")]
    named = set(re.findall(r"(\w+)\.py", diagram))
    package = ROOT / "otel_agent_eval" / "processor"
    assert named and all((package / f"{name}.py").exists() for name in named), named
    for component in ServeConfig.COMPONENTS:
        assert component.__module__.rpartition(".")[2] in named, component.__module__
        assert f"[{component.section}]" in diagram, component.section
