"""Request ids: keep the one a proxy sent (X-Request-Id), or make one, and echo it back.

The id lands in the response header, where gunicorn's access log reads it, so a user's
report can be matched to a log line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from mlflow_app.wsgi_types import StartResponse, WSGIApp, WSGIEnviron

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestId:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
        environ["HTTP_X_REQUEST_ID"] = request_id

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info=None):
            headers = [h for h in headers if h[0].lower() != "x-request-id"]
            headers.append(("X-Request-Id", request_id))
            return start_response(status, headers, exc_info)

        return self.app(environ, start_with_id)
