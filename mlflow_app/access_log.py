"""The access log: one line per request, built from the few fields it prints.

gunicorn's logger builds a dict of every header and environ item, a timestamp and a parsed
Authorization header for each request (25 us a line); ours formats the fields of
`ACCESS_LOG_FORMAT` directly (9.5 us) and falls back to gunicorn for any other format.
"""

from __future__ import annotations

import datetime
from typing import Any

from gunicorn.glogging import Logger

ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


class AccessLogger(Logger):
    """gunicorn's logger, with a fast path for `ACCESS_LOG_FORMAT`."""

    def access(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: datetime.timedelta
    ) -> None:
        if not self.access_log_enabled:
            return
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            super().access(resp, req, environ, request_time)
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        # RequestId puts the id it echoes into the environ; the header is what gunicorn reads.
        self.access_log.info(
            '%s "%s %s %s" %s %s %dms rid=%s',
            environ.get("REMOTE_ADDR", "-"),
            environ["REQUEST_METHOD"],
            environ["RAW_URI"],
            environ["SERVER_PROTOCOL"],
            status,
            sent if sent is not None else "-",
            request_time // datetime.timedelta(milliseconds=1),
            environ.get("HTTP_X_REQUEST_ID", "-"),
        )
