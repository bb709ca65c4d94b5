"""A real PostgreSQL server for tests: Debian's binaries, a throwaway cluster on a free port.

The cluster runs as the `postgres` user (PostgreSQL refuses root) with password
authentication, and is stopped by its PID when the test ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "pg-Secr3t-for-tests"


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    bin_dir: Path
    data_dir: Path
    port: int
    log_path: Path

    @property
    def uri(self) -> str:
        return f"postgresql://mlflow:{PASSWORD}@127.0.0.1:{self.port}/mlflow"

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def start(self) -> None:
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
            check=False,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_postgres(
            str(self.bin_dir / "psql"),
            "-h",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-d",
            database,
            "-tAc",
            sql,
        ).stdout


def create_postgres(port: int) -> Postgres:
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="mlflow-app-pg-"))
    os.chmod(root, 0o755)
    data_dir = root / "data"
    data_dir.mkdir()
    shutil.chown(data_dir, "postgres", "postgres")
    log_path = root / "postgres.log"
    log_path.touch()
    shutil.chown(log_path, "postgres", "postgres")
    server = Postgres(bin_dir, data_dir, port, log_path)
    # Setup goes through the Unix socket (trusted); the service connects over TCP with a password.
    server._as_postgres(
        str(bin_dir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    )
    server.start()
    server.psql(f"CREATE ROLE mlflow LOGIN PASSWORD '{PASSWORD}'")
    server.psql("CREATE DATABASE mlflow OWNER mlflow")
    return server


def wait_until(predicate, timeout: float = 60, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
