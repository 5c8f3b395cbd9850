"""The settings every fuzzer in tests/ runs under: a fixed, reproducible set of examples in CI, or a long random
search with ``AGENT_EVAL_FUZZ_EXAMPLES=N`` (locally)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("AGENT_EVAL_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int) -> settings:
    """``examples`` derandomized examples (CI), or ``AGENT_EVAL_FUZZ_EXAMPLES`` random ones."""
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=not EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
