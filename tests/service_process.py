"""Running the real service: gunicorn as a subprocess on a free 127.0.0.1 port, started as the
README starts it and stopped by its PID. The fixtures in tests/integration/conftest.py use it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90


# Below Linux's ephemeral range (32768-60999): a port the kernel handed out for port 0 can be
# taken, before the server binds it, as the local port of one of the tests' own outgoing
# connections. Ports handed out here are not handed out again by this process.
_PORTS = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on, outside the range outgoing connections use."""
    while True:
        if len(_handed_out) > len(_PORTS) // 2:
            _handed_out.clear()
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    data_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def service_env(tmp: Path, port: int, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DATABRICKS_", "_MLFLOW_"))
    }
    env.update(
        PORT=str(port),
        MLFLOW_APP_HOST="127.0.0.1",
        MLFLOW_APP_DATA_DIR=str(tmp / "data"),
        MLFLOW_WORKERS="2",
        # Test clients keep connections alive; do not wait the production 10 s for them.
        MLFLOW_APP_GRACEFUL_TIMEOUT="3",
        PYTHONUNBUFFERED="1",
    )
    for key, value in overrides.items():
        if value == "":  # an empty override unsets the variable
            env.pop(key, None)
        else:
            env[key] = value
    return env


def start_gunicorn(
    env: dict[str, str], log_path: Path, wrapper: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Run gunicorn exactly as the README does, optionally under a wrapper command."""
    log = log_path.open("wb")
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_to_exit(tmp_path: Path, timeout: float = 120, **overrides: str) -> tuple[int, str]:
    """Start gunicorn expecting it to stop by itself; returns its exit code and output."""
    log_path = tmp_path / "startup.log"
    process = start_gunicorn(service_env(tmp_path, free_port(), **overrides), log_path)
    try:
        code = process.wait(timeout=timeout)
    finally:
        stop(process)
    return code, log_path.read_text()


def children_of(parent: int) -> dict[int, list[int]]:
    """Every process's children, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return children


def wait_ready(url: str, process: subprocess.Popen, path: str = "/healthz") -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(url + path, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready within {START_TIMEOUT} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server we started, by its PID: SIGTERM, then SIGKILL after a bounded wait."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
