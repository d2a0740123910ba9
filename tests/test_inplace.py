"""Putting files in place: a file many writers publish at once ends whole, with nothing left
beside it."""

from __future__ import annotations

import threading
from pathlib import Path

from croft import inplace


def test_writers_publishing_one_file_at_once_leave_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "entry.json"
    data = b"x" * 1_000_000
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for _ in range(5):
            inplace.publish(path, data)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["entry.json"]
