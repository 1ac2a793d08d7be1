"""Bodies of writes: JSON and CSV, each at most API_WRITE_MAX_BYTES (413 past it)."""
import codecs
import re
import sys

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, get_encoding
from rest_framework.renderers import JSONRenderer
from rest_framework.utils import json

from gateway.api.problems import PayloadTooLarge, Problem
from gateway.api.uploads import RowsSent, csv_rows
from readings.csvreader import CsvError


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
            text = body.decode(get_encoding(parser_context or {}))
            return json.loads(text, parse_constant=json.strict_constant)
        except RecursionError:
            raise ParseError(f"JSON parse error - arrays and objects nested more than {MAX_JSON_DEPTH} deep") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {json_reason(exc)}") from None


# Python's own limits on what JSON text it reads, said in the API's words.
MAX_JSON_DEPTH = sys.getrecursionlimit() // 2
_TOO_MANY_DIGITS = re.compile(r"Exceeds the limit \((\d+) digits\) for integer string conversion")


def json_reason(error: ValueError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"the body is not {error.encoding} text (invalid byte at offset {error.start})"
    too_many = _TOO_MANY_DIGITS.search(str(error))
    if too_many:
        return f"a number has more than {too_many[1]} digits"
    return str(error)


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
