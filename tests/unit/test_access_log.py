"""The access log's fast path prints exactly what gunicorn's own formatting would."""

from __future__ import annotations

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from mlflow_app.access_log import ACCESS_LOG_FORMAT, AccessLogger


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def line_from(logger_class: type[Logger], fmt: str, **request: object) -> str:
    config = Config()
    config.set("accesslog", "-")
    config.set("access_log_format", fmt)
    logger = logger_class(config)
    lines = Lines()
    logger.access_log.handlers = [lines]
    environ = {
        "REMOTE_ADDR": "10.1.2.3",
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/api/2.0/mlflow/runs/log-batch?x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": "/api/2.0/mlflow/runs/log-batch",
        "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz",
        **request.get("environ", {}),
    }
    resp = SimpleNamespace(
        status=request.get("status", "201 Created"),
        sent=request.get("sent", 1234),
        headers=request.get("headers", [("X-Request-Id", environ.get("HTTP_X_REQUEST_ID", ""))]),
    )
    req = SimpleNamespace(headers=[("HOST", "mlflow.example.com")])
    took = request.get("took", datetime.timedelta(seconds=1, microseconds=234_567))
    logger.access(resp, req, environ, took)
    (line,) = lines.lines
    return line


@pytest.mark.parametrize(
    "request_fields",
    [
        {"environ": {"HTTP_X_REQUEST_ID": "abc-123"}},
        {"environ": {"HTTP_X_REQUEST_ID": "r"}, "sent": 0, "status": "404 NOT FOUND"},
        {"sent": None, "headers": [], "took": datetime.timedelta(microseconds=999)},
    ],
)
def test_the_fast_path_prints_what_gunicorn_would(request_fields: dict) -> None:
    ours = line_from(AccessLogger, ACCESS_LOG_FORMAT, **request_fields)
    theirs = line_from(Logger, ACCESS_LOG_FORMAT, **request_fields)
    assert ours == theirs
    assert "dXNlcjpwYXNz" not in ours


def test_another_format_is_gunicorns() -> None:
    fmt = '%(h)s %(u)s "%(f)s" %(L)s'
    assert line_from(AccessLogger, fmt) == line_from(Logger, fmt) == '10.1.2.3 user "-" 1.234567'
