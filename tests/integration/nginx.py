"""A real reverse proxy for tests: Debian's nginx in front of the service, HTTP or TLS.

nginx rewrites `Host` to the upstream's address (its default) and tells the service what the
user reached in `X-Forwarded-Proto/-Host/-For`, as an ingress or a platform proxy does. The
service is reached by a hostname that is not localhost (`HOSTNAME`, mapped to 127.0.0.1 by
the clients: Chromium's host resolver rules, `map_hostname` for Python). Stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.service_process import free_port

HOSTNAME = "mlflow.test"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@dataclass
class Proxy:
    url: str  # what the user types: scheme://mlflow.test:port[/prefix]
    port: int
    process: subprocess.Popen
    ca_path: Path | None  # the test CA that signed the proxy's certificate (TLS only)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)  # nginx's graceful stop
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def nginx_config(work: Path, port: int, upstream_port: int, tls: bool, location: str) -> str:
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    certificate = (
        f"ssl_certificate {work / 'cert.pem'}; ssl_certificate_key {work / 'key.pem'};"
        if tls
        else ""
    )
    temp = "\n".join(
        f"  {kind}_temp_path {work / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {work / "nginx.pid"};
error_log {work / "error.log"} warn;
events {{ worker_connections 512; }}
http {{
  access_log {work / "access.log"};
{temp}
  client_max_body_size 0;
  server {{
    listen {listen};
    server_name {HOSTNAME};
    {certificate}
    location {location} {{
      proxy_pass http://127.0.0.1:{upstream_port};
      proxy_http_version 1.1;
      proxy_read_timeout 300s;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"""


def start_nginx(work: Path, upstream_port: int, tls: bool = False, prefix: str = "") -> Proxy:
    """nginx on a free port proxying `prefix`/ to the service; `Host` is rewritten."""
    work.mkdir(parents=True, exist_ok=True)
    ca_path = _write_certificate(work) if tls else None
    port = free_port()
    config = work / "nginx.conf"
    config.write_text(nginx_config(work, port, upstream_port, tls, prefix + "/"))
    process = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(work)],
        stdout=(work / "nginx.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {(work / 'nginx.out').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError("nginx did not listen within 20 s")
    scheme = "https" if tls else "http"
    return Proxy(f"{scheme}://{HOSTNAME}:{port}{prefix}", port, process, ca_path)


def _write_certificate(work: Path) -> Path:
    """A throwaway CA and a certificate for HOSTNAME signed by it; returns the CA's path."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    server = ca.issue_cert(HOSTNAME)
    server.private_key_pem.write_to_path(str(work / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    return work / "ca.pem"


@contextmanager
def map_hostname() -> Iterator[None]:
    """Resolve HOSTNAME to 127.0.0.1 in this process (nothing is asked of DNS)."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return original("127.0.0.1" if host == HOSTNAME else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original
