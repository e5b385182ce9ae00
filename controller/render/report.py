"""A run and its history as HTML, Markdown or CSV.

The HTML file is self-contained (figures inlined as PNG data URIs), so it can be
mailed, attached to a CI job or opened from a network share.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from typing import Optional

from controller.analysis import opprofiles
from controller.analysis.stats import key_text
from controller.history import CellHistory, History
from controller.records import RunReport, to_builtins
from controller.render.format import format_us, interval_text, verdict_label
from controller.render.tables import centre_text, peak_text, spread_and_count


def _flatten(value: object, prefix: str, out: dict[str, object]) -> dict[str, object]:
    """Nested blocks as `block.key` columns, lists joined: a cell as one CSV row."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = "; ".join(map(str, value))
    else:
        out[prefix] = value
    return out


def _csv_fields(cell) -> dict:
    """A cell for one CSV row: a per-op profile keeps its method and reconciliation only
    (its nodes need a table of their own: the JSON or the HTML report)."""
    fields = to_builtins(cell)
    profile = fields.get("op_profile")
    if profile:
        fields["op_profile"] = {"method": profile["method"], "reconciled": profile["reconciled"]}
    coverage = fields.get("delegate_coverage")
    if coverage and coverage.get("not_delegated"):
        coverage["not_delegated"] = [f"#{ref['index']} {ref['op_type']}" for ref in coverage["not_delegated"]]
    return fields


def write_csv(run: RunReport, out: io.TextIOBase) -> None:
    """Every cell of the run as one CSV row, columns named by their keys in docs/contract.md."""
    rows = [_flatten(_csv_fields(cell), "", {}) for cell in run.cells]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)


def _cell_rows(run: RunReport) -> list[list[str]]:
    """One row per cell as the terminal table gives it: a mean marked `(mean)` where the source
    printed no median, a footprint marked `(growth)`, `ok (unstable)` in the status."""
    rows = []
    for c in sorted(run.cells, key=lambda c: (c.device, c.model, c.delegate or "", c.threads, c.round)):
        latency = c.latency_us
        rows.append([c.device, c.model, c.variant or "-", c.delegate or "-", str(c.threads), str(c.round),
                     centre_text(c), format_us(latency.p90 if latency else None),
                     *spread_and_count(c), format_us(c.init_ms * 1000 if c.init_ms is not None else None),
                     peak_text(c),
                     f"{c.accuracy.top1:.1%}" if c.accuracy else "-",
                     ("ok (unstable)" if c.unstable else "ok") if c.status == "ok" else f"failed: {c.error}"])
    return rows


CELL_HEADER = ["device", "model", "variant", "delegate", "threads", "round", "p50", "p90", "spread", "n", "init",
               "peak MB", "top-1", "status"]


VERDICT_HEADER = ["verdict", "cell", "p50 baseline → candidate", "change [CI]", "rounds", "disturbed",
                  "step in the history", "notes"]


def _step_text(cell: CellHistory) -> str:
    return "; ".join(f"{s.change:+.1%} [{s.low:+.1%}, {s.high:+.1%}] at run {s.run_id} "
                     f"({s.started_at[:16].replace('T', ' ')})" for s in cell.steps) or "none"


def _verdict_rows(history: History) -> list[list[str]]:
    """Per cell of the run: its verdict against the baseline (when checked) and the steps found."""
    check = {(c.device, c.model, c.delegate, c.threads): c for c in (history.check.cells if history.check else [])}
    rows = []
    for cell in history.cells:
        found = check.get(cell.key)
        latency = found.latency_p50 if found else None
        rows.append([
            verdict_label(found) if found else "not checked", key_text(cell.key),
            f"{format_us(latency.baseline)} → {format_us(latency.candidate)}" if latency else "-",
            interval_text(latency),
            f"{latency.rounds[0]}/{latency.rounds[1]}" if latency else "-",
            f"{found.disturbed_rounds[0]}/{found.disturbed_rounds[1]}" if found else "-",
            _step_text(cell), "; ".join(found.flags) if found else ""])
    return rows


def _check_line(history: History) -> str:
    check = history.check
    if check is None:
        return "No regression check of this run is stored (`controller regress` stores one)."
    if check.baseline is None:
        return check.note or "No baseline yet."
    return (f"Checked against run {check.baseline}: latency threshold {check.threshold:.0%}, "
            f"{check.confidence:.1%} intervals; {check.disturbed_rounds} disturbed round(s) left out.")


def _history_line(history: History) -> str:
    scope = f"runs tagged {history.tag}" if history.tag else "runs of any tag with a cell of this run"
    return f"{len(history.runs)} run(s) of history ({scope})"


def _fact_rows(run: RunReport) -> list[list[str]]:
    rows = []
    for name, info in sorted(run.devices.items()):
        f = info.facts
        cores = f.cpu.count if f.cpu.count is not None else "?"
        rows.append([name, f.board or f.machine, f"{cores} x {f.cpu.model or '?'}"
                     + (f" @ {f.cpu.max_freq_mhz:.0f} MHz" if f.cpu.max_freq_mhz else ""),
                     f"{f.memory_mb} MB" if f.memory_mb else "-", f.os, f.kernel,
                     f"{info.runtime or '-'} {info.runtime_version or ''}".strip(),
                     "-" if f.temp_c is None else f"{f.temp_c:.1f} C",
                     ", ".join(f.throttled.since_boot) if f.throttled and f.throttled.since_boot else "-"])
    return rows


FACT_HEADER = ["device", "board", "CPU", "memory", "OS", "kernel", "runtime", "temperature",
               "throttled since boot"]


def _title(run: RunReport) -> str:
    return f"edgebench run {run.run_id}" + (f" ({run.tag})" if run.tag else "")


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(history: History) -> str:
    """One self-contained HTML page: figures, cells and device facts."""
    from controller.render import plots  # matplotlib, only for the HTML page

    run = history.run
    charts = [
        ("Latency trend", plots.latency_trend(history.runs, history.regressed, history.cells)),
        ("Latency distribution", plots.latency_distribution(run)),
        ("Thread scaling", plots.thread_scaling(run)),
        ("Variants side by side", plots.variant_tradeoff(run.variants)),
    ]
    sections = [f"<h2>{html.escape(title)}</h2><figure>{_img(title, chart.png())}"
                f"<figcaption>{html.escape(chart.caption)}</figcaption></figure>"
                for title, chart in charts if chart is not None]
    meta = ", ".join(f"{k}={v}" for k, v in run.meta.items())
    summary = (f"started {run.started_at}, finished {run.finished_at or '-'}"
               f"{'' if run.complete else ' (INCOMPLETE)'}; {len(run.cells)} cells, "
               f"{sum(c.status != 'ok' for c in run.cells)} failed; {_history_line(history)}"
               + (f"; {meta}" if meta else ""))
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in run.errors)
    style = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f0f0f0}"
             "img{max-width:100%;border:1px solid #eee}.warn{color:#a40}figure{margin:0 0 1em 0}"
             "figcaption{font-size:13px;color:#444;max-width:1296px;margin-top:4px}"
             ".fallback{color:#fff;background:#e8710a;padding:4px 8px;display:inline-block}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(_title(run))}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(_title(run))}</h1>"
            f"<p>{html.escape(summary)}</p>" + (f"<ul class=\"warn\">{errors}</ul>" if errors else "")
            + "<h2>Verdicts and steps</h2>" + f"<p>{html.escape(_check_line(history))}</p>"
            + _html_table(VERDICT_HEADER, _verdict_rows(history))
            + "".join(sections) + _op_profile_section(run)
            + "<h2>Cells</h2>" + _html_table(CELL_HEADER, _cell_rows(run))
            + "<h2>Devices</h2>" + _html_table(FACT_HEADER, _fact_rows(run)) + "</body></html>")


def _img(title: str, png: bytes) -> str:
    return (f"<img alt=\"{html.escape(title)}\" "
            f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">")


def _op_profile_section(run: RunReport) -> str:
    """Per-op charts: each variant family per op type, then each profiled cell, with the
    nodes its delegate left to the CPU highlighted."""
    from controller.render import op_plots  # matplotlib, only for the HTML page

    cells = opprofiles.profiled_cells(run)
    if not cells:
        return ""
    parts = ["<h2>Per-op profiles</h2>"]
    for family in opprofiles.family_op_types(run):
        title = f"{family.family} on {family.device}, {family.delegate} x{family.threads}"
        parts.append(f"<h3>{html.escape(title)}: variants per op type</h3>"
                     + _img(title, op_plots.family_op_types(family)))
    for cell in sorted(cells, key=lambda c: (c.device, c.model, c.delegate, c.threads)):
        label = opprofiles.cell_label(cell)
        parts.append(f"<h3>{html.escape(label)}</h3>" + _img(label, op_plots.top_ops(cell)))
        coverage = cell.delegate_coverage
        if coverage and coverage.not_delegated:
            of_total = f" of {coverage.total_nodes}" if coverage.total_nodes is not None else ""
            parts.append(f"<p class=\"fallback\">{len(coverage.not_delegated)}{of_total} nodes "
                         f"fell back to the CPU: {html.escape(opprofiles.fallen_back_text(coverage.not_delegated))} "
                         "(nodes " + ", ".join(f"#{ref.index}" for ref in coverage.not_delegated) + ")</p>")
        for warning in cell.op_profile.warnings:
            parts.append(f"<p class=\"warn\">{html.escape(warning)}</p>")
    return "".join(parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def render_markdown(history: History, trend: Optional[list[str]] = None) -> str:
    """The run's cells and devices as Markdown tables, with the p50 trend of each cell."""
    run = history.run
    parts = [f"# {_title(run)}", "", f"Started {run.started_at}; {len(run.cells)} cells"
             + ("" if run.complete else " (incomplete)") + f"; {_history_line(history)}.", "",
             "## Verdicts and steps", "", _check_line(history), "", _md_table(VERDICT_HEADER, _verdict_rows(history)),
             "", "## Cells", "",
             _md_table(CELL_HEADER, _cell_rows(run)), "", "## Devices", "", _md_table(FACT_HEADER, _fact_rows(run))]
    if len(history.runs) > 1:
        parts += ["", f"## p50 over the last {len(history.runs)} runs", "",
                  _md_table(["cell", "p50 per run (oldest first)"], _trend_rows(history))]
    profiled = _top_ops_rows(run)
    if profiled:
        parts += ["", "## Slowest ops per cell", "",
                  _md_table(["cell", "Σ ops / p50", "slowest ops (time per run, share)", "left to the CPU"], profiled)]
    return "\n".join(parts) + "\n"


def _top_ops_rows(run: RunReport) -> list[list[str]]:
    """Per profiled cell: its reconciliation, its slowest nodes and the nodes its delegate left."""
    rows = []
    for cell in sorted(opprofiles.profiled_cells(run), key=lambda c: (c.device, c.model, c.delegate, c.threads)):
        profile = cell.op_profile
        top = ", ".join(f"#{n.index} {n.op_type} {format_us(n.avg_us)}"
                        + (f" ({n.share:.0%})" if n.share is not None else "") for n in opprofiles.top_nodes(profile))
        left = cell.delegate_coverage.not_delegated if cell.delegate_coverage else None
        rows.append([opprofiles.cell_label(cell), "-" if profile.reconciled is None else f"{profile.reconciled:.2f}",
                     top or "-", opprofiles.fallen_back_text(left) if left else "-"])
    return rows


def _trend_rows(history: History) -> list[list[str]]:
    """Per cell of the run, its p50 in each run of its history, regressions marked, steps as |."""
    rows = []
    for cell in history.cells:
        starts = {s.run_id for s in cell.steps}
        values = [("| " if p.run_id in starts else "") + format_us(p.p50_us)
                  + (" ⚠" if cell.key in history.regressed.get(p.run_id, set()) else "") for p in cell.points]
        rows.append([key_text(cell.key), " → ".join(values)])
    return rows
