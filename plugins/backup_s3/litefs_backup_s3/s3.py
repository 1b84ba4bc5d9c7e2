"""A small S3 client on httpx: AWS Signature Version 4, path-style URLs, the five calls backups need.

Only what the uploader and ``litefs backup`` use: PUT, GET (optionally a byte range), ListObjectsV2
with prefix and continuation, DELETE, and CreateBucket (for tests and first runs). Every request is
signed with SigV4 (``UNSIGNED-PAYLOAD`` is not used: the SHA-256 of the body is signed, so a body
corrupted in flight is rejected by the server). Secrets never appear in logs, errors or ``repr``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import httpx

log = logging.getLogger("litefs.backup_s3")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


class S3Error(Exception):
    """An S3 request failed: HTTP status, S3 error code and the key (or bucket) it was about."""

    def __init__(self, message: str, *, status: int = 0, code: str = "", key: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.key = key


class S3NotFound(S3Error):
    """The object (or bucket) does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    """One entry of a listing."""

    key: str
    size: int
    last_modified: str


def _quote(text: str, safe: str) -> str:
    return urllib.parse.quote(text, safe=_UNRESERVED + safe)


def canonical_query(params: dict[str, str]) -> str:
    """SigV4 canonical query string: keys sorted, keys and values percent-encoded (``/`` too)."""
    return "&".join(f"{_quote(k, '')}={_quote(v, '')}" for k, v in sorted(params.items()))


def sign_v4(
    *,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    amz_date: str,
    service: str = "s3",
) -> str:
    """The ``Authorization`` header value for a request (AWS Signature Version 4).

    ``path`` is the already-encoded URI path as sent; ``headers`` are the headers to sign (at least
    ``host``, ``x-amz-date`` and ``x-amz-content-sha256``); ``amz_date`` is ``YYYYMMDDTHHMMSSZ``.
    """
    signed = {k.lower(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_access_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{_ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"


def _xml_text(root: ET.Element, name: str) -> str:
    """Text of the first descendant called ``name`` in any namespace ("" if absent)."""
    for el in root.iter():
        if el.tag == name or el.tag.endswith("}" + name):
            return el.text or ""
    return ""


class S3Client:
    """Async S3 client for one bucket of one endpoint (path-style: ``<endpoint>/<bucket>/<key>``)."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not endpoint:
            raise S3Error("backup.endpoint is required for backup.type s3 (e.g. http://127.0.0.1:8333)")
        if not bucket:
            raise S3Error("backup.bucket is required for backup.type s3")
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise S3Error(f"backup.endpoint {endpoint!r} is not an http(s) URL")
        self.endpoint = f"{parsed.scheme}://{parsed.netloc}"
        self._base_path = parsed.path.rstrip("/")
        self.host = parsed.netloc
        self.bucket = bucket
        self.region = region or "us-east-1"
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # no secrets
        return f"S3Client({self.endpoint!r}, bucket={self.bucket!r}, region={self.region!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing ------------------------------------------------------------------------------

    def _path(self, key: str | None) -> str:
        path = f"{self._base_path}/{_quote(self.bucket, '')}"
        if key is not None:
            path += "/" + _quote(key, "/")
        return path

    async def _request(
        self,
        method: str,
        key: str | None,
        *,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        query = query or {}
        path = self._path(key)
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        amz_date = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
        headers.update(extra_headers or {})
        auth = (
            sign_v4(
                method=method,
                path=path,
                query=query,
                headers=headers,
                payload_sha256=payload_hash,
                access_key_id=self._access_key_id,
                secret_access_key=self._secret,
                region=self.region,
                amz_date=amz_date,
            )
            if self._access_key_id
            else None
        )
        send = dict(headers)
        if auth:
            send["authorization"] = auth
        qs = canonical_query(query)
        url = self.endpoint + path + (f"?{qs}" if qs else "")
        what = key if key is not None else self.bucket
        try:
            resp = await self._http.request(method, url, content=body if body else None, headers=send)
        except httpx.HTTPError as exc:
            raise S3Error(f"S3 {method} {what}: {type(exc).__name__}: {exc}", key=what) from exc
        if resp.status_code >= 300:
            code = ""
            message = ""
            if resp.content:
                try:
                    root = ET.fromstring(resp.content)
                    code, message = _xml_text(root, "Code"), _xml_text(root, "Message")
                except ET.ParseError:
                    message = resp.text[:200]
            cls = S3NotFound if resp.status_code == 404 else S3Error
            raise cls(
                f"S3 {method} {what}: HTTP {resp.status_code} {code or ''} {message}".rstrip(),
                status=resp.status_code,
                code=code,
                key=what,
            )
        return resp

    # -- calls ---------------------------------------------------------------------------------

    async def create_bucket(self) -> None:
        """Create the bucket; an existing bucket owned by us is fine."""
        try:
            await self._request("PUT", None)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def put_object(self, key: str, data: bytes) -> None:
        await self._request("PUT", key, body=data, extra_headers={"content-type": "application/octet-stream"})

    async def get_object(self, key: str, *, byte_range: str | None = None) -> bytes:
        """The object's bytes; ``byte_range`` like ``"0-99"`` or ``"-16"`` (suffix) reads part of it."""
        extra = {"range": f"bytes={byte_range}"} if byte_range else None
        resp = await self._request("GET", key, extra_headers=extra)
        return resp.content

    async def delete_object(self, key: str) -> None:
        await self._request("DELETE", key)

    async def list_objects(self, prefix: str, *, max_keys: int | None = None) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (ListObjectsV2, following continuations;
        ``max_keys`` sets the page size)."""
        out: list[ObjectInfo] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if max_keys:
                query["max-keys"] = str(max_keys)
            if token:
                query["continuation-token"] = token
            resp = await self._request("GET", None, query=query)
            try:
                root = ET.fromstring(resp.content)
            except ET.ParseError as exc:
                raise S3Error(f"S3 LIST {prefix!r}: unparseable response: {exc}", key=prefix) from exc
            for el in root:
                if el.tag.endswith("Contents"):
                    out.append(
                        ObjectInfo(
                            key=_xml_text(el, "Key"),
                            size=int(_xml_text(el, "Size") or 0),
                            last_modified=_xml_text(el, "LastModified"),
                        )
                    )
            if _xml_text(root, "IsTruncated").lower() != "true":
                return out
            token = _xml_text(root, "NextContinuationToken")
            if not token:
                raise S3Error(f"S3 LIST {prefix!r}: truncated listing without a continuation token")
