#!/usr/bin/env python3
"""ClickHouse's HTTP interface in front of an embedded chdb engine.

There is no modern clickhouse-server for this machine or CI, but chdb (PyPI) embeds the same engine
(26.x). This adapter gives it the HTTP face that clickhouse-server has on port 8123, so that our
services, the Rust `clickhouse` crate, curl, Grafana and clickhouse-connect talk to the local stack
exactly as they talk to production. It implements the part of the protocol those clients use:

* `GET /ping`, `GET /` -> `Ok.`; queries from the `query` URL parameter and/or the body (concatenated
  with a newline, as ClickHouse does), or from a `multipart/form-data` body;
* server-side parameters (`param_<name>`), passed to chdb's native parameter binding (no SQL text is
  spliced, so values cannot inject SQL); `database`, `default_format`, `query_id`; any other URL
  parameter is a setting for that one request;
* `INSERT ... FORMAT <fmt>` with the data in the body, chunked or not, optionally compressed with
  HTTP `Content-Encoding` (gzip, deflate, lz4) and/or ClickHouse's block framing (`decompress=1`);
* results in any chdb output format, with ClickHouse's headers, status codes and error texts.

chdb has one session per data directory, shared by all requests: a lock serializes them, and every
change a request makes to the session (current database, settings) is undone before the next one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qsl, urlsplit

import lz4.block
import lz4.frame
from chdb.session import Session
from clickhouse_cityhash.cityhash import CityHash128

log = logging.getLogger("chdb_http_adapter")

# URL parameters that clickhouse-server does not treat as settings (HTTPHandler's reserved names).
RESERVED_PARAMS = frozenset(
    {
        "buffer_size",
        "client_protocol_version",
        "close_session",
        "compress",
        "database",
        "decompress",
        "default_format",
        "password",
        "query",
        "query_id",
        "quota_key",
        "role",
        "session_check",
        "session_id",
        "session_timeout",
        "stacktrace",
        "user",
        "wait_end_of_query",
    }
)
# With multipart bodies clickhouse-server skips these suffixes: they describe external tables.
MULTIPART_RESERVED_SUFFIXES = ("_format", "_types", "_structure")
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Formats that chdb's Python wrapper turns into Python objects rather than bytes.
PYTHON_ONLY_FORMATS = frozenset({"arrowtable", "dataframe", "datastore", "debug"})
BINARY_FORMAT_PREFIXES = (
    "arrow",
    "avro",
    "bson",
    "capnproto",
    "msgpack",
    "native",
    "npy",
    "orc",
    "parquet",
    "protobuf",
    "rowbinary",
)
# Statements a GET request may not run: clickhouse-server makes GET requests readonly=2.
MODIFYING_KINDS = frozenset(
    {
        "ALTER",
        "ATTACH",
        "BACKUP",
        "CREATE",
        "DELETE",
        "DETACH",
        "DROP",
        "EXCHANGE",
        "GRANT",
        "INSERT",
        "KILL",
        "MOVE",
        "OPTIMIZE",
        "RENAME",
        "REPLACE",
        "RESTORE",
        "REVOKE",
        "SYSTEM",
        "TRUNCATE",
        "UNDROP",
        "UPDATE",
    }
)

# clickhouse-server's exceptionCodeToHTTPStatus, by error name (numbers come from the engine).
STATUS_BY_ERROR = {
    **dict.fromkeys(["REQUIRED_PASSWORD"], 401),
    **dict.fromkeys(
        [
            "ACCESS_DENIED",
            "AUTHENTICATION_FAILED",
            "SET_NON_GRANTED_ROLE",
            "UNKNOWN_USER",
            "WRONG_PASSWORD",
        ],
        403,
    ),
    **dict.fromkeys(
        [
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "INCORRECT_DATA",
            "SYNTAX_ERROR",
            "THERE_IS_NO_COLUMN",
            "TOO_BIG_AST",
            "TOO_DEEP_AST",
            "TYPE_MISMATCH",
            "UNEXPECTED_AST_STRUCTURE",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ],
        400,
    ),
    **dict.fromkeys(
        [
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_DATABASE",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_FORMAT",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_ROLE",
            "UNKNOWN_SETTING",
            "UNKNOWN_STORAGE",
            "UNKNOWN_TABLE",
            "UNKNOWN_TYPE",
            "UNKNOWN_TYPE_OF_QUERY",
        ],
        404,
    ),
    "TIMEOUT_EXCEEDED": 408,
    "HTTP_LENGTH_REQUIRED": 411,
    "QUERY_IS_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "NOT_IMPLEMENTED": 501,
    **dict.fromkeys(["CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK", "SOCKET_TIMEOUT"], 503),
}
ENGINE_ERROR = re.compile(r"Code: (\d+)\. ")

NATIVE_CHECKSUM_SIZE = 16
NATIVE_HEADER_SIZE = 9
NATIVE_METHOD_LZ4 = 0x82
NATIVE_METHOD_NONE = 0x02
NATIVE_MAX_BLOCK = 1 << 30  # clickhouse-server's DBMS_MAX_COMPRESSED_SIZE

READ_PIECE = 1 << 20
SPOOL_IN_MEMORY = 32 << 20  # request bodies above this go to a temporary file
SQL_HEAD_LIMIT = 1 << 20  # how much of a body is searched for an INSERT's FORMAT clause
IDLE_TIMEOUT = 600  # seconds a connection may stay silent (the crate's inserter keeps bodies open)


class RequestError(Exception):
    """A request the adapter refuses, reported like a ClickHouse exception with the named code."""

    def __init__(self, error_name: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_name = error_name
        self.message = message
        self.status = status


class EngineError(Exception):
    """An exception from chdb, carrying ClickHouse's text and code."""

    def __init__(self, text: str, code: int):
        super().__init__(text)
        self.text = text
        self.code = code


# --------------------------------------------------------------------------------------------
# SQL analysis: just enough lexing to find what the adapter must know about a statement.
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")


def _tokens(text: str) -> Iterator[tuple[str, str, int, int]]:
    """Yield (kind, text, start, end) for ClickHouse SQL tokens, skipping whitespace and comments.

    Kinds: word, string, ident (quoted identifier), number, punct. Never used to rewrite SQL, only
    to locate keywords outside literals and comments.
    """
    n = len(text)
    pos = 0
    while pos < n:
        c = text[pos]
        if c.isspace():
            pos += 1
        elif text.startswith("--", pos) or text.startswith(("# ", "#!"), pos):
            end = text.find("\n", pos)
            pos = n if end < 0 else end + 1
        elif text.startswith("/*", pos):
            depth, pos = 1, pos + 2
            while pos < n and depth:
                if text.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif text.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        elif c in "'\"`":
            end = pos + 1
            while end < n:
                if text[end] == "\\" or text.startswith(c + c, end):  # escaped or doubled quote
                    end += 2
                elif text[end] == c:
                    break
                else:
                    end += 1
            end = min(end + 1, n)
            yield ("string" if c == "'" else "ident"), text[pos:end], pos, end
            pos = end
        elif (heredoc := _HEREDOC.match(text, pos)) is not None:
            close = text.find(heredoc.group(0), heredoc.end())
            end = n if close < 0 else close + len(heredoc.group(0))
            yield "string", text[pos:end], pos, end
            pos = end
        elif (m := _WORD.match(text, pos) or _NUMBER.match(text, pos)) is not None:
            yield ("word" if m.re is _WORD else "number"), m.group(0), pos, m.end()
            pos = m.end()
        else:
            yield "punct", c, pos, pos + 1
            pos += 1


@dataclass
class Statement:
    """What the adapter needs to know about one SQL statement."""

    kind: str = ""  # first keyword, upper case: SELECT, INSERT, SET, ...
    output_format: str | None = None  # FORMAT clause of a statement that produces output
    insert_format: str | None = None  # input format of an `INSERT ... FORMAT x` that carries data
    insert_head_end: int = 0  # end of the INSERT text before its FORMAT keyword
    data_start: int = 0  # where that INSERT's inline data starts in the text
    set_names: list[str] = field(default_factory=list)  # settings assigned by a SET statement
    temporary: bool = False  # CREATE TEMPORARY TABLE


def _data_start(text: str, pos: int) -> int:
    """Where INSERT data starts after the format name: ClickHouse skips blanks and one line break."""
    while pos < len(text) and text[pos] in " \t\f":
        pos += 1
    if text.startswith("\r", pos):
        pos += 1
    if text.startswith("\n", pos):
        pos += 1
    return pos


def analyze(text: str) -> Statement:
    """Classify a statement and find its FORMAT clause, inline INSERT data and SET assignments.

    Raises RequestError for what the adapter will not run: empty queries, several statements in
    one request (chdb would run them all; clickhouse-server refuses), temporary tables (they would
    outlive the request in the shared session), and INTO OUTFILE / FROM INFILE (not available over
    HTTP on a real server).
    """
    st = Statement()
    depth = 0
    ended = False  # a top-level ';' was seen
    leading_words: list[str] = []
    insert_select = False
    format_state: tuple[str, str] | None = None  # ("keyword", "") after FORMAT, ("name", fmt) after its name
    set_candidate: str | None = None  # a name right after SET or ',' that may be followed by '='
    prev: tuple[str, str] | None = None
    for kind, value, start, end in _tokens(text):
        if ended:
            raise RequestError("SYNTAX_ERROR", "Multi-statements are not allowed")
        upper = value.upper() if kind == "word" else ""
        if not st.kind and kind == "word":
            st.kind = upper
        if kind == "word" and len(leading_words) < 4:
            leading_words.append(upper)
        if set_candidate is not None and value == "=":
            st.set_names.append(set_candidate)
        set_candidate = None

        if format_state is not None and format_state[0] == "name":
            if (kind == "punct" and value == ";") or upper == "SETTINGS":
                st.output_format = format_state[1]
            format_state = None
        if format_state is not None and kind == "word":
            if st.kind == "INSERT" and not insert_select:
                st.insert_format = value
                st.data_start = _data_start(text, end)
                return st
            format_state = ("name", value)
            prev = (kind, upper)
            continue
        format_state = None

        if upper == "OUTFILE" and prev == ("word", "INTO"):
            raise RequestError("INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed over HTTP")
        elif upper == "INFILE" and prev == ("word", "FROM"):
            raise RequestError(
                "NOT_IMPLEMENTED", "FROM INFILE is not allowed over HTTP; send the data in the request body"
            )
        elif kind == "punct":
            if value == "(":
                depth += 1
            elif value == ")":
                depth = max(0, depth - 1)
            elif value == ";" and depth == 0:
                ended = True
        elif depth == 0 and upper == "FORMAT":
            format_state = ("keyword", "")
            st.insert_head_end = start
        elif depth == 0 and st.kind == "INSERT" and upper in ("SELECT", "WITH"):
            insert_select = True
        if depth == 0 and st.kind == "SET" and prev in (("word", "SET"), ("punct", ",")) and kind in ("word", "ident"):
            set_candidate = value.strip('`"') if kind == "ident" else value
        prev = (kind, upper)

    if format_state is not None and format_state[0] == "name":
        st.output_format = format_state[1]
    if not st.kind and prev is None:
        raise RequestError("SYNTAX_ERROR", "Empty query")
    if st.kind == "CREATE" and "TEMPORARY" in leading_words[: (leading_words + ["TABLE"]).index("TABLE")]:
        raise RequestError(
            "NOT_IMPLEMENTED",
            "temporary tables are not supported by the chdb adapter: every client shares one chdb session",
        )
    return st


def quote_string(value: str) -> str:
    """A ClickHouse string literal holding exactly `value`."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"


def quote_identifier(name: str) -> str:
    """A ClickHouse quoted identifier naming exactly `name`."""
    escaped = name.replace("\\", "\\\\").replace("`", "\\`").replace("\0", "\\0")
    return f"`{escaped}`"


def content_type_for(fmt: str) -> str:
    """The Content-Type clickhouse-server sends for an output format."""
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return f"text/csv; charset=UTF-8; header={'present' if 'withnames' in f else 'absent'}"
    if f.startswith("json") or f == "ndjson":
        return "application/json; charset=UTF-8"
    if f == "xml":
        return "application/xml; charset=UTF-8"
    if f.startswith(BINARY_FORMAT_PREFIXES):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


# --------------------------------------------------------------------------------------------
# Request bodies: framing, HTTP compression, ClickHouse block compression, multipart forms.
# --------------------------------------------------------------------------------------------


def iter_content_length(rfile: BinaryIO, length: int) -> Iterator[bytes]:
    """Yield a Content-Length body in pieces."""
    remaining = length
    while remaining:
        piece = rfile.read(min(remaining, READ_PIECE))
        if not piece:
            raise RequestError(
                "CANNOT_READ_ALL_DATA", f"request body ended early: {remaining} more bytes were announced", 400
            )
        remaining -= len(piece)
        yield piece


def iter_chunked(rfile: BinaryIO) -> Iterator[bytes]:
    """Yield the data of a `Transfer-Encoding: chunked` body, consuming its trailer."""
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise RequestError("BAD_ARGUMENTS", "malformed chunked request body: bad chunk size line", 400)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise RequestError(
                "BAD_ARGUMENTS", f"malformed chunked request body: chunk size {line[:40]!r}", 400
            ) from None
        if size == 0:
            while rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                pass
            return
        yield from iter_content_length(rfile, size)
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise RequestError("BAD_ARGUMENTS", "malformed chunked request body: chunk not followed by CRLF", 400)


class ContentDecoder:
    """Undoes HTTP `Content-Encoding` (gzip, deflate, lz4 frames), as clickhouse-server does."""

    FACTORIES: dict[str, Callable[[], object]] = {
        "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
        "x-gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
        "deflate": zlib.decompressobj,
        "lz4": lz4.frame.LZ4FrameDecompressor,
    }

    def __init__(self, encoding: str):
        self.encoding = encoding.strip().lower()
        if self.encoding not in self.FACTORIES:
            raise RequestError(
                "UNKNOWN_COMPRESSION_METHOD",
                f"unsupported Content-Encoding '{encoding}': the adapter accepts gzip, deflate and lz4",
                400,
            )
        self._decoder = self.FACTORIES[self.encoding]()
        self._in_stream = False  # input was given to the current decoder and it has not ended

    def decode(self, data: bytes) -> bytes:
        """Decode a piece of the body; several concatenated streams (gzip members, lz4 frames) are fine."""
        out = []
        try:
            while data:
                out.append(self._decoder.decompress(data))
                self._in_stream = not self._decoder.eof
                if self._in_stream:
                    break
                data = self._decoder.unused_data
                self._decoder = self.FACTORIES[self.encoding]()
        except (zlib.error, RuntimeError) as e:
            raise RequestError("CANNOT_DECOMPRESS", f"cannot decode {self.encoding} request body: {e}", 400) from None
        return b"".join(out)

    def finish(self) -> None:
        """Fail if the body ended inside a compressed stream."""
        if self._in_stream:
            raise RequestError("CANNOT_DECOMPRESS", f"{self.encoding} request body is truncated", 400)


class NativeBlockDecoder:
    """Decodes ClickHouse's compressed-block framing of a request body (URL parameter `decompress=1`).

    Each block: CityHash128 checksum (16 bytes) of what follows, method byte (0x82 LZ4, 0x02 none),
    u32 LE size of the compressed block including this 9-byte header, u32 LE raw size, data.
    Checksums are verified like clickhouse-server does, unless the request sets
    `http_native_compression_disable_checksumming_on_decompress`.
    """

    def __init__(self, verify_checksums: bool):
        self._verify = verify_checksums
        self._buffer = bytearray()

    def decode(self, data: bytes) -> bytes:
        """Return the raw data of all blocks completed by `data`."""
        self._buffer += data
        out = []
        while len(self._buffer) >= NATIVE_CHECKSUM_SIZE + NATIVE_HEADER_SIZE:
            method = self._buffer[NATIVE_CHECKSUM_SIZE]
            size, raw_size = struct.unpack_from("<II", self._buffer, NATIVE_CHECKSUM_SIZE + 1)
            if size < NATIVE_HEADER_SIZE or size > NATIVE_MAX_BLOCK or raw_size > NATIVE_MAX_BLOCK:
                raise RequestError(
                    "TOO_LARGE_SIZE_COMPRESSED",
                    f"bad compressed block header: compressed size {size}, raw size {raw_size} "
                    f"(limit {NATIVE_MAX_BLOCK})",
                    400,
                )
            end = NATIVE_CHECKSUM_SIZE + size
            if len(self._buffer) < end:
                break
            block = bytes(self._buffer[NATIVE_CHECKSUM_SIZE:end])
            if self._verify:
                self._check(bytes(self._buffer[:NATIVE_CHECKSUM_SIZE]), block)
            payload = block[NATIVE_HEADER_SIZE:]
            if method == NATIVE_METHOD_LZ4:
                try:
                    raw = lz4.block.decompress(payload, uncompressed_size=raw_size)
                except lz4.block.LZ4BlockError as e:
                    raise RequestError("CANNOT_DECOMPRESS", f"cannot decompress LZ4 block: {e}", 400) from None
            elif method == NATIVE_METHOD_NONE:
                raw = payload
            else:
                raise RequestError(
                    "UNKNOWN_COMPRESSION_METHOD",
                    f"unknown compression method 0x{method:02x} in compressed block; "
                    "the adapter supports LZ4 (0x82) and none (0x02)",
                    400,
                )
            if len(raw) != raw_size:
                raise RequestError(
                    "CANNOT_DECOMPRESS", f"compressed block decoded to {len(raw)} bytes, header says {raw_size}", 400
                )
            out.append(raw)
            del self._buffer[:end]
        return b"".join(out)

    def finish(self) -> None:
        """Fail if the body ended inside a block."""
        if self._buffer:
            raise RequestError(
                "CANNOT_DECOMPRESS",
                f"request body ends inside a compressed block ({len(self._buffer)} bytes left over)",
                400,
            )

    @staticmethod
    def _check(checksum: bytes, block: bytes) -> None:
        digest = CityHash128(block)
        expected = struct.pack("<QQ", digest >> 64, digest & 0xFFFF_FFFF_FFFF_FFFF)
        if checksum != expected:
            raise RequestError(
                "CHECKSUM_DOESNT_MATCH",
                f"checksum of compressed block does not match: got {checksum.hex()}, computed {expected.hex()}",
                400,
            )


def parse_multipart(body: bytes, content_type: str) -> dict[str, str]:
    """Fields of a `multipart/form-data` body (the crate sends `query` and `param_<name>` this way)."""
    m = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if m is None:
        raise RequestError("BAD_ARGUMENTS", "multipart/form-data request without a boundary", 400)
    delimiter = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    parts = body.split(delimiter)
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        raise RequestError("BAD_ARGUMENTS", "malformed multipart/form-data body: closing boundary missing", 400)
    fields = {}
    for part in parts[1:-1]:
        head, sep, value = part[2:-2].partition(b"\r\n\r\n")
        if not (part.startswith(b"\r\n") and part.endswith(b"\r\n") and sep):
            raise RequestError(
                "BAD_ARGUMENTS", "malformed multipart/form-data body: part without CRLF-separated headers", 400
            )
        disposition = next(
            (line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition:")),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            raise RequestError("BAD_ARGUMENTS", "malformed multipart/form-data body: part without a name", 400)
        if re.search(r"\bfilename=", disposition):
            raise RequestError(
                "NOT_IMPLEMENTED", "external data (multipart file parts) is not supported by the chdb adapter"
            )
        try:
            fields[name.group(1)] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("BAD_ARGUMENTS", f"multipart field '{name.group(1)}' is not valid UTF-8", 400) from None
    return fields


# --------------------------------------------------------------------------------------------
# The engine: one chdb session, one lock, nothing left behind by a request.
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One statement to run, with the request-scoped state it runs under."""

    statement: Statement
    sql: str = ""  # statements without body data
    insert_head: str = ""  # `INSERT INTO t (c...)` of an INSERT whose data comes separately
    data: Iterator[bytes] | None = None
    output_format: str = "TabSeparated"
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None


@dataclass
class Outcome:
    body: bytes
    summary: dict[str, str]


class Engine:
    """The chdb session shared by all requests.

    Requests run one at a time under a lock. Before a statement the request's database and
    settings are applied to the session; afterwards they are reset to what the session had at
    start, so nothing leaks into the next request. SET statements are run (so bad names or values
    fail as on a server) and then undone too: over HTTP without sessions they only last for their
    own request on clickhouse-server as well.
    """

    def __init__(self, data_dir: str):
        self._session = Session(data_dir)
        self._lock = threading.Lock()
        self._closed = False
        # clickhouse-server defaults to synchronous inserts; chdb defaults to async_insert=1.
        self._session.query("SET async_insert = 0")
        self.version, self.timezone, self.database = self._rows("SELECT version(), timezone(), currentDatabase()")[0]
        self.error_codes = {
            name: int(code)
            for name, code in self._rows(
                "SELECT errorCodeToName(number) AS name, number FROM numbers(2000) WHERE name != ''"
            )
        }
        self.error_names = {code: name for name, code in self.error_codes.items()}
        self._baseline = dict(self._rows("SELECT name, value FROM system.settings WHERE changed"))

    def _rows(self, sql: str) -> list[list[str]]:
        text = self._session.query(sql, "TabSeparatedRaw").bytes().decode()
        return [line.split("\t") for line in text.splitlines()]

    def close(self) -> None:
        """Wait for the running request, then close the session; later requests get 503."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()

    def run(self, job: Job) -> Outcome:
        with self._lock:
            if self._closed:
                raise RequestError("ABORTED", "the adapter is shutting down", 503)
            to_reset = list(job.settings)
            restore_database = job.database is not None or job.statement.kind == "USE"
            try:
                if job.database is not None:
                    self._execute(f"USE {quote_identifier(job.database)}")
                if job.settings:
                    self._execute("SET " + ", ".join(f"{n} = {quote_string(v)}" for n, v in job.settings.items()))
                if job.statement.kind == "SET":
                    if "readonly" in (name.lower() for name in job.statement.set_names):
                        # Once set, `readonly` can never be unset in the session; on a server it
                        # would only last for this request anyway.
                        return Outcome(b"", summary())
                    to_reset += job.statement.set_names
                if job.data is not None:
                    return self._insert(job)
                return self._query(job)
            finally:
                self._restore(to_reset, restore_database)

    def _execute(self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None):
        try:
            return self._session.query(sql, fmt, params=params)
        except RuntimeError as e:
            raise engine_error(str(e)) from None

    def _query(self, job: Job) -> Outcome:
        result = self._execute(job.sql, job.output_format, job.params)
        return Outcome(
            result.bytes(),
            summary(
                read_rows=result.storage_rows_read(),
                read_bytes=result.storage_bytes_read(),
                written_rows=result.rows_written(),
                written_bytes=result.bytes_written(),
                result_rows=result.rows_read(),
                result_bytes=result.bytes_read(),
                elapsed=result.elapsed(),
            ),
        )

    def _insert(self, job: Job) -> Outcome:
        # Not chdb's streaming insert (`send_insert`): it reports success — rows written, none
        # stored — when the engine refuses the rows after parsing them (a CHECK constraint, more
        # partitions than max_partitions_per_insert_block), which would turn a refused insert
        # into silent loss. `INSERT … FROM INFILE` raises those errors like clickhouse-server
        # answers them. The body is spooled to a private temporary file first (one insert at a
        # time holds the session anyway).
        with tempfile.NamedTemporaryFile(prefix="polytape-insert-", suffix=".bin") as spool:
            for piece in job.data:
                spool.write(piece)
            spool.flush()
            statement = f"{job.insert_head} FROM INFILE {quote_string(spool.name)} FORMAT {job.statement.insert_format}"
            try:
                result = self._session.query(statement)
            except RuntimeError as e:
                raise engine_error(str(e)) from None
        return Outcome(
            b"", summary(written_rows=result.rows_written(), written_bytes=result.bytes_written(), elapsed=result.elapsed())
        )

    def _restore(self, names: list[str], database: bool) -> None:
        """Put back the session's baseline settings and database; a failure here is logged, not raised."""
        assignments = {
            name: f"{name} = {quote_string(self._baseline[name])}" if name in self._baseline else f"{name} = DEFAULT"
            for name in names
            if SETTING_NAME.fullmatch(name)  # anything else cannot have been set
        }
        if assignments:
            try:
                self._session.query("SET " + ", ".join(assignments.values()))
            except RuntimeError:
                # One of the names was never a setting; reset the others one by one.
                for name, assignment in assignments.items():
                    try:
                        self._session.query("SET " + assignment)
                    except RuntimeError as e:
                        log.debug("cannot reset setting %s: %s", name, e)
        if database:
            try:
                self._session.query(f"USE {quote_identifier(self.database)}")
            except RuntimeError as e:
                log.error("cannot restore current database %s: %s", self.database, e)


def summary(
    *, read_rows=0, read_bytes=0, written_rows=0, written_bytes=0, result_rows=0, result_bytes=0, elapsed=0.0
) -> dict[str, str]:
    """X-ClickHouse-Summary fields, as strings like clickhouse-server sends them."""
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(written_rows),
        "written_bytes": str(written_bytes),
        "total_rows_to_read": str(read_rows),
        "result_rows": str(result_rows),
        "result_bytes": str(result_bytes),
        "elapsed_ns": str(int(elapsed * 1e9)),
    }


def engine_error(text: str) -> EngineError:
    """Wrap chdb's exception text, dropping prefixes chdb's Python wrapper adds before `Code: N.`."""
    m = ENGINE_ERROR.search(text)
    if m is None:
        return EngineError(text, 0)
    return EngineError(text[m.start() :].strip(), int(m.group(1)))


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class Body:
    """A decoded request body, spooled to a temporary file when large."""

    def __init__(self):
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self._file.write(data)
            self.size += len(data)

    def rewind(self) -> None:
        self._file.seek(0)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def pieces(self) -> Iterator[bytes]:
        while piece := self._file.read(READ_PIECE):
            yield piece

    def close(self) -> None:
        self._file.close()


class Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a Job for the engine and the outcome into ClickHouse's response."""

    protocol_version = "HTTP/1.1"
    server_version = "chdb-http-adapter"
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    server: AdapterServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:
        log.debug("http: " + format, *args)

    def log_request(self, code="-", size="-") -> None:
        """Requests are logged by _handle, with more detail."""

    def _handle(self) -> None:
        started = time.monotonic()
        self._body_read = False
        self._query_id = ""
        self._sql_preview = ""
        try:
            try:
                status, size = self._respond_to_request()
            except RequestError as e:
                status, size = self._send_error(e.error_name, e.message, e.status)
            except EngineError as e:
                status, size = self._send_engine_error(e)
            except (ConnectionError, TimeoutError):
                raise
            except Exception as e:
                log.exception("internal error while handling %s %s", self.command, self.path)
                status, size = self._send_error("STD_EXCEPTION", f"chdb adapter internal error: {e!r}", 500)
        except (ConnectionError, TimeoutError) as e:
            log.debug("client %s went away: %r", self.client_address[0], e)
            self.close_connection = True
            return
        level = logging.DEBUG if status < 400 else logging.WARNING
        log.log(
            level,
            "%s %s %s -> %d, %d bytes, %.1f ms, query_id=%s, query=%s",
            self.client_address[0],
            self.command,
            urlsplit(self.path).path,
            status,
            size,
            (time.monotonic() - started) * 1000,
            self._query_id,
            self._sql_preview,
        )

    def _respond_to_request(self) -> tuple[int, int]:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in ("/ping", "/replicas_status"):
            self._read_body(params)
            return self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
        if url.path != "/":
            self._read_body(params)
            return self._send(404, f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n".encode(), {})

        body = self._read_body(params)
        multipart = self.headers.get_content_type() == "multipart/form-data"
        try:
            if multipart:
                fields = parse_multipart(body.read(), self.headers.get("Content-Type", ""))
                params.update(fields)
                body.close()
                body = Body()
            if self.command == "GET" and "query" not in params and body.size == 0:
                return self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            self._query_id = params.get("query_id") or self.headers.get("X-ClickHouse-Query-Id") or str(uuid.uuid4())
            job = self._job(params, body, multipart)
            outcome = self.server.engine.run(job)
        finally:
            body.close()

        headers = {"X-ClickHouse-Summary": json.dumps(outcome.summary, separators=(",", ":"))}
        if job.data is None:
            headers["Content-Type"] = content_type_for(job.output_format)
            headers["X-ClickHouse-Format"] = job.output_format
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        return self._send(200, outcome.body, headers)

    def _read_body(self, params: dict[str, str]) -> Body:
        """Read and decode the whole request body (before the engine lock is taken: clients such as
        the crate's inserter keep a body open while they produce rows)."""
        body = Body()
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                pieces = iter_chunked(self.rfile)
            else:
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    raise RequestError("BAD_ARGUMENTS", "invalid Content-Length header", 400) from None
                pieces = iter_content_length(self.rfile, length)
            content = ContentDecoder(self.headers["Content-Encoding"]) if self.headers.get("Content-Encoding") else None
            native = None
            if params.get("decompress", "0") not in ("0", "", "false"):
                skip_check = params.get("http_native_compression_disable_checksumming_on_decompress", "0")
                native = NativeBlockDecoder(verify_checksums=skip_check in ("0", "false"))
            for piece in pieces:
                data = piece if content is None else content.decode(piece)
                body.write(data if native is None else native.decode(data))
            if content is not None:
                content.finish()
            if native is not None:
                native.finish()
            self._body_read = True
            body.rewind()
            return body
        except BaseException:
            body.close()
            raise

    def _job(self, params: dict[str, str], body: Body, multipart: bool) -> Job:
        """Split the request into SQL, inline INSERT data and request-scoped state."""
        readonly = self.command == "GET" or params.get("readonly", "0") not in ("0", "")
        settings = {}
        for name, value in params.items():
            if not name or name in RESERVED_PARAMS or name.startswith("param_") or name == "readonly":
                continue
            if multipart and name.endswith(MULTIPART_RESERVED_SUFFIXES):
                continue
            if not SETTING_NAME.fullmatch(name):
                raise RequestError("UNKNOWN_SETTING", f"Unknown setting '{name}'")
            settings[name] = value
        job = Job(
            statement=Statement(),
            params={name[len("param_") :]: value for name, value in params.items() if name.startswith("param_")},
            settings=settings,
            database=self.headers.get("X-ClickHouse-Database") or params.get("database") or None,
        )

        query = params.get("query", "")
        self._sql_preview = _preview(query)
        if query:
            text = query + "\n"
            st = analyze(text)
            if st.insert_format is not None:
                inline = text[st.data_start :].encode()
                job.data = _chain(inline, body.pieces())
                job.insert_head = text[: st.insert_head_end]
            else:
                job.sql = text + _utf8(body.read()) if body.size else query
                st = analyze(job.sql)
        else:
            # Latin-1 maps bytes 1:1 to characters, so offsets found in the text are byte offsets.
            head = body.read(SQL_HEAD_LIMIT)
            self._sql_preview = _preview(head[:400].decode("utf-8", "replace"))
            st = analyze(head.decode("latin-1"))
            if body.size > len(head) and (st.insert_format is None or st.data_start >= len(head)):
                head += body.read()  # a statement longer than SQL_HEAD_LIMIT
                st = analyze(head.decode("latin-1"))
            if st.insert_format is not None:
                job.data = _chain(head[st.data_start :], body.pieces())
                job.insert_head = _utf8(head[: st.insert_head_end])
            else:
                job.sql = _utf8(head)
        job.statement = st
        if job.data is not None:
            self._sql_preview = _preview(f"{job.insert_head} FORMAT {st.insert_format}")

        if readonly and st.kind in MODIFYING_KINDS:
            raise RequestError(
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries",
            )
        fmt = (
            st.output_format
            or self.headers.get("X-ClickHouse-Format")
            or params.get("default_format")
            or "TabSeparated"
        )
        if fmt.lower() in PYTHON_ONLY_FORMATS:
            raise RequestError("UNKNOWN_FORMAT", f"Unknown format {fmt}")
        job.output_format = fmt
        return job

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        if not self._body_read:
            # The rest of the body is still on the socket; it cannot carry another request.
            self.close_connection = True
        self.send_response(status)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
        if self._query_id:
            self.send_header("X-ClickHouse-Query-Id", self._query_id)
            self.send_header("X-ClickHouse-Timezone", self.server.engine.timezone)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return status, len(body)

    def _send_error(self, error_name: str, message: str, status: int | None) -> tuple[int, int]:
        engine = self.server.engine
        code = engine.error_codes.get(error_name, 0)
        text = f"Code: {code}. DB::Exception: {message}. ({error_name}) (version {engine.version})"
        return self._send_exception(code, text, status or STATUS_BY_ERROR.get(error_name, 500))

    def _send_engine_error(self, e: EngineError) -> tuple[int, int]:
        engine = self.server.engine
        text = e.text if "(version " in e.text else f"{e.text} (version {engine.version})"
        return self._send_exception(e.code, text, STATUS_BY_ERROR.get(engine.error_names.get(e.code, ""), 500))

    def _send_exception(self, code: int, text: str, status: int) -> tuple[int, int]:
        return self._send(
            status,
            (text + "\n").encode(),
            {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(code)},
        )


def _preview(text: str) -> str:
    """The start of a query for a log line: one line, printable, short."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))[:200]


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError("BAD_ARGUMENTS", f"query text is not valid UTF-8 (at byte {e.start})", 400) from None


class AdapterServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Engine):
        super().__init__(address, Handler)
        self.engine = engine
        self.display_name = socket.gethostname()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface for an embedded chdb engine.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port to listen on (default 8123; 0 picks a free one)")
    parser.add_argument(
        "--data-dir", required=True, help="chdb data directory (created if missing; one adapter per directory)"
    )
    parser.add_argument("--log-file", help="append logs here instead of stderr")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="debug logs one line per request; errors are always logged",
    )
    args = parser.parse_args(argv)

    handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())

    os.makedirs(args.data_dir, exist_ok=True)
    try:
        engine = Engine(args.data_dir)
    except Exception as e:
        log.error("cannot open chdb session in %s: %s", args.data_dir, e)
        return 1
    try:
        server = AdapterServer((args.host, args.port), engine)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, e)
        engine.close()
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http-server", daemon=True).start()

    host, port = server.server_address[:2]
    ready = f"ready on http://{host}:{port}"
    log.info("%s (chdb engine %s, data dir %s)", ready, engine.version, os.path.abspath(args.data_dir))
    print(ready, flush=True)

    stop.wait()
    log.info("shutting down")
    server.shutdown()
    server.server_close()
    engine.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
