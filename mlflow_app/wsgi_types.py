"""Type names for WSGI callables (PEP 3333), shared by the middleware modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

# The environ key where routing records the matched URL template, for metric labels.
ROUTE_KEY = "mlflow_app.route"
UNMATCHED = "(unmatched)"
