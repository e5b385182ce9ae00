"""Results that travel: runs as JSON Lines documents, out of one store and into another.

One line is one `RunDocument`: the run as `controller run --json` prints it (with its
`schema_version`), plus the regression checks stored with it as the candidate, so that
a report made from the imported copy marks the same cells. Importing is idempotent:
a run whose id the target has already is left as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional, Union

import msgspec

from controller.records import RUN_SCHEMA_VERSION, RegressReport, RunReport
from controller.store import ResultStore
from controller.validate import DocumentError, check_run, shown

log = logging.getLogger(__name__)

SCHEMA_RESOURCE = "run-document.schema.json"


class RunDocument(RunReport, kw_only=True):
    """A run as exported: the run document and the regression checks that judged it."""

    checks: list[RegressReport] = msgspec.field(default_factory=list)


def json_schema() -> dict:
    """The JSON Schema of a run document, generated from the record types."""
    schema = msgspec.json.schema(RunDocument)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgebench run document"
    return schema


def json_schema_text() -> str:
    """`json_schema()` as the text of the file that ships in the package."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def shipped_schema() -> str:
    """The JSON Schema file that ships in the package (`controller/schemas/`)."""
    return resources.files("controller.schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


def select(store: ResultStore, run: Optional[str] = None, tag: Optional[str] = None) -> list[str]:
    """Run ids to export, oldest first: one run, every run of a tag, or every run."""
    if run is not None:
        return [store.resolve(run)]
    return store.all_run_ids(tag)


def documents(store: ResultStore, run_ids: Iterable[str]) -> Iterator[RunDocument]:
    """The run documents of these runs, read one at a time."""
    for run_id in run_ids:
        report = store.load_run(run_id)
        yield RunDocument(**msgspec.structs.asdict(report), checks=store.regress_reports([run_id]))


def export_lines(store: ResultStore, run_ids: Iterable[str]) -> Iterator[str]:
    """One JSON line (with its newline) per run."""
    for document in documents(store, run_ids):
        yield msgspec.json.encode(document).decode() + "\n"


@dataclass
class ImportSummary:
    """What an import did, counted."""

    runs_added: int = 0
    runs_present: int = 0
    cells_added: int = 0
    checks_added: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal."""
        text = (f"imported {self.runs_added} run(s) with {self.cells_added} cell(s) and "
                f"{self.checks_added} regression check(s); {self.runs_present} run(s) already present")
        return text + (f"; {len(self.problems)} line(s) rejected" if self.problems else "")


def parse_line(text: Union[str, bytes], number: int, source: str) -> RunDocument:
    """One line as a run document, checked against the contract's bounds (`controller.validate`)
    and its timestamps in UTC; ValueError naming the line, the run and the field at fault."""
    try:
        document = msgspec.json.decode(text, type=RunDocument)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{source}:{number}: not a run document: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"{source}:{number}: not JSON: {exc}") from None
    if document.schema_version > RUN_SCHEMA_VERSION:
        raise ValueError(f"{source}:{number}: run {shown(document.run_id)} has schema_version "
                         f"{document.schema_version}, newer than this edgebench reads ({RUN_SCHEMA_VERSION})")
    try:
        return check_run(document)
    except DocumentError as exc:
        raise ValueError(f"{source}:{number}: run {shown(document.run_id)}: {exc}") from None


def import_lines(store: ResultStore, lines: Iterable[Union[str, bytes]], source: str = "-") -> ImportSummary:
    """Store every run document of a JSON Lines stream (text, or bytes read as UTF-8) that the store lacks.

    A bad line (not JSON, not a run document, or a value out of bounds) is reported with
    one line naming it and skipped; the others are imported.
    Each run is one transaction. Checks are stored after all runs, since a check needs
    both of its runs, and skipped when the baseline is in neither the store nor the file.
    """
    summary = ImportSummary()
    checks: list[RegressReport] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            document = parse_line(text, number, source)
        except ValueError as exc:
            summary.problems.append(str(exc))
            continue
        run = RunReport(**{name: getattr(document, name) for name in RunReport.__struct_fields__})
        if store.add_run(run):
            summary.runs_added += 1
            summary.cells_added += len(run.cells)
            log.info("imported run %s (%d cells)", run.run_id, len(run.cells))
        else:
            summary.runs_present += 1
            log.info("run %s is already stored: left as it is", run.run_id)
        checks += document.checks
    for check in checks:
        if not (store.has_run(check.baseline) and store.has_run(check.candidate)):
            summary.problems.append(f"{source}: check of {shown(check.candidate)} against {shown(check.baseline)} "
                                    "skipped: the baseline run is not in the file or the database")
            continue
        summary.checks_added += store.add_check(check)
    return summary
