"""The judge's prompts: versioned data files, one per mode family (a taxonomy category), and how a run fills
them in.

Each family's file (``prompts/<family>.yaml``) says what to look at; ``prompts/common.yaml`` holds what they
share (the judge's role, the answer's shape, the trajectory). The modes' definitions come from the taxonomy,
so the prompts cannot drift from it. A finding records the prompt that made it (``workflow@1.1``: the
family's version, then the common part's).

>>> from otel_agent_eval.model import AgentRun, UserMessage, AssistantMessage
>>> run = AgentRun(steps=(UserMessage(index=0, content="hi"), AssistantMessage(index=1, content="Hello!")),
...                system_instructions="Be kind.")
>>> prompt = PROMPTS["workflow"]
>>> prompt.name, sorted(prompt.modes)[:2]
('workflow@1.1', ['loop', 'missing_action'])
>>> system, user = prompt.messages(run, budget_tokens=2000)
>>> print(user["content"])
# The agent's policy
Be kind.
<BLANKLINE>
# The agent's tools
(none)
<BLANKLINE>
# The conversation (steps 0 to 1)
[0] user: hi
[1] assistant: Hello!
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ...model import AgentRun
from ..taxonomy import TAXONOMY
from .client import CHARS_PER_TOKEN, estimate_tokens
from .render import render_steps, render_tools

FAMILIES = ("workflow", "user_interaction", "tool")
"""The taxonomy categories a judge looks for (``system``: failures of the tools and the model, not the
agent's, are the detectors' to report from status codes and errors)."""

POLICY_SHARE, TOOLS_SHARE = 0.25, 0.15
"""Of the token budget, at most this much for the policy text and for the tool definitions; the rest, and
what they leave, for the conversation."""


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("prompts").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"judge prompt {name}.yaml: not a mapping")
    return data


@dataclass(frozen=True)
class Prompt:
    """One family's prompt."""

    family: str
    version: int
    focus: str
    common: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.family}@{self.version}.{self.common['version']}"

    @property
    def modes(self) -> dict[str, str]:
        """The family's modes and their definitions, from the taxonomy."""
        return {m.mode: m.description for m in TAXONOMY if m.category == self.family}

    def messages(self, run: AgentRun, *, budget_tokens: int) -> tuple[dict[str, str], dict[str, str]]:
        """The system and user messages asking about ``run``, within about ``budget_tokens``."""
        modes = "\n".join(f"- {mode}: {text}" for mode, text in self.modes.items())
        system = str(self.common["system"]).format(
            modes=modes, focus=self.focus.strip(), example_mode=next(iter(self.modes))
        )
        room = max(budget_tokens - estimate_tokens(system), 200)
        policy = (run.system_instructions or "(none stated)").strip()
        if estimate_tokens(policy) > room * POLICY_SHARE:
            keep = int(room * POLICY_SHARE * CHARS_PER_TOKEN)
            policy = f"{policy[:keep]}\n[… {len(policy) - keep} characters of the policy cut …]"
        tools = render_tools(run.tool_definitions, budget_tokens=int(room * TOOLS_SHARE)) or "(none)"
        left = room - estimate_tokens(policy) - estimate_tokens(tools)
        steps = render_steps(run, budget_tokens=max(left, 100))
        first = run.steps[0].index if run.steps else 0
        last = run.steps[-1].index if run.steps else 0
        user = str(self.common["user"]).format(policy=policy, tools=tools, steps=steps, first=first, last=last)
        return {"role": "system", "content": system}, {"role": "user", "content": user}

    def retry(self, run: AgentRun, problem: str) -> dict[str, str]:
        """The message asking again after an answer that could not be used, saying why."""
        first = run.steps[0].index if run.steps else 0
        last = run.steps[-1].index if run.steps else 0
        return {"role": "user", "content": str(self.common["retry"]).format(problem=problem, first=first, last=last)}


@cache
def _prompts() -> dict[str, Prompt]:
    common = _load("common")
    out = {}
    for family in FAMILIES:
        data = _load(family)
        if data.get("family") != family:
            raise ValueError(f"judge prompt {family}.yaml: says it is for {data.get('family')!r}")
        out[family] = Prompt(family, int(data["version"]), str(data["focus"]), common)
    return out


class _Prompts(Mapping[str, Prompt]):
    """The prompts by family, read from the package's data files on first use."""

    def __getitem__(self, family: str) -> Prompt:
        return _prompts()[family]

    def __iter__(self) -> Any:
        return iter(_prompts())

    def __len__(self) -> int:
        return len(_prompts())


PROMPTS: Mapping[str, Prompt] = _Prompts()
