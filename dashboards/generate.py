"""Generate the Grafana dashboard of otel-agent-eval, and its provisioning files, from typed code.

    .venv/bin/python dashboards/generate.py           # (re)write the files below
    .venv/bin/python dashboards/generate.py --check   # exit 1 if a committed file differs from what this makes

Writes ``dashboards/agent-eval.json`` (the dashboard, Grafana's JSON model), ``dashboards/provisioning/
dashboards.yaml`` (a file provider that loads it) and ``dashboards/provisioning/datasources.yaml`` (an example
Prometheus, Jaeger and Tempo). Built with grafana-foundation-sdk (the ``dev`` extra): the JSON is never edited by
hand; tests/test_dashboards.py checks that it is current and runs every panel's query against a real Prometheus.

The queries read only what ``otel-agent-eval serve`` exposes on /metrics (docs/processor.md) and the recording
rules of alerts/agent-eval-rules.yaml: the panels an alert links to show the alert's own expressions. Span
attribute names in the trace-store links come from :mod:`otel_agent_eval.semconv`, so they cannot drift from what
the processor writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import yaml
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from otel_agent_eval import semconv as sc

HERE = Path(__file__).resolve().parent
UID = "otel-agent-eval"
"""The dashboard's uid: the ``dashboard`` annotations of the alert rules link to ``/d/<UID>/...``."""
SLUG = "otel-agent-eval"

# Panel ids are fixed (not left to the builder's order) because alert annotations link to them (`viewPanel=`).
PANEL_TERMINAL_SHARE = 2
PANEL_OUTCOMES = 3
PANEL_MODE_SPIKE = 4
PANEL_FAILURES_BY_MODE = 5
PANEL_FAILURES_BY_CATEGORY = 6
PANEL_GUARD_RECOVERIES = 7
PANEL_LATENCY = 9
PANEL_SPANS = 10
PANEL_QUEUE = 11
PANEL_EXPORT_FAILURES = 12
PANEL_DEADLETTERS = 13

PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# A field's label in a data link, percent-encoded by Grafana (`${__field.labels.X}` is the series' label X).
AGENT = "${__field.labels.agent:percentencode}"
MODE = "${__field.labels.mode:percentencode}"
CATEGORY = "${__field.labels.category:percentencode}"
OUTCOME = "${__field.labels.outcome:percentencode}"
LABELS = {"agent": AGENT, "mode": MODE, "category": CATEGORY, "outcome": OUTCOME}


# ----------------------------------------------------------------------------------------------- trace-store links
def jaeger_search(tags: dict[str, str]) -> str:
    """Jaeger UI's search, in the service ``$service``, for traces with these tags, over the dashboard's time
    range. Jaeger's URL takes ``tags`` as a JSON object and times in microseconds (Grafana's are milliseconds).
    The JSON's punctuation is percent-encoded here; Grafana percent-encodes the label values it puts in (agent
    names, modes and outcomes never hold a quote: the processor's agent label allows none)."""
    pairs = "%2C".join(f"{quote(json.dumps(key), safe='')}%3A%22{value}%22" for key, value in tags.items())
    return (
        "${jaeger_url}/search?service=${service:percentencode}"
        f"&tags=%7B{pairs}%7D"
        "&start=${__from}000&end=${__to}000&lookback=custom&limit=50"
    )


def traceql(*spansets: dict[str, str]) -> str:
    """A TraceQL query: each dict is one spanset (conditions on the same span), joined by ``&&`` (in the same
    trace)."""
    return " && ".join(
        "{ " + " && ".join(f'span.{key} = "{value}"' for key, value in spanset.items()) + " }" for spanset in spansets
    )


def tempo_explore(*spansets: dict[str, str]) -> str:
    """Grafana Explore on the Tempo data source ``$tempo``, running the TraceQL search over the dashboard's time
    range. The pane state is JSON in the URL: its punctuation percent-encoded here, label values by Grafana."""
    # Stand-ins for the label placeholders while the JSON is encoded (their `${...:format}` would be escaped).
    placeholders = {label: f"@@{name}@@" for name, label in LABELS.items()}
    query = traceql(*({k: placeholders.get(v, v) for k, v in spanset.items()} for spanset in spansets))
    pane = {
        "ts": {
            "datasource": "${tempo}",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"type": "tempo", "uid": "${tempo}"},
                    "queryType": "traceql",
                    "limit": 50,
                    "query": query,
                }
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    encoded = quote(json.dumps(pane, separators=(",", ":")), safe="")
    # Grafana's own placeholders go in unencoded, so that Grafana still sees and replaces them.
    for grafana in ("${tempo}", "${__from}", "${__to}"):
        encoded = encoded.replace(quote(grafana, safe=""), grafana)
    for grafana, marker in placeholders.items():
        encoded = encoded.replace(quote(marker, safe=""), grafana)
    return f"/explore?schemaVersion=1&panes={encoded}&orgId=${{__org}}"


def links(title: str, tags: dict[str, str]) -> list[builders.DashboardLink]:
    """The search in Jaeger and in Tempo (TraceQL) for spans with these attributes. Jaeger matches all of a
    search's tags on one span (with its resource and events), so they are one span's: the processor writes the
    run's agent as its metrics name it (``agent_eval.agent.label``) on every span it labels, beside the failure
    or the run's summary, so a series labelled ``unknown`` or ``other`` finds its runs too."""
    return [
        builders.DashboardLink(f"Jaeger: {title}").url(jaeger_search(tags)).target_blank(True),
        builders.DashboardLink(f"Tempo: {title}").url(tempo_explore(tags)),
    ]


def terminal_runs_links() -> list[builders.DashboardLink]:
    agent = {sc.AGENT_EVAL_AGENT_LABEL: AGENT, sc.AGENT_EVAL_TRACE_OUTCOME: "terminal"}
    return links("terminal runs of ${__field.labels.agent}", agent)


def outcome_links() -> list[builders.DashboardLink]:
    agent = {sc.AGENT_EVAL_AGENT_LABEL: AGENT, sc.AGENT_EVAL_TRACE_OUTCOME: OUTCOME}
    return links("${__field.labels.outcome} runs of ${__field.labels.agent}", agent)


def mode_links(outcome: str) -> list[builders.DashboardLink]:
    """Runs of the agent with a failure of the series' mode and ``outcome`` (a literal, or the series' label)."""
    failure = {
        sc.AGENT_EVAL_AGENT_LABEL: AGENT,
        sc.AGENT_EVAL_FAILURE_MODE: MODE,
        sc.AGENT_EVAL_FAILURE_OUTCOME: outcome,
    }
    return links("${__field.labels.mode} failures of ${__field.labels.agent}", failure)


def category_links() -> list[builders.DashboardLink]:
    failure = {
        sc.AGENT_EVAL_AGENT_LABEL: AGENT,
        sc.AGENT_EVAL_FAILURE_CATEGORY: CATEGORY,
        sc.AGENT_EVAL_FAILURE_OUTCOME: OUTCOME,
    }
    return links("${__field.labels.category} failures of ${__field.labels.agent}", failure)


# ----------------------------------------------------------------------------------------------------- panels
@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def panel(
    panel_id: int,
    title: str,
    description: str,
    queries: list[Query],
    *,
    unit: str,
    width: int = 12,
    data_links: list[builders.DashboardLink] | None = None,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries.Panel:
    built = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .min(0)
        .height(8)
        .span(width)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        built = built.with_target(
            prometheus.Dataquery().ref_id(ref).expr(query.expr).legend_format(query.legend).range()
        )
    if data_links:
        built = built.data_links(list(data_links))
    if stacked:
        built = built.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(30)
    if bars:
        built = built.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    return built


AGENTS = 'agent=~"$agent"'
JOBS = 'job=~"$job"'
RATE = "[$__rate_interval]"


def agent_panels() -> list[timeseries.Panel]:
    share = "agent:agent_eval_terminal_share:ratio15m"
    baseline = "agent:agent_eval_terminal_share:baseline1d"
    per_trace = "agent_mode:agent_eval_terminal_failures_per_trace:ratio15m"
    per_trace_baseline = "agent_mode:agent_eval_terminal_failures_per_trace:baseline1d"
    return [
        panel(
            PANEL_TERMINAL_SHARE,
            "Terminal-failure share against the agent's baseline",
            "The share of the agent's traces (evaluated in the last 15m) that ended in a terminal failure, its "
            "baseline (the same share over the previous day) and the line AgentTerminalFailureSpike fires above "
            "(2 x baseline and baseline + 10 points; it also needs 20 traces in 15m). The recording rules of "
            "alerts/agent-eval-rules.yaml: the alert's own expressions. Click a series for its terminal runs.",
            [
                Query(f"{share}{{{AGENTS}}}", "{{agent}}: last 15m"),
                Query(f"{baseline}{{{AGENTS}}}", "{{agent}}: baseline (previous day)"),
                # The larger of the alert's two margins, per agent: where the share must go to fire.
                Query(
                    f"(2 * {baseline}{{{AGENTS}}} > {baseline}{{{AGENTS}}} + 0.10) or ({baseline}{{{AGENTS}}} + 0.10)",
                    "{{agent}}: alert threshold",
                ),
            ],
            unit="percentunit",
            data_links=terminal_runs_links(),
        ),
        panel(
            PANEL_OUTCOMES,
            "Outcomes",
            "Evaluated traces per second, by agent and outcome: success, recovered (every failure was "
            "corrected) or terminal (a failure decided the run). Click a series for those runs.",
            [
                Query(
                    f"sum by (agent, outcome) (rate(agent_eval_traces_total{{{AGENTS}}}{RATE}))",
                    "{{agent}} {{outcome}}",
                )
            ],
            unit="reqps",
            stacked=True,
            data_links=outcome_links(),
        ),
        panel(
            PANEL_MODE_SPIKE,
            "Terminal failures per trace, by mode, against the baseline",
            "AgentFailureModeSpike's expressions: terminal failures of each mode per evaluated trace of the agent "
            "over the last 15m (modes seen in the window only), and the same over the previous day. The alert "
            "fires above 3 x baseline and baseline + 0.05, with at least 5 such failures in 15m.",
            [
                Query(f"{per_trace}{{{AGENTS}}} > 0", "{{agent}} {{category}}.{{mode}}: last 15m"),
                Query(
                    f"{per_trace_baseline}{{{AGENTS}}} and on (agent, category, mode) ({per_trace}{{{AGENTS}}} > 0)",
                    "{{agent}} {{category}}.{{mode}}: baseline",
                ),
            ],
            unit="short",
            data_links=mode_links("terminal"),
        ),
        panel(
            PANEL_FAILURES_BY_MODE,
            "Failures by mode",
            "Failures found per second, by agent, failure mode and outcome (terminal, or recovered when the agent "
            "corrected it). Modes without failures in the interval are left out. Click a series for those runs.",
            [
                Query(
                    "sum by (agent, category, mode, outcome) "
                    f'(rate(agent_eval_failures_total{{{AGENTS}, outcome=~"$outcome"}}{RATE})) > 0',
                    "{{agent}} {{category}}.{{mode}} ({{outcome}})",
                )
            ],
            unit="reqps",
            data_links=mode_links(OUTCOME),
        ),
        panel(
            PANEL_FAILURES_BY_CATEGORY,
            "Failures by category",
            "Failures found per second, by agent, category of failure mode and outcome, stacked.",
            [
                Query(
                    "sum by (agent, category, outcome) "
                    f'(rate(agent_eval_failures_total{{{AGENTS}, outcome=~"$outcome"}}{RATE})) > 0',
                    "{{agent}} {{category}} ({{outcome}})",
                )
            ],
            unit="reqps",
            stacked=True,
            data_links=category_links(),
        ),
        panel(
            PANEL_GUARD_RECOVERIES,
            "Guard recoveries",
            "Recovered failures at steps the in-loop guard sent back, per second, by agent and mode: the failures "
            "the guard turned around before they happened. Click a series for those runs.",
            [
                Query(
                    f"sum by (agent, mode) (rate(agent_eval_guard_recoveries_total{{{AGENTS}}}{RATE}))",
                    "{{agent}} {{mode}}",
                )
            ],
            unit="reqps",
            data_links=mode_links("recovered"),
        ),
    ]


def processor_panels() -> list[timeseries.Panel]:
    def quantile(q: float) -> Query:
        return Query(
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(agent_eval_evaluation_duration_seconds_bucket{{{JOBS}}}{RATE})))",
            f"p{round(q * 100)}",
        )

    return [
        panel(
            PANEL_LATENCY,
            "Evaluation latency",
            "Time to evaluate one trace (after it is complete), over every replica: quantiles and the mean.",
            [
                quantile(0.5),
                quantile(0.9),
                quantile(0.99),
                Query(
                    f"sum(rate(agent_eval_evaluation_duration_seconds_sum{{{JOBS}}}{RATE}))"
                    f" / sum(rate(agent_eval_evaluation_duration_seconds_count{{{JOBS}}}{RATE}))",
                    "mean",
                ),
            ],
            unit="s",
        ),
        panel(
            PANEL_SPANS,
            "Spans in and out, traces evaluated",
            "Spans received and spans handed on to the downstream, per second and replica, and traces evaluated. "
            "Spans in with no traces evaluated is AgentEvalNotEvaluating; spans in above spans out for long "
            "means the queue grows.",
            [
                Query(f"sum by (instance) (rate(agent_eval_spans_received_total{{{JOBS}}}{RATE}))", "{{instance}} in"),
                Query(f"sum by (instance) (rate(agent_eval_spans_exported_total{{{JOBS}}}{RATE}))", "{{instance}} out"),
                Query(
                    f"sum by (instance) (rate(agent_eval_traces_total{{{JOBS}}}{RATE}))",
                    "{{instance}} traces evaluated",
                ),
            ],
            unit="reqps",
        ),
        panel(
            PANEL_QUEUE,
            "Export queue depth",
            "Requests waiting on disk, per replica: received and not yet taken by the downstream (the inbox), and "
            "labelled but refused or not taken at once (the outbox). Grows while the downstream is down or slow, "
            "or evaluation falls behind; drains when it is back.",
            [Query(f"sum by (instance) (agent_eval_queue_depth{{{JOBS}}})", "{{instance}}")],
            unit="short",
            width=8,
        ),
        panel(
            PANEL_EXPORT_FAILURES,
            "Export failures",
            "Failed attempts to deliver to the downstream, per second and replica (each is retried, or dead-"
            "lettered if refused for good). In every 5m for 10m: AgentEvalExportFailing.",
            [
                Query(
                    f"sum by (instance) (rate(agent_eval_export_failures_total{{{JOBS}}}{RATE}))",
                    "{{instance}}",
                )
            ],
            unit="reqps",
            width=8,
        ),
        panel(
            PANEL_DEADLETTERS,
            "Dead letters",
            "Requests the downstream refused for good, moved to the dead letters, per interval, by replica and "
            "status (reason). List and replay them with `otel-agent-eval deadletter list` / `replay`.",
            [
                Query(
                    f"sum by (instance, reason) (increase(agent_eval_deadletters_total{{{JOBS}}}{RATE}))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="short",
            width=8,
            bars=True,
        ),
    ]


# -------------------------------------------------------------------------------------------------- dashboard
def variables() -> list[builders.QueryVariable | builders.CustomVariable | builders.TextBoxVariable]:
    return [
        builders.QueryVariable("job")
        .label("Job")
        .description("The Prometheus job(s) scraping the processor replicas (the processor panels).")
        .datasource(PROMETHEUS)
        .query("label_values(agent_eval_spans_received_total, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
        builders.QueryVariable("agent")
        .label("Agent")
        .description("The agent label (gen_ai.agent.name, bounded by the processor: see docs/processor.md).")
        .datasource(PROMETHEUS)
        .query("label_values(agent_eval_traces_total, agent)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
        builders.CustomVariable("outcome")
        .label("Failure outcome")
        .description("Which failures the failure panels show: terminal, recovered, or both.")
        .values("terminal,recovered")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
        builders.TextBoxVariable("jaeger_url")
        .label("Jaeger URL")
        .description("The Jaeger UI's base address, for the links from the failure panels.")
        .default_value("http://127.0.0.1:16686")
        .current(model.VariableOption(selected=True, text="http://127.0.0.1:16686", value="http://127.0.0.1:16686")),
        builders.TextBoxVariable("service")
        .label("Trace service")
        .description(
            "The service.name the agents' spans carry in the trace store (Jaeger searches within one service). "
            "Runs sent by `otel-agent-eval replay` carry otel-agent-eval-import."
        )
        .default_value("otel-agent-eval-import")
        .current(model.VariableOption(selected=True, text="otel-agent-eval-import", value="otel-agent-eval-import")),
    ]


def build() -> builders.Dashboard:
    board = (
        builders.Dashboard("otel-agent-eval: agent failures and the processor")
        .uid(UID)
        .description(
            "Failures of LLM agents found by otel-agent-eval serve, against each agent's baseline, and the health "
            "of the evaluation processor. Generated by dashboards/generate.py: do not edit by hand."
        )
        .tags(["otel-agent-eval", "llm-agents", "generated"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone(common.TimeZoneBrowser)
        .with_variable(
            builders.DatasourceVariable("datasource")
            .label("Prometheus")
            .type("prometheus")
            .current(model.VariableOption(selected=True, text="Prometheus", value="prometheus"))
        )
        .with_variable(
            builders.DatasourceVariable("tempo")
            .label("Tempo")
            .description("The Tempo data source the Tempo links open in Explore (if you use Tempo).")
            .type("tempo")
        )
    )
    for variable in variables():
        board = board.with_variable(variable)
    board = board.with_row(builders.Row("Agents: outcomes and failures").id(1))
    for agent_panel in agent_panels():
        board = board.with_panel(agent_panel)
    board = board.with_row(builders.Row("The processor").id(8))
    for processor_panel in processor_panels():
        board = board.with_panel(processor_panel)
    return board


def dashboard_json() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def provisioning_dashboards() -> str:
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "otel-agent-eval",
                "orgId": 1,
                "folder": "otel-agent-eval",
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,  # the generator is the source: edits in the UI would be lost
                "updateIntervalSeconds": 60,
                "options": {"path": "/var/lib/grafana/dashboards/otel-agent-eval", "foldersFromFilesStructure": False},
            }
        ],
    }
    return _yaml(
        "Grafana dashboard provisioning: copy dashboards/agent-eval.json to the path below (or mount dashboards/\n"
        "there) and this file to /etc/grafana/provisioning/dashboards/. See dashboards/README.md.",
        provider,
    )


def provisioning_datasources() -> str:
    sources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": "http://127.0.0.1:9090",
                "isDefault": True,
                "jsonData": {"timeInterval": "15s"},  # the scrape interval: $__rate_interval is at least 4 of it
            },
            {"name": "Jaeger", "uid": "jaeger", "type": "jaeger", "access": "proxy", "url": "http://127.0.0.1:16686"},
            {"name": "Tempo", "uid": "tempo", "type": "tempo", "access": "proxy", "url": "http://127.0.0.1:3200"},
        ],
    }
    return _yaml(
        "An example of Grafana data source provisioning for the dashboard: the Prometheus that scrapes\n"
        "`otel-agent-eval serve` (with alerts/agent-eval-rules.yaml loaded: two panels read its recording rules),\n"
        "and Jaeger or Tempo, where the labelled spans go. Adjust the URLs; keep what you use.",
        sources,
    )


def _yaml(comment: str, document: object) -> str:
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    header += "# Generated by dashboards/generate.py: do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False)


def outputs() -> dict[Path, str]:
    return {
        HERE / "agent-eval.json": dashboard_json(),
        HERE / "provisioning" / "dashboards.yaml": provisioning_dashboards(),
        HERE / "provisioning" / "datasources.yaml": provisioning_datasources(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not current")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "not current" if args.check else "written"
        print(f"{path.relative_to(HERE.parent)}: {verb}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
