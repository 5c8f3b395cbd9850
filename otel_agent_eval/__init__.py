"""otel-agent-eval: find, explain and correct the failures of LLM agents, inside OpenTelemetry.

The public API:

* :mod:`otel_agent_eval.model` -- one representation of an agent run (a trace of steps);
* :mod:`otel_agent_eval.instrument` -- record an agent's steps as GenAI-convention spans;
* :mod:`otel_agent_eval.ingest` -- read spans and recorded runs back into steps;
* :mod:`otel_agent_eval.evaluate` -- find and classify failures in a run;
* :mod:`otel_agent_eval.hook` -- judge a step before it takes effect (``Guard``, ``RemoteGuard``).
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `from otel_agent_eval import Guard` without importing the evaluator for every user of the package.
    if name in ("Guard", "RemoteGuard", "Verdict"):
        from . import hook

        return getattr(hook, name)
    if name == "instrument":  # `otel_agent_eval.instrument()` before anything imported the subpackage
        import importlib

        return importlib.import_module(".instrument", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
