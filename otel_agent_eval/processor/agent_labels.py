"""The ``agent`` label of the processor's metrics: bounded, and never personal data.

An agent's name comes from the spans (``gen_ai.agent.name``), that is from whoever sends them: it can be an
e-mail address, a user id or a new value per request. Prometheus keeps one series per label value, forever, so
a label copied verbatim is both a privacy leak and an unbounded cost. :class:`AgentLabels` turns a name into a
label value:

* a name that looks like personal data or an identifier (an ``@``, a run of 4 or more digits, a UUID or a long
  hex string, anything longer than 64 characters or outside ``[A-Za-z0-9 _.:/-]``) becomes ``redacted``;
* with an allow-list, only the names on it are kept, every other becomes ``other``;
* without one, the first ``max_agents`` distinct names are kept, in the order they are first seen, and every
  later one becomes ``other`` (logged once, without the name);
* no name is ``unknown``.

>>> labels = AgentLabels(max_agents=2)
>>> [labels.of(n) for n in ("shop", "ann@example.com", "billing", "agent-1234", "travel", "shop", None)]
['shop', 'redacted', 'billing', 'redacted', 'other', 'shop', 'unknown']
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

logger = logging.getLogger(__name__)

OTHER = "other"
REDACTED = "redacted"
UNKNOWN = "unknown"
DEFAULT_MAX_AGENTS = 50

_ALLOWED = re.compile(r"^[A-Za-z0-9 _.:/-]{1,64}$")
_PERSONAL = re.compile(
    r"@|\d{4,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{16,}\b", re.IGNORECASE
)


class AgentLabels:
    """Agent names to metric label values (see the module's documentation); safe to share between threads."""

    def __init__(self, *, max_agents: int = DEFAULT_MAX_AGENTS, allow: Iterable[str] = ()) -> None:
        if max_agents < 0:
            raise ValueError(f"max_agents must be >= 0, not {max_agents}")
        self.max_agents = max_agents
        self.allow = frozenset(allow)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def of(self, name: str | None) -> str:
        if not name:
            return UNKNOWN
        if not _ALLOWED.match(name) or _PERSONAL.search(name):
            return REDACTED
        if self.allow:
            return name if name in self.allow else OTHER
        with self._lock:
            if name in self._seen:
                return name
            if len(self._seen) < self.max_agents:
                self._seen.add(name)
                return name
            if not self._warned:
                self._warned = True
                logger.warning(
                    "more than %d agent names seen: later ones are counted as agent=%r (raise --max-agent-labels, "
                    "or list the agents with --agent-label)",
                    self.max_agents,
                    OTHER,
                )
        return OTHER
