"""Error answers for the REST API: MLflow's JSON error shape, never an HTML page or a traceback.

Installed on MLflow's Flask app through its public hooks (`before_request`, `errorhandler`),
as `mlflow.server.auth` extends it. A JSON body that is not an object is refused with 400
before MLflow's parser sees it; an unknown API route is a JSON 404; an unexpected exception is
logged with its request id and answered with a JSON 500 that carries no internals; a 429 or
503 always tells the client when to retry.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from mlflow_app.wsgi_types import StartResponse

log = logging.getLogger("mlflow_app.errors")

_API_PREFIXES = ("/api/", "/ajax-api/")
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def install_error_handling(
    flask_app: Flask, static_prefix: str = "", retry_after_seconds: int = 10
) -> None:
    api_prefixes = tuple(static_prefix + p for p in _API_PREFIXES)

    def is_api_request() -> bool:
        return request.path.startswith(api_prefixes)

    artifact_prefixes = tuple(
        prefix + "2.0/mlflow-artifacts/artifacts/"
        for prefix in dict.fromkeys((*api_prefixes, *_API_PREFIXES))  # MLflow serves both
    )

    def no_redirects_on_the_api(path: str) -> Response | None:
        # werkzeug answers `//` in a path with a 308 to the merged path (an HTML page, and for
        # an artifact a different file); API clients get an error they can read instead.
        if path.startswith(artifact_prefixes) and "//" in path:
            return error_response(
                400,
                "INVALID_PARAMETER_VALUE",
                "An artifact path is relative to the artifact root and has no leading '/' or '//'.",
            )
        if isinstance(request.routing_exception, RequestRedirect):
            return error_response(404, "ENDPOINT_NOT_FOUND", "No API route has this path.")
        return None

    def reject_non_object_json() -> Response | None:
        if request.method not in _BODY_METHODS or not request.is_json:
            return None
        body, too_deep = json_body()
        if too_deep:
            return error_response(
                400, "INVALID_PARAMETER_VALUE", "The request body is nested too deeply."
            )
        if body is None or isinstance(body, dict):
            return None  # malformed JSON: MLflow's own parser answers it with a 400
        return error_response(
            400, "INVALID_PARAMETER_VALUE", "The request body must be a JSON object."
        )

    def graphql_needs_a_query() -> Response | None:
        # MLflow's GraphQL view reads the body as a JSON object and fails with a 500 otherwise.
        if isinstance(json_body()[0], dict):
            return None
        return error_response(
            400,
            "INVALID_PARAMETER_VALUE",
            'GraphQL requests are POSTed as a JSON object: {"query": "..."}.',
        )

    # One hook each way, not one per check: Flask costs every hook a coroutine test per request.
    @flask_app.before_request
    def refuse_what_mlflow_would_answer_badly() -> Response | None:
        path = request.path
        if path.startswith(api_prefixes):
            refusal = no_redirects_on_the_api(path) or reject_non_object_json()
            if refusal is not None:
                return refusal
        return graphql_needs_a_query() if path.endswith("/graphql") else None

    @flask_app.after_request
    def finish_error_answers(response: Response) -> Response:
        status = response.status_code
        # MLflow turns an upstream 429/503 into its own error after retrying, and the
        # upstream's Retry-After is lost on the way; clients back off by this one instead.
        if status in (429, 503) and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(max(1, retry_after_seconds))
        if status >= 400 and response.is_json:
            scrub_error_message(response)
        return response

    @flask_app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | HTTPException:
        if not is_api_request() or error.code is None or error.code < 400:
            return error
        code = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.code, "BAD_REQUEST")
        response = error_response(error.code, code, error.description or error.name)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @flask_app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        if upstream := upstream_error(error):
            status, code, message = upstream
            return error_response(status, code, message)
        request_id = request.headers.get("X-Request-Id", "")
        log.exception(
            "unhandled error in %s %s (request id %s)", request.method, request.path, request_id
        )
        return error_response(
            500,
            "INTERNAL_ERROR",
            f"Internal error; the server log has details (request id {request_id}).",
        )


# Where a driver's error text turns into the statement and its parameters (a password hash,
# for MLflow auth's create-user) or a traceback begins; the message ends before it.
_INTERNALS = re.compile(r"\s*(\[SQL: |\[parameters: |\(Background on this error|Traceback \()")


def scrub_error_message(response: Response) -> None:
    """Cut SQL, parameters and tracebacks out of a JSON error's message."""
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return
    message = _INTERNALS.split(body["message"], maxsplit=1)[0]
    if message != body["message"]:
        body["message"] = message.rstrip()
        response.set_data(json.dumps(body))


def json_body() -> tuple[object, bool]:
    """(the request's JSON body or None, whether it was nested too deeply to parse)."""
    try:
        return request.get_json(silent=True, cache=True), False
    except RecursionError:
        return None, True


def upstream_error(error: BaseException) -> tuple[int, str, str] | None:
    """(status, error code, message) of an upstream API error anywhere in the cause chain.

    The Databricks SDK gives up on a throttled or failing call by raising TimeoutError from
    the last API error, which MLflow does not translate; the API error says what happened.
    """
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS

    for _ in range(10):
        code = getattr(error, "error_code", None)
        if isinstance(code, str) and code in ERROR_CODE_TO_HTTP_STATUS:
            status = int(ERROR_CODE_TO_HTTP_STATUS[code])
            return status, code, (str(error).splitlines() or [code])[0][:500]
        error = error.__cause__ or error.__context__
        if error is None:
            return None
    return None


def json_error(
    start_response: StartResponse,
    status: int,
    error_code: str,
    message: str,
    extra_headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    """MLflow's JSON error, answered by a WSGI middleware (outside Flask)."""
    body = error_body(error_code, message)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers + (extra_headers or []))
    return [body]


def error_body(error_code: str, message: str) -> bytes:
    """MLflow's error shape, for every answer that is not a success."""
    return json.dumps({"error_code": error_code, "message": message}).encode()


def error_response(status: int, error_code: str, message: str) -> Response:
    body = error_body(error_code, message)
    return Response(body, status=status, mimetype="application/json")
