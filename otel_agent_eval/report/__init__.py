"""The report on an evaluation: failure modes terminal / recovered, run outcomes, the most frequent critiques.

* :mod:`.load` -- read the evaluator's ``results.jsonl`` (one JSON object per run);
* :mod:`.summary` -- aggregate the runs into a :class:`~.summary.Summary`;
* :mod:`.text` -- the summary as aligned tables for the terminal;
* :mod:`.html` -- the summary as one self-contained HTML page with charts (needs the ``report`` extra: plotly);
* :mod:`.command` -- the ``report`` click command.
"""

from .load import FailureRecord, RunResult, load_results, parse_result
from .summary import Summary, summarize

__all__ = ["FailureRecord", "RunResult", "Summary", "load_results", "parse_result", "summarize"]
