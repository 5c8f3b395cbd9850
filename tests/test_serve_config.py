"""`serve` settings: flags, environment variables and a YAML file, in that order; bad settings are clear errors."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from otel_agent_eval.cli import main
from otel_agent_eval.processor.command import serve


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
