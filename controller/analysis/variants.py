"""The variant comparison: a family side by side per device, and which variant to ship.

Pure functions over measured cells. Speed-up and accuracy delta are against the
family reference at the same delegate and thread count (a delegate can change both).
The recommendation is the fastest variant and setting whose top-1 accuracy is within
`tolerance` of the reference's; without a dataset, top-1 agreement with the reference's
outputs stands in for accuracy, and the comparison says so.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

from agent.wire.records import Cell
from controller.analysis.stats import median_or_none
from controller.families import Family
from controller.records import FamilyComparison, Recommendation, VariantRow

DEFAULT_TOLERANCE = 0.01


def rows_for(cells: list[Cell]) -> list[VariantRow]:
    """One row per model x delegate x threads, medians over rounds of the ok cells."""
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.model, cell.delegate, cell.threads)].append(cell)
    rows = []
    for (model, delegate, threads), group in groups.items():
        ok = [c for c in group if c.status == "ok" and c.latency_us]
        first = ok[0] if ok else group[0]
        rows.append(VariantRow(
            model=model, variant=first.variant, delegate=delegate, threads=threads,
            status="ok" if ok else "failed", size_bytes=first.model_size_bytes,
            p50_us=median_or_none([c.latency_us.p50 for c in ok if c.latency_us.p50 is not None]),
            p90_us=median_or_none([c.latency_us.p90 for c in ok if c.latency_us.p90 is not None]),
            init_ms=median_or_none([c.init_ms for c in ok if c.init_ms is not None]),
            peak_mb=median_or_none([c.memory_mb.peak_rss for c in ok if c.memory_mb and c.memory_mb.peak_rss]),
            top1=median_or_none([c.accuracy.top1 for c in ok if c.accuracy]),
            top1_agreement=median_or_none([c.output_diff.top1_agreement for c in ok if c.output_diff]),
        ))
    return rows


def compare_family(device: str, family: Family, cells: list[Cell],
                   tolerance: float = DEFAULT_TOLERANCE) -> FamilyComparison:
    """Side-by-side rows for one family on one device, with the recommendation."""
    names = {m.name for m in family.members}
    rows = rows_for([c for c in cells if c.device == device and c.model in names])
    reference = family.reference.name if family.reference else None
    ref_rows = {(r.delegate, r.threads): r for r in rows if r.model == reference}
    for row in rows:
        ref = ref_rows.get((row.delegate, row.threads))
        if ref is None:
            continue
        if row.model == reference:
            row.top1_agreement = 1.0 if row.status == "ok" else None
        if ref.p50_us and row.p50_us:
            row.speedup = ref.p50_us / row.p50_us
        if ref.top1 is not None and row.top1 is not None:
            row.top1_delta = row.top1 - ref.top1
    rows.sort(key=lambda r: (r.model != reference, r.model, r.delegate or "", r.threads))
    recommendation, statement = recommend(rows, reference, tolerance)
    return FamilyComparison(device=device, family=family.name, reference=reference, tolerance=tolerance,
                            rows=rows, recommendation=recommendation, statement=statement)


def recommend(rows: list[VariantRow], reference: Optional[str],
              tolerance: float) -> tuple[Optional[Recommendation], str]:
    """The fastest qualifying row, and one sentence that explains the choice."""
    measured = [r for r in rows if r.status == "ok" and r.p50_us is not None]
    if reference is None:
        return None, "no fp32 reference in this family: nothing to compare accuracy with"
    if not measured:
        return None, "no variant was measured successfully"
    with_accuracy = any(r.top1 is not None for r in measured)
    basis = "top1" if with_accuracy else "top1_agreement"
    qualifying = [r for r in measured if _qualifies(r, reference, basis, tolerance)]
    if not qualifying:
        return None, (f"no variant qualifies: every one loses more than {tolerance * 100:.1f} points of "
                      f"{'top-1 accuracy' if with_accuracy else 'top-1 agreement with the reference'}")
    best = min(qualifying, key=lambda r: r.p50_us)
    pick = Recommendation(model=best.model, variant=best.variant, delegate=best.delegate,
                          threads=best.threads, p50_us=best.p50_us, speedup=best.speedup, basis=basis)
    speed = f", {best.speedup:.2f}x the reference at this setting" if best.speedup else ""
    measure = "top-1 accuracy" if with_accuracy else "top-1 agreement with the reference (no dataset given)"
    return pick, (f"ship {best.model} with {best.delegate} x{best.threads}: fastest within "
                  f"{tolerance * 100:.1f} points of {measure}{speed}")


def _qualifies(row: VariantRow, reference: str, basis: str, tolerance: float) -> bool:
    if row.model == reference:
        return True
    if basis == "top1":
        return row.top1_delta is not None and row.top1_delta >= -tolerance
    return row.top1_agreement is not None and row.top1_agreement >= 1.0 - tolerance


def compare(families: list[Family], cells: list[Cell], tolerance: float = DEFAULT_TOLERANCE) -> list[FamilyComparison]:
    """Every family on every device that measured it."""
    devices = sorted({c.device for c in cells})
    return [compare_family(device, family, cells, tolerance)
            for device in devices for family in families
            if any(c.device == device and c.model in {m.name for m in family.members} for c in cells)]
