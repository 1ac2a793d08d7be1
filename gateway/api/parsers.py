"""Bodies of writes: JSON and CSV, each at most API_WRITE_MAX_BYTES (413 past it)."""
import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.renderers import JSONRenderer

from gateway.api.problems import PayloadTooLarge, Problem
from gateway.api.uploads import RowsSent, csv_rows
from readings.csvreader import CsvError
from readings.domain import json_document


def read_limited(stream, parser_context: dict | None) -> bytes:
    """The body, refused with 413 past API_WRITE_MAX_BYTES (before reading it, when its length
    is declared)."""
    limit = settings.API_WRITE_MAX_BYTES
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    too_large = PayloadTooLarge(f"the body may hold at most {limit} bytes (API_WRITE_MAX_BYTES)")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise too_large
    return body


class LimitedJSONParser(BaseParser):
    """application/json, read from the stream with the write limit.

    Not a JSONParser: DRF reads those through Django's request.body, which raises past
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) where no view can answer it.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        body = read_limited(stream, parser_context)
        try:
            encoding = get_encoding(parser_context or {})
            return json_document(body if encoding.lower().replace("-", "") == "utf8" else body.decode(encoding))
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def csv_body(body: bytes) -> RowsSent:
    """The rows of a CSV body; 400 with the line for what an import would refuse whole."""
    nul = body.find(b"\x00")
    try:
        if nul >= 0:
            raise CsvError("the CSV body", f"is not a text CSV file (binary data at byte {nul})")
        try:
            text = codecs.decode(body, "utf-8")
        except UnicodeDecodeError as exc:
            raise CsvError("the CSV body", f"is not UTF-8 text (invalid byte at offset {exc.start})") from None
        return csv_rows(text)
    except CsvError as exc:
        where = f"line {exc.line}" if exc.line is not None else "body"
        raise Problem(400, f"{where}: {exc.message}", errors=[{"field": where, "description": exc.message}]) from None


class ReadingsCSVParser(BaseParser):
    """text/csv with the header `time,meterusage`, as files are imported: parsed into RowsSent."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return csv_body(read_limited(stream, parser_context))
