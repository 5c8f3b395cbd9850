"""Agent steps as OpenTelemetry spans, following the GenAI semantic conventions.

See :mod:`otel_agent_eval.instrument.api` for the manual API, :mod:`.decorator` for ``@tool``,
:mod:`.attributes` and :mod:`.messages` for the span layout, :mod:`.guard` for how failures of the
instrumentation are kept out of the application.
"""

from .api import AgentRunRecorder, ChatRecorder, ToolRecorder, agent_run, current_run
from .content import ContentPolicy, Redactor, set_default_policy
from .decorator import tool
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
