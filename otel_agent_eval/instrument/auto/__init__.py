"""Auto-instrumentation: agents on the OpenAI and Anthropic SDKs and on LangChain / LangGraph emit agent-step
spans with no change to their code.

Three ways to turn it on:

* ``otel_agent_eval.instrument()`` (or :func:`instrument` here, the typed spelling) turns on every one of
  the instrumentors below whose library is installed, and returns their names;
* each instrumentor on its own, as in opentelemetry-python-contrib:
  ``OpenAIInstrumentor().instrument(tracer_provider=provider)``; ``.uninstrument()`` restores what it patched;
* ``opentelemetry-instrument python app.py``: they are registered under the ``opentelemetry_instrumentor``
  entry-point group (``otel_agent_eval_openai``, ``otel_agent_eval_anthropic``, ``otel_agent_eval_langchain``).

Keyword arguments of ``instrument``: ``tracer_provider`` (default: the global one) and ``content`` (a
:class:`~otel_agent_eval.instrument.ContentPolicy`; default: from the environment, see :mod:`..content`).
How model calls are put together into one trace per agent loop: :mod:`..conversation`.

>>> from otel_agent_eval.instrument.auto import INSTRUMENTORS
>>> sorted(INSTRUMENTORS)
['anthropic', 'langchain', 'openai']
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

# name -> (module, class); modules are imported only when used, so a missing library costs nothing.
INSTRUMENTORS = {
    "openai": ("otel_agent_eval.instrument.auto.openai", "OpenAIInstrumentor"),
    "anthropic": ("otel_agent_eval.instrument.auto.anthropic", "AnthropicInstrumentor"),
    "langchain": ("otel_agent_eval.instrument.auto.langchain", "LangChainInstrumentor"),
}


def _instrumentor(name: str) -> Any:
    module, cls = INSTRUMENTORS[name]
    return getattr(importlib.import_module(module), cls)()


def instrument(**kwargs: Any) -> list[str]:
    """Turn on every instrumentor whose library is installed (in a version it supports); returns their names.

    Already instrumented ones are left as they are (and listed). A library that is missing is skipped
    quietly; one that fails to instrument is logged and skipped: the application goes on either way.
    """
    done = []
    for name in INSTRUMENTORS:
        try:
            instrumentor = _instrumentor(name)
            if instrumentor.is_instrumented_by_opentelemetry:
                done.append(name)
                continue
            conflict = instrumentor._check_dependency_conflicts()
            if conflict is not None:
                logger.debug("not instrumenting %s: %s", name, conflict)
                continue
            instrumentor.instrument(skip_dep_check=True, **kwargs)
            done.append(name)
        except Exception:
            logger.warning("could not instrument %s", name, exc_info=True)
    return done


def uninstrument() -> None:
    """Turn off every instrumentor that is on, restoring what each patched."""
    for name in INSTRUMENTORS:
        try:
            instrumentor = _instrumentor(name)
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        except Exception:
            logger.warning("could not uninstrument %s", name, exc_info=True)
