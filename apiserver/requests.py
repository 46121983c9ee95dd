"""Reading query parameters and writing responses the way Kubernetes clients expect."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from machinery.errors import BadRequestError, InvalidError, NotAcceptableError, StatusCause, invalid

JSON_CT = "application/json"

# What the handlers learn about a request, read by the metrics middleware.
VERB: web.RequestKey[str] = web.RequestKey("verb", str)
RESOURCE: web.RequestKey[str] = web.RequestKey("resource", str)
SUBRESOURCE: web.RequestKey[str] = web.RequestKey("subresource", str)
TABLE_MARKER = "as=Table"


def query_bool(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "")
    return value.lower() in ("true", "1")


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequestError(f'{name}: Invalid value: "{value}": must be an integer') from None


_OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions",
                 "DELETE": "DeleteOptions"}


def options_invalid(request: web.Request, field: str, message: str, *,
                    reason: str = "FieldValueNotSupported") -> InvalidError:
    """422 for bad Create/Update/Patch/DeleteOptions, worded as Kubernetes' option validation."""
    kind = _OPTIONS_KIND.get(request.method, "ListOptions")
    return invalid(kind, "", [StatusCause(field, message, reason)], group="meta.k8s.io")


def check_dry_run_values(request: web.Request, values: list[str], field: str = "dryRun") -> bool:
    for v in values:
        if v != "All":
            raise options_invalid(request, field, f'Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def dry_run(request: web.Request) -> bool:
    return check_dry_run_values(request, request.query.getall("dryRun", []))


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise options_invalid(request, "fieldValidation",
                              f'Unsupported value: "{value}": supported values: "Ignore", "Strict", "Warn"')
    return value


def wants_table(request: web.Request) -> bool:
    """True when the first acceptable type is a meta.k8s.io Table."""
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        part = part.strip()
        if not part:
            continue
        if TABLE_MARKER in part and "g=meta.k8s.io" in part:
            return True
        media = part.split(";", 1)[0].strip()
        if media in ("application/json", "*/*", "application/*", "application/vnd.kubernetes.protobuf",
                     "application/yaml"):
            return False
    return False


def check_acceptable(request: web.Request) -> None:
    """406 when the client accepts nothing we can send (we always answer JSON)."""
    accept = request.headers.get("Accept", "")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "*/*", "application/*", "") or media.endswith("+json"):
            return
        if media == "application/vnd.kubernetes.protobuf":
            # Typed clients list JSON after protobuf; a protobuf-only Accept is refused below.
            continue
    raise NotAcceptableError(f"only the following media types are accepted: {JSON_CT}")


def _header_safe(text: str) -> str:
    """Printable ASCII only: field names come from request bodies and may hold anything."""
    return "".join(c if " " <= c <= "~" else f"\\u{ord(c):04x}" for c in text)


def warning_headers(warnings: list[str]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for w in warnings:
        escaped = _header_safe(w.replace("\\", "\\\\").replace('"', '\\"'))
        headers.add("Warning", f'299 - "{escaped}"')
    return headers


STREAM_CHUNK = 256 * 1024


async def send_json(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send a JSON body; large ones go out in chunks, each awaited.

    Handing the TLS layer a multi-megabyte body at once makes its memory buffers grow to the
    whole body, and they keep that size for the life of the connection (measured: RSS grew by
    each big list's size until every keep-alive connection had served one). Chunks keep those
    buffers small; aiohttp's keep-alive handler also no longer holds the body afterwards.
    """
    if len(body) <= STREAM_CHUNK:
        return json_response(body)
    resp = web.StreamResponse(status=200)
    resp.content_type = JSON_CT
    resp.content_length = len(body)
    await resp.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), STREAM_CHUNK):
        await resp.write(view[start:start + STREAM_CHUNK])
    await resp.write_eof()
    return resp


def status_response(status: dict[str, Any], *, code: int = 200) -> web.Response:
    """A ``Status`` object as kube-apiserver writes one: its encoder ends the body with a newline."""
    return json_response(orjson.dumps(status) + b"\n", status=code)


PAGE_NOT_FOUND = "404 page not found\n"


def page_not_found() -> web.Response:
    """The catch-all answer of kube-apiserver for a path no API serves (Go's ``http.NotFound``)."""
    resp = web.Response(text=PAGE_NOT_FOUND, status=404, content_type="text/plain", charset="utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def json_response(body: Any, *, status: int = 200, warnings: list[str] | None = None,
                  content_type: str = JSON_CT) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = warning_headers(warnings) if warnings else None
    resp = web.Response(body=data, status=status, headers=headers)
    resp.content_type = content_type.split(";", 1)[0]
    if ";" in content_type:
        # aiohttp parses parameters out of content_type; set the exact header kubectl compares.
        resp.headers["Content-Type"] = content_type
    return resp
