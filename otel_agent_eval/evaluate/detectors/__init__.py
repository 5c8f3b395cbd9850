"""The built-in reference-free detectors: no LLM, no answers, only what a deployed agent's spans hold.

Each detector is a small class with a ``name`` and ``evaluate(run, context)``; see
:mod:`otel_agent_eval.evaluate.engine` for the interface.
"""

from .arguments import GroundingDetector, SchemaDetector
from .clarification import ClarificationDetector
from .completion import CompletionDetector
from .information import WrongInformationDetector
from .model_output import ModelOutputDetector
from .policy_rules import (
    ArgumentRuleDetector,
    ConfirmationDetector,
    IdentityDetector,
    OncePerTargetDetector,
    PreconditionDetector,
    TurnShapeDetector,
)
from .repetition import LoopDetector
from .tool_errors import ToolErrorDetector
from .tool_outputs import MisreadOutputDetector
from .transfer import TransferDetector

BUILTIN_DETECTORS = (
    SchemaDetector,
    GroundingDetector,
    ToolErrorDetector,
    LoopDetector,
    ConfirmationDetector,
    IdentityDetector,
    TurnShapeDetector,
    PreconditionDetector,
    ArgumentRuleDetector,
    OncePerTargetDetector,
    MisreadOutputDetector,
    WrongInformationDetector,
    ClarificationDetector,
    TransferDetector,
    CompletionDetector,
    ModelOutputDetector,
)

__all__ = [cls.__name__ for cls in BUILTIN_DETECTORS] + ["BUILTIN_DETECTORS"]
