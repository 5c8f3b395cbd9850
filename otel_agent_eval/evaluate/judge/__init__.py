"""An evaluation model in the cascade: a judge served by any OpenAI-compatible chat-completions endpoint.

:class:`LLMJudge` is an evaluator like the detectors (``evaluate(run, context)``); :class:`Cascade` runs the
detectors first and the judge where ``--judge`` says (``off``, ``suspicious``, ``sampled``, ``all``), within a
budget of calls and tokens per minute.
"""

from .cascade import JUDGE_MODES, Budget, Cascade, CascadeConfig, JudgeMode
from .client import ChatClient, ChatReply, JudgeUnavailable
from .judge import JudgeEvent, LLMJudge

__all__ = [
    "JUDGE_MODES",
    "Budget",
    "Cascade",
    "CascadeConfig",
    "ChatClient",
    "ChatReply",
    "JudgeEvent",
    "JudgeMode",
    "JudgeUnavailable",
    "LLMJudge",
]
