"""In-loop correction: check a step before it takes effect and feed the critique back.

* :class:`Guard`: in process, the same evaluators as the processor;
* :class:`RemoteGuard`: a client of the gRPC evaluation service (``proto/otel_agent_eval/v1``), which
  ``otel-agent-eval serve`` hosts on its OTLP/gRPC port; fails open on a timeout unless told otherwise;
* :mod:`.loops`: an OpenAI-style loop helper with a retry policy.
"""

from .guard import Guard, Verdict
from .remote import RemoteGuard, RemoteGuardError

__all__ = ["Guard", "RemoteGuard", "RemoteGuardError", "Verdict"]
