"""Our GenAI names are the OpenTelemetry semantic conventions' own."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import error_attributes, gen_ai_attributes

from otel_agent_eval import semconv as sc


def test_gen_ai_names_match_the_conventions_package() -> None:
    ours = {k: v for k, v in vars(sc).items() if k.startswith("GEN_AI_")}
    theirs = {k: v for k, v in vars(gen_ai_attributes).items() if k.startswith("GEN_AI_")}
    assert ours, "no GEN_AI_ names"
    for name, value in ours.items():
        assert theirs.get(name) == value, f"{name} = {value!r} is not the convention's {theirs.get(name)!r}"
    assert sc.ERROR_TYPE == error_attributes.ERROR_TYPE


def test_operation_names_match() -> None:
    values = {v.value for v in gen_ai_attributes.GenAiOperationNameValues}
    for op in (
        sc.OP_CHAT,
        sc.OP_TEXT_COMPLETION,
        sc.OP_GENERATE_CONTENT,
        sc.OP_INVOKE_AGENT,
        sc.OP_CREATE_AGENT,
        sc.OP_EXECUTE_TOOL,
    ):
        assert op in values
