# ruff: noqa
from opentelemetry.proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_REVISE: _ClassVar[Verdict]

VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_REVISE: Verdict

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "arguments_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    arguments_json: str
    def __init__(
        self, id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...
    ) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content", "tool_calls", "tool_call_id", "name", "is_error")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_call_id: str
    name: str
    is_error: bool
    def __init__(
        self,
        role: _Optional[str] = ...,
        content: _Optional[str] = ...,
        tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ...,
        tool_call_id: _Optional[str] = ...,
        name: _Optional[str] = ...,
        is_error: _Optional[bool] = ...,
    ) -> None: ...

class ToolDefinition(_message.Message):
    __slots__ = ("name", "description", "parameters_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    def __init__(
        self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ...
    ) -> None: ...

class EvaluateStepRequest(_message.Message):
    __slots__ = ("history", "proposed", "tools", "policy", "agent_name", "trace_id", "span_id", "attributes")
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    history: _containers.RepeatedCompositeFieldContainer[Message]
    proposed: Message
    tools: _containers.RepeatedCompositeFieldContainer[ToolDefinition]
    policy: str
    agent_name: str
    trace_id: bytes
    span_id: bytes
    attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeyValue]
    def __init__(
        self,
        history: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...,
        proposed: _Optional[_Union[Message, _Mapping]] = ...,
        tools: _Optional[_Iterable[_Union[ToolDefinition, _Mapping]]] = ...,
        policy: _Optional[str] = ...,
        agent_name: _Optional[str] = ...,
        trace_id: _Optional[bytes] = ...,
        span_id: _Optional[bytes] = ...,
        attributes: _Optional[_Iterable[_Union[_common_pb2.KeyValue, _Mapping]]] = ...,
    ) -> None: ...

class Finding(_message.Message):
    __slots__ = ("mode", "category", "step", "outcome", "critique", "evidence", "evaluator", "confidence")
    MODE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CRITIQUE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    mode: str
    category: str
    step: int
    outcome: str
    critique: str
    evidence: str
    evaluator: str
    confidence: float
    def __init__(
        self,
        mode: _Optional[str] = ...,
        category: _Optional[str] = ...,
        step: _Optional[int] = ...,
        outcome: _Optional[str] = ...,
        critique: _Optional[str] = ...,
        evidence: _Optional[str] = ...,
        evaluator: _Optional[str] = ...,
        confidence: _Optional[float] = ...,
    ) -> None: ...

class EvaluateStepResponse(_message.Message):
    __slots__ = ("verdict", "findings", "critique", "seconds")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CRITIQUE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    critique: str
    seconds: float
    def __init__(
        self,
        verdict: _Optional[_Union[Verdict, str]] = ...,
        findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...,
        critique: _Optional[str] = ...,
        seconds: _Optional[float] = ...,
    ) -> None: ...
