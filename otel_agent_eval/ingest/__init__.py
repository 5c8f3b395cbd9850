"""Spans and recorded runs, back into steps.

* :mod:`.recorded` -- τ-bench, τ² and OpenAI-style message files;
* :mod:`.spans` -- OTLP and SDK spans, from this package, the GenAI conventions (current and older),
  OpenInference and OpenLLMetry.
"""
