"""What detectors need to know about a run, worked out once per run and shared.

* the tool calls in order, each with the step that asked for it and the step that ran it;
* a corpus of everything the agent was told (policy, user messages, tool results, tool definitions), to ask
  whether a value was known before a given step;
* the state of the things tool results describe (an order, a reservation), as last seen before a step.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from ..ingest.jsonfile import loads
from ..model import AgentRun, AssistantMessage, Step, ToolCall, ToolDefinition, ToolExecution, UserMessage
from .actions import ToolVerbs
from .policy import ResolvedPolicy
from .text import lowered, refuses


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call: asked for by ``request`` (an assistant step), carried out by ``execution`` if it ran."""

    call: ToolCall
    request: AssistantMessage
    execution: ToolExecution | None
    position: int

    @property
    def name(self) -> str:
        return self.call.name

    @property
    def step(self) -> int:
        return self.request.index

    @property
    def succeeded(self) -> bool:
        return self.execution is not None and self.execution.error is None

    @property
    def failed(self) -> bool:
        return self.execution is not None and self.execution.error is not None

    def same_request(self, other: Call) -> bool:
        return self.name == other.name and self.call.arguments == other.call.arguments


class Corpus:
    """Everything the agent was told, in order, searchable for "was this known before step i?".

    Sources are lower-cased and concatenated in step order; the first occurrence of a value tells the
    earliest step it was known at (one C-speed ``str.find`` per value: it is remembered, since the same
    identifiers are asked about at every step that names them).
    """

    def __init__(self, sources: list[tuple[int, str]]) -> None:
        parts: list[str] = []
        self._ends: list[int] = []
        self._indices: list[int] = []
        length = 0
        for index, text in sources:
            chunk = lowered(text) + "\n\x00\n"
            parts.append(chunk)
            length += len(chunk)
            self._ends.append(length)
            self._indices.append(index)
        self.text = "".join(parts)
        self._first: dict[str, int] = {}  # lower-cased value -> where it first occurs (-1: nowhere)

    def _find(self, needle: str) -> int:
        at = self._first.get(needle)
        if at is None:
            at = self._first[needle] = self.text.find(needle)
        return at

    def first_seen(self, value: str) -> int | None:
        """The index of the earliest step whose source mentions ``value`` (case-insensitive)."""
        at = self._find(value.lower())
        if at < 0:
            return None
        return self._indices[bisect_left(self._ends, at + 1)]

    def known_before(self, value: str, index: int) -> bool:
        """Whether a source before step ``index`` mentions ``value``: its first occurrence ends before the
        first source of step ``index`` or later starts (any other occurrence ends later still)."""
        end = self._ends[bisect_left(self._indices, index) - 1] if self._indices and self._indices[0] < index else 0
        if end <= 0:
            return False
        needle = value.lower()
        at = self._find(needle)
        return at >= 0 and at + len(needle) <= end


_ID_KEYS = re.compile(r"(^|_)id$")


class RunFacts:
    """Shared, lazily computed views of one run."""

    def __init__(self, run: AgentRun, policy: ResolvedPolicy) -> None:
        self.run = run
        self.policy = policy
        self.steps = run.steps
        self._carrying: dict[str, frozenset[str]] = {}

    @cached_property
    def calls(self) -> list[Call]:
        executions: dict[str, list[ToolExecution]] = {}
        pending: list[ToolExecution] = []
        for step in self.steps:
            if isinstance(step, ToolExecution):
                if step.call_id:
                    executions.setdefault(step.call_id, []).append(step)
                else:
                    pending.append(step)
        calls: list[Call] = []
        for step in self.steps:
            if not isinstance(step, AssistantMessage):
                continue
            for call in step.tool_calls:
                matches = executions.get(call.id) if call.id else None
                execution = None
                while matches and execution is None:
                    candidate = matches.pop(0)
                    if candidate.index > step.index:
                        execution = candidate
                if execution is None:
                    execution = next((e for e in pending if e.name == call.name and e.index > step.index), None)
                    if execution is not None:
                        pending.remove(execution)
                calls.append(Call(call=call, request=step, execution=execution, position=len(calls)))
        return calls

    def calls_before(self, index: int) -> Iterator[Call]:
        return (c for c in self.calls if c.step < index)

    @cached_property
    def writes(self) -> list[Call]:
        return [c for c in self.calls if self.policy.is_write(c.name)]

    @cached_property
    def tool_verbs(self) -> ToolVerbs:
        """The verbs naming each tool's action, from the run's tool definitions and the tools it called."""
        descriptions = {t.name: t.description for t in self.run.tool_definitions}
        names = dict.fromkeys([*descriptions, *(c.name for c in self.calls)])
        return _tool_verbs(tuple(names), tuple(descriptions.items()))

    def writes_carrying(self, verb: str) -> frozenset[str]:
        """The state-changing tools whose action ``verb`` names (``"cancelled"`` -> ``{"cancel_order"}``),
        remembered per word: the words of every user message are asked about."""
        memo = self._carrying
        found = memo.get(verb)
        if found is None:
            found = memo[verb] = frozenset(n for n in self.tool_verbs.carrying(verb) if self.policy.is_write(n))
        return found

    @cached_property
    def user_messages(self) -> list[UserMessage]:
        return [s for s in self.steps if isinstance(s, UserMessage)]

    @cached_property
    def corpus(self) -> Corpus:
        """The policy and tool definitions (before every step), user messages and tool results."""
        sources: list[tuple[int, str]] = []
        if self.run.system_instructions:
            sources.append((-1, self.run.system_instructions))
        for tool in self.run.tool_definitions:
            sources.append((-1, _definition_text(tool)))
        for step in self.steps:
            if isinstance(step, UserMessage) and step.content:
                sources.append((step.index, step.content))
            elif isinstance(step, ToolExecution):
                sources.append((step.index, step.result or step.error or ""))
        return Corpus(sources)

    def last_user_message_before(self, index: int) -> UserMessage | None:
        last = None
        for message in self.user_messages:
            if message.index >= index:
                break
            last = message
        return last

    def previous_step(self, index: int, *, kind: type[Step] | None = None) -> Step | None:
        found = None
        for step in self.steps:
            if step.index >= index:
                break
            if kind is None or isinstance(step, kind):
                found = step
        return found

    @cached_property
    def refusals(self) -> frozenset[int]:
        """The assistant steps that refuse, apologise for a failure, or report one (shared by detectors)."""
        return frozenset(
            s.index for s in self.steps if isinstance(s, AssistantMessage) and s.content and refuses(s.content)
        )

    @cached_property
    def results_json(self) -> dict[int, Any]:
        """Tool results that are JSON, decoded, by step index."""
        out: dict[int, Any] = {}
        for step in self.steps:
            if isinstance(step, ToolExecution) and step.result and step.result[:1] in "{[":
                value = decoded_json(step.result)
                if value is not NOT_JSON:
                    out[step.index] = value
        return out

    def state_before(
        self, id_field: str, target: Any, index: int, tools: frozenset[str] = frozenset()
    ) -> tuple[int, Mapping[str, Any]] | None:
        """The latest tool-result object with ``id_field == target`` before step ``index``, and its step.

        With ``tools``, only results of those tools count (and of writes: they return the state they left).
        """
        names = {s.index: s.name for s in self.steps if isinstance(s, ToolExecution)} if tools else {}
        found = None
        for step_index, value in self.results_json.items():
            if step_index >= index:
                break
            if tools and names.get(step_index) not in tools and not self.policy.is_write(names.get(step_index, "")):
                continue
            for obj in _objects(value):
                if obj.get(id_field) == target:
                    found = (step_index, obj)
        return found


@lru_cache(maxsize=256)
def _tool_verbs(names: tuple[str, ...], descriptions: tuple[tuple[str, str | None], ...]) -> ToolVerbs:
    """:meth:`ToolVerbs.of`, cached by the tools' names and descriptions: every run of an agent brings the
    same tools. (A ``ToolVerbs`` is frozen and only read, so runs may share one.)"""
    return ToolVerbs.of(names, dict(descriptions))


NOT_JSON = object()


@lru_cache(maxsize=1024)
def decoded_json(text: str) -> Any:
    """A tool result decoded, cached by its text: the in-loop guard checks the same history again at every
    step, and the processor sees a run's results again when a trace is evaluated early and then in full.
    The decoded values are shared between runs, so detectors read them and never change them."""
    try:
        return loads(text)  # bounded: a result nested past jsonfile.MAX_DEPTH is not JSON here (never a RecursionError)
    except ValueError:
        return NOT_JSON


_definition_texts: dict[int, tuple[ToolDefinition, str]] = {}


def _definition_text(tool: ToolDefinition) -> str:
    """A tool definition as searchable text, cached: the same definitions come with every run."""
    cached = _definition_texts.get(id(tool))
    if cached is not None and cached[0] is tool:
        return cached[1]
    text = json.dumps(tool.to_openai(), ensure_ascii=False)
    if len(_definition_texts) > 4096:
        _definition_texts.clear()
    _definition_texts[id(tool)] = (tool, text)
    return text


def _objects(value: Any) -> Iterator[Mapping[str, Any]]:
    """A decoded result's top-level object, or the objects of a top-level list."""
    if isinstance(value, Mapping):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                yield item


def is_identifier_key(key: str) -> bool:
    return _ID_KEYS.search(key) is not None
