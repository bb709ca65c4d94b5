"""A real MariaDB server for tests (Debian `mariadb-server`), on a free port, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "maria-Secr3t-for-tests"


def mariadb_available() -> bool:
    return (
        shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is not None
        and shutil.which("mariadb-install-db") is not None
    )


@dataclass
class MariaDB:
    root: Path
    port: int
    process: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"mysql+pymysql://mlflow:{PASSWORD}@127.0.0.1:{self.port}/mlflow"

    def sql(self, statement: str) -> str:
        return subprocess.run(
            ["mariadb", f"--socket={self.root / 'sock'}", "-u", "root", "-N", "-e", statement],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def create_mariadb(port: int) -> MariaDB:
    root = Path(tempfile.mkdtemp(prefix="mlflow-app-maria-"))
    os.chmod(root, 0o755)
    data = root / "data"
    subprocess.run(
        [
            "mariadb-install-db",
            f"--datadir={data}",
            "--user=mysql",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    shutil.chown(root, "mysql", "mysql")
    with open(root / "mariadb.log", "wb") as log:  # the server keeps its own descriptor
        process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                "--user=mysql",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={root / 'sock'}",
                f"--pid-file={root / 'mariadb.pid'}",
                "--skip-log-bin",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = MariaDB(root, port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            server.sql("SELECT 1")
            break
        except subprocess.CalledProcessError:
            if process.poll() is not None:
                raise RuntimeError((root / "mariadb.log").read_text()) from None
            time.sleep(0.3)
    server.sql(
        f"CREATE DATABASE mlflow; CREATE USER 'mlflow'@'127.0.0.1' IDENTIFIED BY "
        f"'{PASSWORD}'; GRANT ALL ON mlflow.* TO 'mlflow'@'127.0.0.1';"
    )
    return server
