"""The stand-in's cloud storage behind the Files API: multipart uploads and presigned URLs.

What databricks-sdk's `FilesExt` does (mixins/files.py, 0.162): above 50 MB it asks
`?action=initiate-upload`, then `create-upload-part-urls` for a batch of parts, PUTs each part
to its presigned URL (no workspace credentials; the ETag comes back), and finishes with
`?action=complete-upload` listing every part's ETag; downloads ask `create-download-url` and
GET byte ranges from it. Like S3, a presigned URL refuses a request that also sends an
`Authorization` header, and every part but the last must be at least 5 MiB.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

MIN_PART_BYTES = 5 * 1024 * 1024
CHUNK = 1024 * 1024


def api_error(status: int, error_code: str, message: str) -> Response:
    return Response(
        json.dumps({"error_code": error_code, "message": message}),
        status=status,
        mimetype="application/json",
    )


def receive(request: Request, destination: Path) -> str:
    """Stream the request body to a file, a chunk at a time; returns its MD5 (the ETag)."""
    digest = hashlib.md5()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    with partial.open("wb") as out:
        while chunk := request.stream.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    partial.replace(destination)
    return f'"{digest.hexdigest()}"'


def serve(request: Request, local: Path) -> Response:
    """The file, streamed, honouring Range (206) as cloud storage and the Files API do."""
    return send_file(
        str(local),
        request.environ,
        mimetype="application/octet-stream",
        conditional=True,
        max_age=None,
    )


@dataclass
class Upload:
    destination: Path
    parts: Path  # one file per part number
    etags: dict[int, str]


class CloudStorage:
    """Upload sessions and the presigned URLs that read and write them."""

    def __init__(self, root: Path) -> None:
        self.root = root / "cloud-storage"
        self.uploads: dict[str, Upload] = {}
        self.downloads: dict[str, Path] = {}
        self.lock = threading.Lock()

    # --- the workspace's coordination calls ---------------------------------------------------
    def initiate(self, destination: Path, path: str, overwrite: bool) -> Response:
        if destination.exists() and not overwrite:
            return api_error(409, "ALREADY_EXISTS", f"File {path} already exists.")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.uploads[token] = Upload(destination, self.root / "parts" / token, {})
        return _json({"multipart_upload": {"session_token": token}})

    def part_urls(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        upload = self.uploads.get(body.get("session_token", ""))
        if upload is None:
            return api_error(404, "NOT_FOUND", "The upload session does not exist.")
        first, count = int(body.get("start_part_number", 1)), int(body.get("count", 1))
        if first < 1 or not 1 <= count <= 100:
            return api_error(400, "INVALID_PARAMETER_VALUE", "Invalid part numbers.")
        base = request.host_url.rstrip("/")
        urls = [
            {
                "part_number": n,
                "url": f"{base}/_cloud/part/{body['session_token']}/{n}?sig={secrets.token_hex(8)}",
                "headers": [{"name": "x-amz-server-side-encryption", "value": "AES256"}],
            }
            for n in range(first, first + count)
        ]
        return _json({"upload_part_urls": urls})

    def complete(self, request: Request, destination: Path) -> Response:
        token = request.args.get("session_token", "")
        with self.lock:
            upload = self.uploads.get(token)
        if upload is None or upload.destination != destination:
            return api_error(404, "NOT_FOUND", "The upload session does not exist for this path.")
        listed = (request.get_json(silent=True) or {}).get("parts", [])
        numbers = [int(p["part_number"]) for p in listed]
        if numbers != list(range(1, len(numbers) + 1)) or any(
            upload.etags.get(int(p["part_number"])) != p.get("etag") for p in listed
        ):
            return api_error(400, "INVALID_PARAMETER_VALUE", "InvalidPart: a listed part or ETag.")
        files = [upload.parts / str(n) for n in numbers]
        if any(f.stat().st_size < MIN_PART_BYTES for f in files[:-1]):
            return api_error(400, "INVALID_PARAMETER_VALUE", "EntityTooSmall: parts under 5 MiB.")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("wb") as out:
            for part in files:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, CHUNK)
        self.forget(token)
        return Response(status=200)

    def abort(self, request: Request) -> Response:
        self.forget(request.args.get("session_token", ""))
        return Response(status=200)

    def download_url(self, request: Request, local: Path) -> Response:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.downloads[token] = local
        return _json(
            {"url": f"{request.host_url.rstrip('/')}/_cloud/object/{token}", "headers": []}
        )

    def forget(self, token: str) -> None:
        with self.lock:
            upload = self.uploads.pop(token, None)
        if upload is not None:
            shutil.rmtree(upload.parts, ignore_errors=True)

    # --- the presigned URLs themselves (cloud storage: no workspace credentials) --------------
    def presigned(self, request: Request) -> Response:
        if "Authorization" in request.headers:
            return Response(
                "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                "</Message></Error>",
                status=400,
                mimetype="application/xml",
            )
        kind, _, rest = request.path.removeprefix("/_cloud/").partition("/")
        if kind == "part" and request.method == "PUT":
            token, _, number = rest.partition("/")
            with self.lock:
                upload = self.uploads.get(token)
            if upload is None or not number.isdigit():
                return Response("<Error><Code>NoSuchUpload</Code></Error>", status=404)
            etag = receive(request, upload.parts / number)
            with self.lock:
                upload.etags[int(number)] = etag
            return Response(status=200, headers={"ETag": etag})
        if kind == "object" and request.method in ("GET", "HEAD"):
            local = self.downloads.get(rest)
            if local is None or not local.is_file():
                return Response("<Error><Code>NoSuchKey</Code></Error>", status=404)
            return serve(request, local)
        return Response("<Error><Code>MethodNotAllowed</Code></Error>", status=405)


def _json(body: object) -> Response:
    return Response(json.dumps(body), status=200, mimetype="application/json")
