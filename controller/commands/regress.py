"""`controller regress`: did the candidate run get slower, fatter or less accurate?"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import msgspec
from rich.table import Table

from agent.schema import CellComparison, FigureChange, RegressReport
from controller import locations, regress
from controller.commands import print_json, stderr_console, stdout_console
from controller.display import format_mb, format_us
from controller.store import ResultStore, RunNotFound

_STYLE = {"REGRESSION": "bold red", "IMPROVEMENT": "green", "NO CHANGE": "", "INCONCLUSIVE": "yellow"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regress", help="compare a candidate run with a baseline, cell by cell")
    p.add_argument("--baseline", required=True, metavar="REF",
                   help="run id, tag (its latest run), latest, or last-good (newest earlier run of the "
                        "candidate's tag without a regression)")
    p.add_argument("--candidate", default="latest", metavar="REF", help="run id, tag or latest (default)")
    p.add_argument("--threshold", default="5%", help="minimum latency effect (default 5%%)")
    p.add_argument("--model-threshold", action="append", default=[], metavar="MODEL=PCT",
                   help="latency threshold for one model file, e.g. tiny.tflite=15%% (repeatable)")
    p.add_argument("--memory-threshold", default="10%", help="minimum peak-memory effect (default 10%%)")
    p.add_argument("--accuracy-threshold", default="1", metavar="POINTS",
                   help="top-1 points that count as an accuracy change (default 1)")
    p.add_argument("--min-rounds", type=int, default=regress.MIN_ROUNDS,
                   help=f"rounds each run needs for a latency verdict (default {regress.MIN_ROUNDS})")
    p.add_argument("--fail-on", choices=("regression", "never"), default="regression",
                   help="exit 1 on a confirmed regression (default) or never")
    p.add_argument("--markdown", nargs="?", const="-", metavar="OUT.md",
                   help="also write a Markdown summary (to stdout without a path), e.g. for a CI job summary")
    p.add_argument("--db", help="results database (default: EDGEBENCH_DB or the user data dir)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON document")
    p.set_defaults(func=main)


def thresholds_from(args: argparse.Namespace) -> regress.Thresholds:
    """The thresholds the flags name; ValueError with one line when one is malformed."""
    per_model = {}
    for item in args.model_threshold:
        model, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--model-threshold expects MODEL=PCT, got {item!r}")
        per_model[model.strip()] = regress.parse_percent(value)
    return regress.Thresholds(
        latency=regress.parse_percent(args.threshold), memory=regress.parse_percent(args.memory_threshold),
        accuracy=float(args.accuracy_threshold) / 100, per_model=per_model, min_rounds=args.min_rounds)


def resolve_pair(store: ResultStore, baseline: str, candidate: str) -> tuple[str, str]:
    """Run ids for the two references; `last-good` is relative to the candidate's tag."""
    candidate_id = store.resolve(candidate)
    if baseline == "last-good":
        return store.last_good(store.load_run(candidate_id).tag, before=candidate_id), candidate_id
    return store.resolve(baseline), candidate_id


def main(args: argparse.Namespace) -> int:
    console = stderr_console()
    try:
        thresholds = thresholds_from(args)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    with ResultStore(args.db or locations.default_db()) as store:
        try:
            baseline_id, candidate_id = resolve_pair(store, args.baseline, args.candidate)
        except RunNotFound as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            return 2
        if baseline_id == candidate_id:
            console.print(f"[red]error:[/red] baseline and candidate are the same run ({baseline_id})")
            return 2
        baseline, candidate = store.load_run(baseline_id), store.load_run(candidate_id)
        report = regress.compare(baseline, candidate, thresholds)
        store.record_check(candidate_id, baseline_id, report.regressed, msgspec.json.encode(report).decode())
    if not candidate.complete:
        console.print(f"[yellow]warning:[/yellow] candidate run {candidate_id} is incomplete")
    if args.json:
        print_json(report)
    # stdout carries one document: the JSON, else the Markdown when it goes there, else the table.
    markdown_out = args.markdown == "-" and not args.json
    (console if args.json or markdown_out else stdout_console()).print(regress_table(report))
    if args.markdown:
        text = regress_markdown(report)
        if args.markdown == "-":
            (sys.stdout if markdown_out else sys.stderr).write(text)
        else:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(text)
    return 1 if report.regressed and args.fail_on == "regression" else 0


def _change(figure: Optional[FigureChange], percent: bool = True) -> str:
    if figure is None or figure.change is None:
        return "-"
    if percent:
        return f"{figure.change:+.1%} [{figure.low:+.1%}, {figure.high:+.1%}]"
    return f"{-figure.change * 100:+.1f} pt"


def _latency(figure: FigureChange) -> str:
    return f"{format_us(figure.baseline)} → {format_us(figure.candidate)}"


def _memory(figure: Optional[FigureChange]) -> str:
    if figure is None:
        return "-"
    change = "" if figure.change is None else f" ({figure.change:+.1%})"
    return f"{format_mb(figure.baseline)} → {format_mb(figure.candidate)} MB{change}"


def _rows(report: RegressReport) -> list[CellComparison]:
    order = {verdict: i for i, verdict in enumerate(regress.VERDICTS)}
    return sorted(report.cells, key=lambda c: (order[c.verdict], c.device, c.model, c.delegate, c.threads))


def _summary(report: RegressReport) -> str:
    counts = ", ".join(f"{n} {verdict.lower()}" for verdict, n in report.counts.items() if n)
    return (f"baseline {report.baseline} vs candidate {report.candidate}: {counts or 'no shared cells'} "
            f"(latency threshold {report.threshold:.0%})")


def regress_table(report: RegressReport) -> Table:
    """The comparison as a terminal table, regressions first."""
    table = Table(title="regression check", caption=_summary(report))
    for name in ("verdict", "device", "model", "delegate", "threads", "p50", "change [95% CI]", "rounds",
                 "peak memory", "top-1", "notes"):
        table.add_column(name)
    for cell in _rows(report):
        latency = cell.latency_p50
        table.add_row(
            f"[{_STYLE[cell.verdict]}]{cell.verdict}[/]" if _STYLE[cell.verdict] else cell.verdict,
            cell.device, cell.model, cell.delegate, str(cell.threads), _latency(latency),
            _change(latency), f"{latency.rounds[0]}/{latency.rounds[1]}",
            _memory(cell.memory_peak),
            _change(cell.accuracy_top1, percent=False), "; ".join(cell.flags))
    return table


def regress_markdown(report: RegressReport) -> str:
    """The comparison as Markdown for a CI job summary."""
    head = "## edgebench: " + ("regression found" if report.regressed else "no regression") + "\n\n"
    lines = [head + _summary(report) + "\n",
             "| verdict | device | model | delegate | threads | p50 | change [95% CI] | peak memory | top-1 | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cell in _rows(report):
        verdict = f"**{cell.verdict}**" if cell.verdict == "REGRESSION" else cell.verdict
        lines.append(" | ".join([
            f"| {verdict}", cell.device, f"`{cell.model}`", cell.delegate, str(cell.threads),
            _latency(cell.latency_p50), _change(cell.latency_p50), _memory(cell.memory_peak),
            _change(cell.accuracy_top1, percent=False), "; ".join(cell.flags) + " |"]))
    for title, keys in (("Only in the baseline", report.only_in_baseline),
                        ("Only in the candidate", report.only_in_candidate)):
        if keys:
            lines.append(f"\n{title}: " + ", ".join(keys))
    return "\n".join(lines) + "\n"
