"""Item 15, store growth: job results pour in with retention on, and the SQLite store stays within
a stated bound instead of growing with the number of results ever stored.

The bound. Between two prunes the store holds at most (retention_jobs + jobs written since the
last prune) x hosts result rows: PEAK_ROWS. A result row here carries 215 bytes of output, a
20-byte task id, a host name, a state and two timestamps; with its two index entries it takes
under 600 bytes on disk. The bound allows 1 KiB per row, plus 8 MiB for the write-ahead log
(SQLite checkpoints it every 1,000 pages, 4 MiB, and reuses it; it does not shrink while open):

    bound = PEAK_ROWS x 1 KiB + 8 MiB

100,000 results as 1,000 jobs on 100 hosts, pruned every 100 jobs down to 50 (the slow run):
PEAK_ROWS = 15,000, bound = 22.6 MiB; it measures about 13 MiB. The same results without
retention take about 38 MB, and grow without limit. `make test` runs 10,000 results, pruned
every 10 jobs down to 10: PEAK_ROWS = 2,000, bound = 10 MiB; it measures about 5 MiB, most of
it the WAL. Either way the store must stop growing once the first prunes have run (a plateau),
and keep no files beyond the database, its WAL and its shared-memory index.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from troop.store import Store
from troop.store.rows import JobHostRow, JobRow

OUTPUT = b"load average: 0.01, 0.05, 0.10 up 3 days\n" * 5  # 215 bytes, an `uptime` or so
HOSTS = 100


def store_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


@pytest.mark.parametrize(
    ("jobs", "prune_every", "keep"),
    [
        pytest.param(100, 10, 10, id="10k-results"),
        pytest.param(1000, 100, 50, id="100k-results", marks=pytest.mark.slow),
    ],
)
async def test_results_with_retention_stay_within_the_bound(
    tmp_path: Path, jobs: int, prune_every: int, keep: int
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'troop.db'}")
    peak_rows = (keep + prune_every) * HOSTS
    bound = peak_rows * 1024 + 8 * 2**20
    sizes = []
    try:
        for n in range(jobs):
            now = datetime.now(UTC)
            job_id = f"{n:08d}"
            row = JobRow(id=job_id, kind="cmd", target={"hosts": "*"}, args={"command": {"argv": ["uptime"]}},
                         timeout=60, created_by="admin", created_at=now, finished_at=now, state="done")
            results = [
                JobHostRow(job_id=job_id, hostname=f"host{h:04d}", task_id=os.urandom(10).hex(), state="succeeded",
                           exit_code=0, stdout=OUTPUT, duration=0.01, updated_at=now)
                for h in range(HOSTS)
            ]
            await store.create_job(row, results)
            if n % prune_every == prune_every - 1:
                await store.prune_jobs(now - timedelta(days=30), keep)  # what the General's pruner does
                sizes.append(store_bytes(tmp_path))
        kept = await store.list_jobs(limit=1000)
    finally:
        await store.close()
    assert jobs * HOSTS in (10_000, 100_000)
    assert len(kept) == keep and all(counts == {"succeeded": HOSTS} for _, counts in kept)
    assert max(sizes) <= bound, (sizes, bound)
    half = len(sizes) // 2
    assert sizes[-1] <= max(sizes[:half]) * 1.1, f"still growing after the first prunes: {sizes}"
    assert {p.name for p in tmp_path.iterdir()} <= {"troop.db", "troop.db-wal", "troop.db-shm"}
