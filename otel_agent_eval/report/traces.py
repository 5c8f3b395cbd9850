"""The traces behind a row of the report: listed (the first few, then ``+k more``), linked when asked.

A list is bounded so that a mode seen in ten thousand traces does not make the page that big, and never cut
silently: the text says how many more there are; the HTML lists them behind a ``<details>`` (up to
:data:`MAX_LISTED`, then says how many are left out). With ``--trace-url`` every trace id becomes a link to a
trace UI; runs without a trace id (offline runs: ``file#index``) are listed, never linked.

Trace ids come from the results, that is from whoever sent the spans: they are URL-quoted into the link and
HTML-escaped everywhere.

>>> links = TraceLinks("http://jaeger:16686/trace/{trace_id}", shown=1)
>>> refs = (TraceRef("ab12", "ab12"), TraceRef("runs.json#3", None), TraceRef("x/y?z", "x/y?z"))
>>> links.url(refs[2]), links.url(refs[1])
('http://jaeger:16686/trace/x%2Fy%3Fz', None)
>>> TraceLinks(shown=2).inline(refs)
'ab12  runs.json#3  +1 more'
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from .load import TraceRef

TRACE_ID_FIELD = "{trace_id}"
#: a <details> lists at most this many traces; the rest are counted, and `otel-agent-eval traces` lists them
MAX_LISTED = 500
TEXT_WIDTH = 100


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class TraceLinks:
    """How the report lists traces: ``shown`` of them, then ``+k more``; linked through ``template`` if given."""

    template: str | None = None
    shown: int = 5

    def url(self, ref: TraceRef) -> str | None:
        """The trace's page in the trace UI, or None (no template, or a run without a trace id)."""
        if self.template is None or ref.trace_id is None:
            return None
        return self.template.replace(TRACE_ID_FIELD, quote(ref.trace_id, safe=""))

    # --- text ----------------------------------------------------------------------------------------------

    def inline(self, refs: Sequence[TraceRef]) -> str:
        """The first traces' labels on one line, then ``+k more``."""
        more = len(refs) - self.shown
        return "  ".join([r.label for r in refs[: self.shown]] + ([f"+{more} more"] if more > 0 else []))

    def text_lines(self, refs: Sequence[TraceRef], indent: str = "    ") -> list[str]:
        """The first traces for a terminal: their URLs one a line when linked, else their labels wrapped."""
        if not refs:
            return []
        more = len(refs) - self.shown
        if self.template is None:
            return textwrap.wrap(
                self.inline(refs),
                TEXT_WIDTH,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        lines = [indent + (self.url(r) or r.label) for r in refs[: self.shown]]
        return lines + ([f"{indent}+{more} more"] if more > 0 else [])

    # --- HTML ----------------------------------------------------------------------------------------------

    def _item(self, ref: TraceRef) -> str:
        url = self.url(ref)
        if url is None:
            return f'<code class="trace">{_e(ref.label)}</code>'
        return (
            f'<a class="trace" href="{_e(url)}" target="_blank" rel="noopener noreferrer">'
            f"<code>{_e(ref.label)}</code></a>"
        )

    def html(self, refs: Sequence[TraceRef]) -> str:
        """The traces as a list: the first ``shown``, then a ``<details>`` with the rest (``+k more``)."""
        if not refs:
            return '<span class="none">–</span>'
        first = " ".join(self._item(r) for r in refs[: self.shown])
        rest = refs[self.shown :]
        if not rest:
            return f'<div class="traces">{first}</div>'
        listed = " ".join(self._item(r) for r in rest[:MAX_LISTED])
        left = len(rest) - MAX_LISTED
        if left > 0:
            listed += f' <span class="note">and {left} more not listed (<code>otel-agent-eval traces</code>)</span>'
        return (
            f'<div class="traces">{first}<details><summary>+{len(rest)} more</summary>'
            f'<div class="more">{listed}</div></details></div>'
        )
