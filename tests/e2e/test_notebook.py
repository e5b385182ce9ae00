"""The example notebook runs from top to bottom against the local device (nbclient, a real kernel)."""

from __future__ import annotations

import pytest

from controller.store import open_store
from tests.support import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = ROOT / "examples" / "notebook.ipynb"


def test_example_notebook_runs_plots_and_compares(private_dirs):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment: the test's own database and data dirs.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the p50-per-variant plot
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "12 cells, 12 ok" in text  # four variants x three rounds
    with open_store(private_dirs / "results.sqlite", must_exist=True) as store:
        runs = store.all_run_ids("notebook")
        assert len(runs) == 2 and [store.count_cells(r) for r in runs] == [12, 12]
        # Nothing was stored by the comparison itself: `api.compare` only reads.
        assert store.regress_reports(runs) == []
