"""One representation of an agent run: a trace of steps.

Every part of otel-agent-eval consumes this model. Instrumentation turns steps into spans, ingestion turns
spans and recorded runs back into steps, the evaluator reads steps and returns findings.

A run is an ordered tuple of steps. A step is one of three things:

* :class:`UserMessage` -- what the user said;
* :class:`AssistantMessage` -- what the model answered: text, tool calls, or both;
* :class:`ToolExecution` -- one tool call carried out: name, call id, arguments, result or error.

The system message is not a step: it is the run's ``system_instructions`` (for a tool-using agent, its policy).

All classes are frozen dataclasses. Collections are tuples; tool arguments and JSON schemas are plain
mappings decoded from JSON and must be treated as read-only.

>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage, ToolCall, ToolExecution
>>> run = AgentRun(steps=(
...     UserMessage(index=0, content="Where is order #W1?"),
...     AssistantMessage(index=1, tool_calls=(ToolCall(id="c1", name="get_order", arguments={"id": "#W1"}),)),
...     ToolExecution(index=2, name="get_order", call_id="c1", arguments={"id": "#W1"}, result='{"status": "shipped"}'),
...     AssistantMessage(index=3, content="It has shipped."),
... ))
>>> [step.kind for step in run.steps]
['user', 'assistant', 'tool', 'assistant']
>>> run.tool_call("c1").name
'get_order'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

JSONValue: TypeAlias = Any
"""A value decoded from JSON (dict, list, str, int, float, bool or None)."""

StepKind = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call requested by the model in an assistant message.

    ``arguments`` is the decoded JSON object, or ``None`` when the model's argument text was not valid JSON;
    ``raw_arguments`` then keeps the text as the model wrote it (a malformed call is a failure to report, not
    something to repair silently).
    """

    id: str
    name: str
    arguments: Mapping[str, JSONValue] | None
    raw_arguments: str | None = None

    def arguments_json(self) -> str:
        """The arguments as JSON text: the model's own text when it was not valid JSON."""
        if self.arguments is None:
            return self.raw_arguments or ""
        return json.dumps(self.arguments, ensure_ascii=False, sort_keys=False)


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool the agent may call, as in an OpenAI function definition (``parameters`` is a JSON schema)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, JSONValue] | None = None
    annotations: Mapping[str, JSONValue] | None = None
    """MCP tool annotations, when the definition carries them (``readOnlyHint``, ``destructiveHint``,
    ``idempotentHint``, ``openWorldHint``): what the tool's author says it does."""

    @classmethod
    def from_openai(cls, obj: Mapping[str, JSONValue]) -> ToolDefinition:
        """Read ``{"type": "function", "function": {...}}``, the bare ``{"name", ...}`` form, or an MCP tool
        (``inputSchema`` for the parameters, ``annotations``).

        >>> ToolDefinition.from_openai({"name": "rm", "inputSchema": {}, "annotations": {"destructiveHint": True}})
        ToolDefinition(name='rm', description=None, parameters={}, annotations={'destructiveHint': True})
        """
        fn = obj.get("function", obj) if obj.get("type", "function") == "function" else obj
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError("tool definition has no 'name'")
        params = fn.get("parameters", fn.get("inputSchema"))
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(f"tool definition {fn['name']!r}: 'parameters' is not an object")
        desc = fn.get("description")
        notes = fn.get("annotations", obj.get("annotations"))
        return cls(
            name=fn["name"],
            description=desc if isinstance(desc, str) else None,
            parameters=params,
            annotations=notes if isinstance(notes, Mapping) else None,
        )

    @classmethod
    def parse_list(cls, value: object) -> tuple[ToolDefinition, ...]:
        """A list of tool definitions (OpenAI function dicts or ``ToolDefinition`` objects).

        Raises ``ValueError`` naming the position and the problem; callers add the file, run and field.

        >>> [t.name for t in ToolDefinition.parse_list([{"type": "function", "function": {"name": "f"}}])]
        ['f']
        """
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"tool definitions are a {type(value).__name__}, not a list")
        out = []
        for i, obj in enumerate(value):
            if isinstance(obj, ToolDefinition):
                out.append(obj)
            elif isinstance(obj, Mapping):
                try:
                    out.append(cls.from_openai(obj))
                except ValueError as exc:
                    raise ValueError(f"[{i}]: {exc}") from None
            else:
                raise ValueError(f"[{i}]: a tool definition is an object, not a {type(obj).__name__}")
        return tuple(out)

    def to_openai(self) -> dict[str, JSONValue]:
        fn: dict[str, JSONValue] = {"name": self.name}
        if self.description is not None:
            fn["description"] = self.description
        if self.parameters is not None:
            fn["parameters"] = dict(self.parameters)
        if self.annotations is not None:
            fn["annotations"] = dict(self.annotations)
        return {"type": "function", "function": fn}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Step:
    index: int
    """Position of the message in its run (for recorded runs, the position in the source file)."""
    start_time_ns: int | None = None
    end_time_ns: int | None = None
    span_id: str | None = None
    """Hex id of the span this step was read from or written to, when there is one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserMessage(_Step):
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    """Tools the *user* runs (τ² telecom: the customer toggles a setting on their own phone)."""
    kind: Literal["user"] = field(default="user", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantMessage(_Step):
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    reasoning: str | None = None
    """What the model reasoned beside its answer, when the source gives it apart (never shown to the user)."""
    kind: Literal["assistant"] = field(default="assistant", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolExecution(_Step):
    name: str
    call_id: str | None
    arguments: Mapping[str, JSONValue] | None
    result: str | None = None
    error: str | None = None
    """The error message when the tool failed (raised, or returned an error); ``None`` on success."""
    requested_by: Literal["assistant", "user"] = "assistant"
    """Who asked for the call: the agent, or (in dual-control settings) the user on their side."""
    kind: Literal["tool"] = field(default="tool", init=False)

    @property
    def failed(self) -> bool:
        return self.error is not None


Step: TypeAlias = UserMessage | AssistantMessage | ToolExecution


@dataclass(frozen=True, slots=True)
class ApplicationOutcome:
    """What the application itself knows about how the run ended (not a verdict of the evaluator)."""

    success: bool
    reward: float | None = None


@dataclass(frozen=True, slots=True)
class ExpectedAction:
    name: str
    arguments: Mapping[str, JSONValue]


@dataclass(frozen=True, slots=True)
class Reference:
    """The answers a benchmark knows for a run.

    Used only to score the evaluator and by the explicit reference-based mode; reference-free evaluation
    never reads it.
    """

    reward: float | None = None
    actions: tuple[ExpectedAction, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunSource:
    """Where a run came from: a file and the run's 0-based position in it, and the run's own id if any."""

    file: str
    index: int
    id: str | None = None

    def trace_id(self) -> str:
        """A trace id derived from the source, so that importing or evaluating the same run twice agrees.

        Made from the file's name (not its path), the position and the id.

        >>> RunSource("runs/a.json", 3, "x").trace_id() == RunSource("/data/a.json", 3, "x").trace_id()
        True
        """
        name = self.file.replace("\\", "/").rsplit("/", 1)[-1]
        digest = hashlib.sha256(f"{name}\0{self.index}\0{self.id or ''}".encode()).hexdigest()
        return digest[:32]


@dataclass(frozen=True, slots=True)
class AgentRun:
    """One agent run: its steps in order, and what is known about it."""

    steps: tuple[Step, ...]
    trace_id: str | None = None
    root_span_id: str | None = None
    agent_name: str | None = None
    conversation_id: str | None = None
    system_instructions: str | None = None
    tool_definitions: tuple[ToolDefinition, ...] = ()
    outcome: ApplicationOutcome | None = None
    reference: Reference | None = None
    source: RunSource | None = None
    start_time_ns: int | None = None
    end_time_ns: int | None = None

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def tool_call(self, call_id: str, *, before: int | None = None) -> ToolCall | None:
        """The latest tool call with this id (requested before step index ``before``, if given).

        Call ids are not always unique in a run (some agents reuse them), hence "latest".
        """
        found = None
        for step in self.steps:
            if before is not None and step.index >= before:
                break
            if isinstance(step, AssistantMessage):
                for call in step.tool_calls:
                    if call.id == call_id:
                        found = call
        return found

    def tool_definition(self, name: str) -> ToolDefinition | None:
        """The definition of the tool with this name, if the run carries one."""
        for tool in self.tool_definitions:
            if tool.name == name:
                return tool
        return None

    def prefix(self, n: int) -> AgentRun:
        """The run as it stood after its first ``n`` steps (what an in-loop check or a streaming evaluator sees)."""
        return replace(self, steps=self.steps[:n])

    def with_tools(self, tools: tuple[ToolDefinition, ...]) -> AgentRun:
        """This run with ``tools`` as its tool definitions, when it carries none of its own."""
        return self if self.tool_definitions else replace(self, tool_definitions=tools)
