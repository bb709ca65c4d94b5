"""Request framing in the worker's event loop: when a request is whole, and what is refused."""

from __future__ import annotations

import json

import pytest

from mlflow_app.buffered_worker import (
    MAX_HEAD_BYTES,
    SPOOL_BYTES,
    BadFraming,
    IncomingRequest,
    json_error_bytes,
)


def fed(*parts: bytes) -> IncomingRequest:
    request = IncomingRequest(deadline=0)
    for part in parts:
        request.feed(part)
    return request


def test_a_request_without_body_is_whole_at_the_end_of_its_head() -> None:
    assert not fed(b"GET / HTTP/1.1\r\nHost: x\r\n").complete
    assert fed(b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\n").complete


def test_a_body_is_whole_when_content_length_bytes_arrived() -> None:
    head = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    assert not fed(head, b"12345").complete
    assert fed(head + b"12345", b"67890").complete


def test_a_large_body_waits_on_disk_not_in_memory() -> None:
    size = SPOOL_BYTES * 2
    head = f"PUT /a HTTP/1.1\r\nContent-Length: {size}\r\n\r\n".encode()
    request = fed(head, b"x" * SPOOL_BYTES, b"x" * SPOOL_BYTES)
    assert request.complete
    assert request.body_in_memory == b""
    assert request.spool is not None
    request.spool.seek(0)
    assert len(request.spool.read()) == size


def test_a_chunked_body_is_whole_after_the_last_chunk_and_trailers() -> None:
    head = b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    request = fed(head, b"5\r\nhel", b"lo\r\n3;ext=1\r\nabc\r\n")
    assert not request.complete
    request.feed(b"0\r\nX-Trailer: 1\r\n")
    assert not request.complete
    request.feed(b"\r\n")
    assert request.complete


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n", 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_unframeable_requests_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(BadFraming) as refused:
        fed(raw)
    assert refused.value.status == status


def test_refusals_are_mlflow_json_errors() -> None:
    head, _, body = json_error_bytes(408, "too slow").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"Connection: close" in head
    assert json.loads(body) == {"error_code": "DEADLINE_EXCEEDED", "message": "too slow"}
