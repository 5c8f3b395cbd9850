"""Agent steps as OpenTelemetry spans, following the GenAI semantic conventions.

``otel_agent_eval.instrument()`` -- this package, called -- turns on the auto-instrumentors of every
installed SDK and framework (:mod:`.auto`; ``instrument.auto.instrument()`` is the same, for type checkers).

See :mod:`otel_agent_eval.instrument.api` for the manual API, :mod:`.decorator` for ``@tool``,
:mod:`.attributes` and :mod:`.messages` for the span layout, :mod:`.guard` for how failures of the
instrumentation are kept out of the application.
"""

import sys
import types
from typing import Any

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


class _CallableModule(types.ModuleType):
    """``otel_agent_eval.instrument()``: the package stays a package and can be called."""

    def __call__(self, **kwargs: Any) -> list[str]:
        from .auto import instrument

        return instrument(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
