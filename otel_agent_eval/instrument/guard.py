"""The instrumentation never breaks the application it records.

Every failure of our own (a redactor that raises, a value JSON cannot hold, a malformed tool definition) is
logged and swallowed, and the application's own exceptions propagate unchanged. Logs carry the failing
exception's type and where it was raised, never its message or a traceback: either may hold message content
(a redactor's error quoting its input, the application's exception chained to ours).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from .. import semconv as sc
from ..model import ToolDefinition
from .content import ContentPolicy

logger = logging.getLogger("otel_agent_eval.instrument")

Attributes = dict[str, AttributeValue]

_NO_CONTENT = ContentPolicy(capture=False)


def log_failure(what: str, exc: BaseException) -> None:
    """Log that recording ``what`` failed, without content."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else None
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    logger.warning("otel-agent-eval: could not record %s: %s raised%s", what, type(exc).__qualname__, where)


def attributes(what: str, build: Callable[[ContentPolicy], Attributes], policy: ContentPolicy) -> Attributes:
    """``build(policy)``; if that fails, the same attributes without content (structure is still worth having)."""
    try:
        return build(policy)
    except Exception as exc:
        log_failure(what, exc)
    try:
        return build(_NO_CONTENT)
    except Exception as exc:
        log_failure(what, exc)
        return {}


def record_failure(span: Span, exc: BaseException, policy: ContentPolicy, *, tool: bool = False) -> None:
    """Mark ``span`` as failed by the application's ``exc``; never raises (``exc`` must propagate, not ours).

    Done by hand rather than by the SDK (spans are started with ``record_exception=False,
    set_status_on_exception=False``): the SDK would write the exception's message and stack trace, which are
    content, whatever the policy says. Here the message goes through the policy, and there is no stack trace.
    """
    try:
        error_type = type(exc).__qualname__
        try:
            message = policy.text(str(exc))
        except Exception as redact_exc:
            log_failure("an error message", redact_exc)
            message = None
        span.set_status(Status(StatusCode.ERROR, message))
        span.set_attribute(sc.ERROR_TYPE, error_type)
        if tool:
            span.set_attribute(sc.AGENT_EVAL_TOOL_ERROR, message or "")
        event: Attributes = {sc.EXCEPTION_TYPE: error_type}
        if message is not None:
            event[sc.EXCEPTION_MESSAGE] = message
        span.add_event(sc.EVENT_EXCEPTION, event)
    except Exception as ours:
        log_failure("an error", ours)


def tool_definitions(value: Sequence[ToolDefinition | Any]) -> tuple[ToolDefinition, ...]:
    """Tool definitions (objects or OpenAI function dicts); invalid ones are logged and left out."""
    try:
        return ToolDefinition.parse_list(list(value))
    except Exception as exc:
        # The message names the position and the problem (and at most a tool's name): no content.
        logger.warning("otel-agent-eval: tool definitions: %s; the invalid ones are left out", exc)
    good: list[ToolDefinition] = []
    for item in value if isinstance(value, (list, tuple)) else ():
        try:
            good.extend(ToolDefinition.parse_list([item]))
        except Exception:  # already reported above
            continue
    return tuple(good)
