"""Whether message content goes on spans, and how it is redacted first.

Content capture follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``, like the OpenTelemetry GenAI
instrumentations. **The default here is on**, where theirs is off: an evaluator of agent failures reads what
the agent said and what its tools returned, and cannot work on spans without it. Turn it off with ``false``
(also ``no_content``); structure (roles, tool names, call ids, errors, token counts) is still recorded.
The values ``true``, ``span_only`` and ``span_and_event`` turn it on. ``event_only`` means content in log
events only, never on spans; this package writes no content events, so ``event_only`` records no content at
all, like ``false``.

Content that leaves the process can be redacted first: a redactor is a function from text to text, applied
to every piece of content (message text, each string inside tool arguments, tool results, system
instructions, the content fields of messages passed to ``run.chat``, exception messages, a benchmark's
expected arguments and outputs) before it is written to a span. A redactor that raises is logged (without
content) and the step's span is written without content.

>>> import re
>>> policy = ContentPolicy(capture=True, redact=lambda s: re.sub(r"\\S+@\\S+", "<email>", s))
>>> policy.text("mail me at ann@example.com")
'mail me at <email>'
>>> policy.json_value({"email": "ann@example.com", "n": 2})
{'email': '<email>', 'n': 2}
>>> ContentPolicy(capture=False).text("secret") is None
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..semconv import ENV_CAPTURE_MESSAGE_CONTENT

logger = logging.getLogger(__name__)

Redactor = Callable[[str], str]

_ON = {"true", "1", "yes", "on", "span_only", "span_and_event"}
# event_only: content goes to events, not spans; we write no content events, so nothing is captured.
_OFF = {"false", "0", "no", "off", "no_content", "none", "event_only"}


def capture_from_env(default: bool = True) -> bool:
    """Read ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``; an unknown value keeps the default (warned)."""
    raw = os.environ.get(ENV_CAPTURE_MESSAGE_CONTENT)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    logger.warning(
        "%s=%r is not one of true, false, no_content, span_only, event_only, span_and_event; using %s",
        ENV_CAPTURE_MESSAGE_CONTENT,
        raw,
        "true" if default else "false",
    )
    return default


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """What content is written to spans: all of it (redacted by ``redact`` if set), or none."""

    capture: bool = True
    redact: Redactor | None = None

    @classmethod
    def from_env(cls, redact: Redactor | None = None) -> ContentPolicy:
        return cls(capture=capture_from_env(), redact=redact)

    def text(self, value: str | None) -> str | None:
        """Text as it may go on a span, or ``None`` when content is not captured."""
        if not self.capture or value is None:
            return None
        return self.redact(value) if self.redact else value

    def json_value(self, value: Any) -> Any:
        """A JSON value with every string in it redacted (keys are kept: they are structure, not content)."""
        if not self.redact:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.json_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.json_value(v) for v in value]
        return value


_default_policy: ContentPolicy | None = None


def default_policy() -> ContentPolicy:
    """The process-wide policy: set by :func:`set_default_policy`, else read once from the environment."""
    global _default_policy
    if _default_policy is None:
        _default_policy = ContentPolicy.from_env()
    return _default_policy


def set_default_policy(policy: ContentPolicy | None) -> None:
    """Set the process-wide content policy (``None``: read the environment again on next use)."""
    global _default_policy
    _default_policy = policy
