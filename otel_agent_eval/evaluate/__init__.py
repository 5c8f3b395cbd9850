"""Failure-mode evaluation: the taxonomy, the evaluator interface, the detectors, policy packs, scoring.

>>> from otel_agent_eval.evaluate import Engine
>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage
>>> Engine().evaluate(AgentRun(steps=(UserMessage(index=0, content="hi"),))).outcome
'success'
"""

from .engine import Engine, Evaluator, RunContext
from .findings import Evaluation, Finding
from .policy import PackLibrary, PolicyPack
from .taxonomy import TAXONOMY

__all__ = ["TAXONOMY", "Engine", "Evaluation", "Evaluator", "Finding", "PackLibrary", "PolicyPack", "RunContext"]
