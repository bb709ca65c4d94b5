"""Resolve the stand-in's app hosts to 127.0.0.1 in a subprocess (nothing is asked of DNS).

A test puts this folder on PYTHONPATH of the commands it runs (`mlflow-app deploy`, the MLflow
client) and names the domain in STANDIN_LOOPBACK_DOMAIN; Python imports this at start-up.
"""

import os
import socket

_DOMAIN = os.environ.get("STANDIN_LOOPBACK_DOMAIN", "")
_original = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if _DOMAIN and isinstance(host, str) and host.endswith("." + _DOMAIN):
        host = "127.0.0.1"
    return _original(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
