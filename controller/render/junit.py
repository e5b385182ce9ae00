"""`controller regress --junit OUT.xml`: the comparison as a JUnit XML report.

CI systems (GitLab, Jenkins, GitHub test reporters) read this format: one test case
per compared cell, a failure for each REGRESSION, a skipped case for each INCONCLUSIVE
(measure more rounds before judging), and a pass for NO CHANGE and IMPROVEMENT.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

from controller.records import CellComparison, FigureChange, RegressReport
from controller.render.format import change_text, verdict_label


def case_name(cell: CellComparison) -> str:
    """`model delegate xN`: the cell within its device's suite."""
    return f"{cell.model} {cell.delegate} x{cell.threads}"


def _figure(name: str, metric: str, figure: Optional[FigureChange]) -> Optional[str]:
    if figure is None or figure.change is None:
        return None
    bounds = "" if figure.low is None else f" [{figure.low:+.1%}, {figure.high:+.1%}]"
    reason = f"; {figure.reason}" if figure.reason else ""
    return (f"{name} {figure.verdict}: {figure.baseline:g} -> {figure.candidate:g} "
            f"({change_text(metric, figure)}{bounds}, threshold {figure.threshold:.0%}, rounds {figure.rounds[0]}/"
            f"{figure.rounds[1]}{reason})")


def describe(cell: CellComparison) -> str:
    """What was found: the verdict and the metrics that made it, then one figure a line (the
    message and body of a failure or skip)."""
    lines = [verdict_label(cell), _figure("latency p50 (us)", "latency_p50", cell.latency_p50),
             _figure("peak memory (MB)", "memory_peak", cell.memory_peak),
             _figure("top-1", "accuracy_top1", cell.accuracy_top1),
             _figure("nodes left to the CPU", "delegate_coverage", cell.delegate_coverage),
             *(f"note: {flag}" for flag in cell.flags)]
    return "\n".join(line for line in lines if line)


def to_xml(report: RegressReport) -> str:
    """The JUnit XML document for one regression check."""
    failures = sum(c.verdict == "REGRESSION" for c in report.cells)
    skipped = sum(c.verdict == "INCONCLUSIVE" for c in report.cells)
    root = ET.Element("testsuites", name="edgebench regress", tests=str(len(report.cells)),
                      failures=str(failures), skipped=str(skipped), errors="0")
    suite = ET.SubElement(root, "testsuite", name=f"{report.baseline} vs {report.candidate}",
                          tests=str(len(report.cells)), failures=str(failures), skipped=str(skipped), errors="0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("baseline", report.baseline), ("candidate", report.candidate),
                        ("latency_threshold", f"{report.threshold:g}")):
        ET.SubElement(properties, "property", name=name, value=value)
    for cell in sorted(report.cells, key=lambda c: (c.device, c.model, c.delegate, c.threads)):
        case = ET.SubElement(suite, "testcase", classname=f"edgebench.{cell.device}", name=case_name(cell),
                             time="0")
        text = describe(cell)
        if cell.verdict == "REGRESSION":
            ET.SubElement(case, "failure", type="REGRESSION", message=text.splitlines()[0]).text = text
        elif cell.verdict == "INCONCLUSIVE":
            ET.SubElement(case, "skipped", message=text.splitlines()[0]).text = text
        else:
            ET.SubElement(case, "system-out").text = text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
