"""In-loop correction: check a step before it takes effect and feed the critique back (work in progress:
the in-process guard; the gRPC evaluation service and loop helpers come next)."""

from .guard import Guard, Verdict

__all__ = ["Guard", "Verdict"]
