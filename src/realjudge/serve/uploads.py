"""Request bodies to images: multipart uploads or JSON with base64, parsed in memory, never on disk.

Every malformed body becomes an `ApiError` with a status and a one-line message that says what
was wrong and what is expected.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

FILE_FIELD = "file"
TEXT_FIELDS = ("model", "threshold", "verdict")
MAX_TEXT_FIELD_BYTES = 1024
MAX_NAME_CHARS = 200


class ApiError(Exception):
    """A request the server refuses: HTTP `status` and a readable one-line `message`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


@dataclass
class Upload:
    name: str
    data: bytes


@dataclass
class Submission:
    """The images of one request and the options sent with them (None: not given)."""

    images: list[Upload] = field(default_factory=list)
    model: str | None = None
    threshold: str | float | None = None
    verdict: str | None = None


def clean_name(raw: str | None, index: int) -> str:
    """A display name: the base name only, no control characters, bounded length."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:MAX_NAME_CHARS]
    return name or f"image-{index + 1}"


def too_many(n: int, limit: int) -> ApiError:
    return ApiError(413, f"too many images: {n} in one request; the limit is {limit}")


def parse_body(body: bytes, content_type: str, max_files: int) -> Submission:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return parse_multipart(body, content_type, max_files)
    if kind == "application/json":
        return parse_json(body, max_files)
    shown = kind or "none"
    raise ApiError(415, f"unsupported content type {shown!r}: send multipart/form-data with `file` parts, "
                        "or application/json with base64 images")


def parse_multipart(body: bytes, content_type: str, max_files: int) -> Submission:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart body without a boundary in its Content-Type header")
    sub = Submission()
    part: dict = {}
    ended = False

    def begin() -> None:
        part.clear()
        part.update(headers={}, field=b"", value=b"", data=bytearray())

    def header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def data(chunk: bytes, start: int, end: int) -> None:
        part["data"] += chunk[start:end]

    def part_end() -> None:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD:
            if len(sub.images) >= max_files:
                raise too_many(len(sub.images) + 1, max_files)
            filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
            sub.images.append(Upload(clean_name(filename, len(sub.images)), bytes(part["data"])))
        elif name in TEXT_FIELDS:
            if len(part["data"]) > MAX_TEXT_FIELD_BYTES:
                raise ApiError(400, f"form field {name!r} is longer than {MAX_TEXT_FIELD_BYTES} bytes")
            setattr(sub, name, part["data"].decode("utf-8", "replace").strip() or None)
        else:
            raise ApiError(400, f"unknown form field {name!r}: expected {FILE_FIELD!r} (repeatable), "
                                f"{', '.join(repr(f) for f in TEXT_FIELDS)}")

    def end() -> None:
        nonlocal ended
        ended = True

    try:
        # The parser refuses some boundaries (over 256 characters) when it is built, not when it parses.
        parser = MultipartParser(boundary, {
            "on_part_begin": begin, "on_header_field": header_field, "on_header_value": header_value,
            "on_header_end": header_end, "on_part_data": data, "on_part_end": part_end, "on_end": end,
        })
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, FormParserError) as err:
        raise ApiError(400, f"malformed multipart body ({' '.join(str(err).split())})") from None
    if not ended:
        raise ApiError(400, "malformed multipart body (it ends before its closing boundary)")
    if not sub.images:
        raise ApiError(400, f"no images: send one or more {FILE_FIELD!r} parts")
    return sub


def parse_json(body: bytes, max_files: int) -> Submission:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"body is not valid JSON ({err})") from None
    except RecursionError:  # nesting deeper than the parser's recursion limit
        raise ApiError(400, "body is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise ApiError(400, 'JSON body must be an object: {"images": [{"name": ..., "data": base64}], ...}')
    unknown = set(doc) - {"images", "model", "threshold", "verdict"}
    if unknown:
        raise ApiError(400, f"unknown JSON field(s) {', '.join(sorted(map(repr, unknown)))}: "
                            "expected 'images', 'model', 'threshold', 'verdict'")
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise ApiError(400, "JSON field 'images' must be a non-empty list of {\"name\": ..., \"data\": base64}")
    if len(images) > max_files:
        raise too_many(len(images), max_files)
    model, threshold = doc.get("model"), doc.get("threshold")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "JSON field 'model' must be a string")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ApiError(400, "JSON field 'threshold' must be a number between 0 and 1")
    verdict = doc.get("verdict")
    if verdict is not None and not isinstance(verdict, str):
        raise ApiError(400, "JSON field 'verdict' must be a string: 'pixels' or 'combined'")
    return Submission([_json_image(item, i) for i, item in enumerate(images)], model, threshold, verdict)


def _json_image(item, i: int) -> Upload:
    where = f"images[{i}]"
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        raise ApiError(400, f"{where} must be an object with a base64 string 'data' (and optionally 'name')")
    unknown = set(item) - {"name", "data"}
    if unknown:
        raise ApiError(400, f"{where}: unknown field(s) {', '.join(sorted(map(repr, unknown)))}; expected 'name', 'data'")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, f"{where}.name must be a string")
    text = item["data"]
    if text.startswith("data:") and "," in text:  # a data: URL, as browsers' FileReader gives
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(400, f"{where}.data is not valid base64 ({err})") from None
    return Upload(clean_name(name, i), data)
