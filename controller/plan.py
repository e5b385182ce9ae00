"""The matrix of a run on one device: which cells, in which order, with which settings (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from agent.wire.delegates import CPU_DELEGATES
from agent.wire.protocol import CellSpec
from agent.wire.records import Settings
from controller.evaluation import RunEvaluation
from controller.models import ModelSource
from controller.profiles import Profile


@dataclass(frozen=True)
class PlannedCell:
    """One cell of a device's matrix. `index` is its place in the matrix: the number it
    has in the store and in the agent's job, so a resumed run knows what is missing."""

    index: int
    round: int
    source: ModelSource
    spec: CellSpec

    def label(self) -> str:
        """`#index model delegate xN` for messages."""
        return f"#{self.index} {self.spec.model_name} {self.spec.delegate} x{self.spec.threads}"


def plan(sources: list[ModelSource], delegates: list[str], threads: list[int], rounds: int,
         settings: Settings, evaluation: Optional[RunEvaluation] = None,
         profile: Optional[Profile] = None, require_full_delegation: bool = False,
         op_profile: bool = False, alternate_order: bool = False) -> list[PlannedCell]:
    """The matrix in run order: whole rounds one after another, so drift hits all cells.

    Within a round, family references come first, so that each variant's outputs can be
    compared with its reference's as soon as the variant's cell arrives; CPU cells come
    before accelerated ones, which are compared with their outputs. `alternate_order`
    reverses the models of every odd round, so that in an A/B session neither side always
    runs first (a device warming within a round then favours neither).
    """
    if evaluation is not None:
        sources = evaluation.references_first(sources)
    delegates = sorted(delegates, key=lambda d: d not in CPU_DELEGATES)
    cells: list[PlannedCell] = []
    for round_ in range(rounds):
        for source in (sources[::-1] if alternate_order and round_ % 2 else sources):
            for delegate in delegates:
                for n in threads:
                    spec = CellSpec(model_sha256=source.sha256, model_name=source.name, delegate=delegate,
                                    threads=n, settings=settings, seed=round_)
                    if evaluation is not None:
                        spec = evaluation.cell_spec(spec, source)
                    if profile is not None:
                        spec = profile.cell_spec(spec, require_full_delegation, op_profile)
                    cells.append(PlannedCell(len(cells), round_, source, spec))
    return cells
