"""Agent steps as OpenTelemetry spans, following the GenAI semantic conventions.

See :mod:`otel_agent_eval.instrument.api` for the manual API and :mod:`.attributes` for the span layout.
"""

from .api import AgentRunRecorder, ChatRecorder, ToolRecorder, agent_run, current_run, tool
from .content import ContentPolicy, Redactor, set_default_policy
from .recorded import RunSpanWriter

__all__ = [
    "AgentRunRecorder",
    "ChatRecorder",
    "ContentPolicy",
    "Redactor",
    "RunSpanWriter",
    "ToolRecorder",
    "agent_run",
    "current_run",
    "set_default_policy",
    "tool",
]
