"""Type names for WSGI callables (PEP 3333), shared by the middleware modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
