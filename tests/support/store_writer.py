"""`python -m tests.support.store_writer DB DEVICE RUNS CELLS`: one controller's worth of writes.

Opens the store (racing any other writer through the migrations of a new database),
then stores RUNS runs of CELLS cells each, one transaction per cell, and sends every
cell twice, as an agent replaying its outbox after a reconnect would. Prints the run ids.
"""

from __future__ import annotations

import sys

from agent.wire.records import Cell, LatencyStats
from controller.records import Transfer, new_run_id, now_iso
from controller.store import open_store


def main(db: str, device: str, runs: int, cells: int) -> None:
    with open_store(db) as store:
        for _ in range(runs):
            run_id = new_run_id()
            store.start_run(run_id, "concurrent", now_iso())
            for index in range(cells):
                cell = Cell(device=device, model=f"m{index % 4}.tflite", model_sha256="0" * 64,
                            model_size_bytes=1, delegate="xnnpack", threads=1, round=index // 4, status="ok",
                            latency_us=LatencyStats(count=1, min=index, max=index, mean=index, std=0, p50=index,
                                                    p90=index, p99=index))
                assert store.add_cell(run_id, cell, index)
                assert not store.add_cell(run_id, cell, index)  # the replay is refused
            store.finish_run(run_id, now_iso(), Transfer(), [])
            print(run_id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
