"""Workflow stores on both databases croft supports: SQLite, and a real PostgreSQL server
started for the session on loopback."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_PORT = 54329


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        pytest.fail("PostgreSQL is not installed: run scripts/setup")
    return versions[-1].parent


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    data = Path(tempfile.mkdtemp(prefix="croft-pg-"))
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    bin_dir = _pg_bin()
    subprocess.run(
        [*as_postgres, bin_dir / "initdb", "-A", "trust", "-D", data / "db"], check=True, capture_output=True
    )
    server = subprocess.Popen(
        [*as_postgres, bin_dir / "postgres", "-D", data / "db", "-p", str(PG_PORT),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}"],
        stdout=subprocess.DEVNULL, stderr=(data / "log").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(
            [bin_dir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT)]
        ).returncode:
            assert server.poll() is None and time.monotonic() < deadline, (data / "log").read_text()
            time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workflows.db'}"
    url: str = request.getfixturevalue("postgresql_url")
    # A clean database per test: drop croft's tables.
    import sqlalchemy as sa

    from croft.workflows.store import metadata

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    metadata.drop_all(engine)
    engine.dispose()
    return url
