"""End-to-end tests of chdb_http_adapter.py: a real adapter process, real HTTP, real chdb.

Run from the venv:  cd tools/local-stack && ../../.polytape/venv/bin/python -m unittest -v
The clickhouse-connect test needs requirements-test.txt and is skipped without it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid
from pathlib import Path
from urllib.parse import urlencode

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128

HERE = Path(__file__).resolve().parent
ADAPTER = HERE / "chdb_http_adapter.py"
START_TIMEOUT = 60


class Adapter:
    """An adapter process on a free port, with its own data directory and log file."""

    def __init__(self, data_dir: Path, log_file: Path):
        self.data_dir = data_dir
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        with open(self.log_file, "ab") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(ADAPTER),
                    "--port",
                    "0",
                    "--data-dir",
                    str(self.data_dir),
                    "--log-file",
                    str(self.log_file),
                    "--log-level",
                    "debug",
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready on http://"):
            self.process.kill()
            raise AssertionError(f"adapter did not start (said {line!r}); log:\n{self.log_file.read_text()}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process.stdout.close()
        return code

    def request(
        self,
        method: str,
        path: str = "/",
        body=None,
        headers: dict | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; an iterable body is sent with Transfer-Encoding: chunked."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            chunked = body is not None and not isinstance(body, (bytes, str))
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            if own:
                conn.close()

    def query(self, sql: str, **params: str) -> bytes:
        """POST a statement (SQL in the body, like the crate) and return the body; fails on non-200."""
        status, headers, body = self.request("POST", "/?" + urlencode(params), sql.encode())
        if status != 200:
            raise AssertionError(f"{sql!r} -> {status}: {body.decode(errors='replace')}")
        return body

    def insert(self, sql: str, data, **params: str) -> tuple[int, dict[str, str], bytes]:
        """INSERT with the SQL in the URL and the data in the body, like the crate."""
        return self.request("POST", "/?" + urlencode({"query": sql, **params}), data)


def row_binary(rows: list[tuple[int, str]]) -> bytes:
    """RowBinary for (UInt64, String) rows."""
    out = bytearray()
    for number, text in rows:
        encoded = text.encode()
        out += struct.pack("<Q", number) + leb128(len(encoded)) + encoded
    return bytes(out)


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def native_block(raw: bytes, method: int = 0x82, payload: bytes | None = None) -> bytes:
    """One block of ClickHouse's compression framing, as the crate sends with decompress=1."""
    if payload is None:
        payload = lz4.block.compress(raw, store_size=False) if method == 0x82 else raw
    header = struct.pack("<BII", method, 9 + len(payload), len(raw))
    digest = CityHash128(header + payload)
    return struct.pack("<QQ", digest >> 64, digest & 0xFFFF_FFFF_FFFF_FFFF) + header + payload


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body built the way clickhouse-rs 0.15 builds it."""
    boundary = "clickhouse-rs-boundary-" + uuid.uuid4().hex[:16]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
            for name, value in fields.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def crate_param(value: str) -> str:
    """A String parameter escaped like clickhouse-rs 0.15's `write_param` (unquoted, backslash-escaped)."""
    return "".join("\\" + c if c in "\\'`\t\n" else c for c in value)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


NASTY = "it's a \\ back'slash\" `tick`\ttab\nnewline '); DROP TABLE x; -- {p:String} \\' é😀"


class AdapterTest(unittest.TestCase):
    """One adapter shared by the tests of this class (each test uses its own tables)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="chdb-adapter-test-"))
        cls.adapter = Adapter(cls.tmp / "data", cls.tmp / "adapter.log")
        cls.adapter.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.adapter.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"adapter exited with {code} on SIGTERM")

    def table(self, columns: str = "a UInt64, s String", settings: str = "") -> str:
        name = f"t_{self._testMethodName}_{uuid.uuid4().hex[:6]}"
        self.adapter.query(f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY tuple() {settings}")
        return name

    def rows(self, sql: str, **params: str) -> list[dict]:
        return [json.loads(line) for line in self.adapter.query(sql + " FORMAT JSONEachRow", **params).splitlines()]

    def assert_exception(self, response, status: int, code: int, name: str):
        got_status, headers, body = response
        text = body.decode()
        self.assertEqual(got_status, status, text)
        self.assertEqual(headers.get("x-clickhouse-exception-code"), str(code), text)
        self.assertTrue(text.startswith(f"Code: {code}. DB::Exception: "), text)
        self.assertIn(f"({name})", text)
        self.assertIn("(version 26.", text)

    def assert_alive(self):
        self.assertEqual(self.adapter.request("GET", "/ping")[2], b"Ok.\n")

    # --- basics --------------------------------------------------------------------------

    def test_ping_and_root(self):
        for path in ("/ping", "/"):
            status, headers, body = self.adapter.request("GET", path)
            self.assertEqual((status, body), (200, b"Ok.\n"), path)

    def test_get_select(self):
        status, headers, body = self.adapter.request("GET", "/?query=SELECT%201")
        self.assertEqual((status, body), (200, b"1\n"))
        self.assertEqual(headers["x-clickhouse-format"], "TabSeparated")
        self.assertEqual(headers["content-type"], "text/tab-separated-values; charset=UTF-8")
        self.assertTrue(headers["x-clickhouse-query-id"])
        self.assertTrue(headers["x-clickhouse-server-display-name"])
        self.assertEqual(json.loads(headers["x-clickhouse-summary"])["result_rows"], "1")

    def test_post_select_and_query_id(self):
        status, headers, body = self.adapter.request("POST", "/?query_id=my-query", b"SELECT 40 + 2")
        self.assertEqual((status, body, headers["x-clickhouse-query-id"]), (200, b"42\n", "my-query"))

    def test_curl_get_and_post(self):
        url = f"http://127.0.0.1:{self.adapter.port}"
        got = subprocess.run(["curl", "-sS", f"{url}/?query=SELECT%201"], capture_output=True, check=True)
        self.assertEqual(got.stdout, b"1\n")
        got = subprocess.run(
            ["curl", "-sS", "--data-binary", "@-", url], input=b"SELECT version()\n", capture_output=True, check=True
        )
        self.assertRegex(got.stdout.decode(), r"^26\.\d+\.\d+\.\d+\n$")

    def test_url_query_then_body(self):
        # ClickHouse joins the URL query and the body with a newline.
        self.assertEqual(self.adapter.request("POST", "/?query=SELECT", b"1 + 1")[2], b"2\n")

    def test_format_clause_wins_over_default_format(self):
        status, headers, body = self.adapter.request("POST", "/?default_format=CSV", b"SELECT 1 AS x FORMAT JSON")
        self.assertEqual(json.loads(body)["data"], [{"x": 1}])
        self.assertEqual(headers["x-clickhouse-format"], "JSON")
        self.assertEqual(headers["content-type"], "application/json; charset=UTF-8")
        status, headers, body = self.adapter.request("POST", "/?default_format=CSVWithNames", b"SELECT 1 AS x")
        self.assertEqual((body, headers["x-clickhouse-format"]), (b'"x"\n1\n', "CSVWithNames"))

    def test_output_formats(self):
        sql = "SELECT number AS n, toString(number) AS s FROM numbers(2)"
        self.assertEqual(
            self.adapter.query(sql, default_format="TabSeparatedWithNamesAndTypes"),
            b"n\ts\nUInt64\tString\n0\t0\n1\t1\n",
        )
        self.assertEqual(self.adapter.query(sql, default_format="CSV"), b'0,"0"\n1,"1"\n')
        self.assertEqual(self.adapter.query(sql, default_format="RowBinary"), row_binary([(0, "0"), (1, "1")]))
        self.assertEqual(self.rows(sql), [{"n": 0, "s": "0"}, {"n": 1, "s": "1"}])
        status, headers, _ = self.adapter.request("POST", "/?default_format=RowBinary", sql.encode())
        self.assertEqual(headers["content-type"], "application/octet-stream")

    def test_row_binary_with_names_and_types_header_for_empty_result(self):
        table = self.table()
        expected = b"\x02\x01a\x01s\x06UInt64\x06String"
        self.assertEqual(
            self.adapter.query(f"SELECT a, s FROM {table}", default_format="RowBinaryWithNamesAndTypes"), expected
        )
        self.assertEqual(
            self.adapter.query(f"SELECT a, s FROM {table} WHERE 0 FORMAT RowBinaryWithNamesAndTypes"), expected
        )

    def test_version_is_26(self):
        self.assertRegex(self.adapter.query("SELECT version()").decode(), r"^26\.")

    def test_keep_alive_across_requests_and_errors(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.adapter.port, timeout=30)
        try:
            self.assertEqual(self.adapter.request("POST", "/", b"SELECT 1", conn=conn)[2], b"1\n")
            self.assertEqual(self.adapter.request("POST", "/", b"SELEC 1", conn=conn)[0], 400)
            self.assertEqual(self.adapter.request("POST", "/", iter([b"SELECT ", b"2"]), conn=conn)[2], b"2\n")
            self.assertEqual(self.adapter.request("GET", "/?query=SELECT%203", conn=conn)[2], b"3\n")
        finally:
            conn.close()

    # --- parameters ----------------------------------------------------------------------

    def test_multipart_params_like_the_crate(self):
        sql = "SELECT {s:String} AS s, {n:UInt32} AS n, {arr:Array(String)} AS arr FORMAT JSONEachRow"
        body, content_type = multipart(
            {
                "query": sql,
                "param_s": crate_param(NASTY),
                "param_n": "42",
                "param_arr": "['a\\'b','c\\\\d']",
            }
        )
        status, _, out = self.adapter.request("POST", "/", body, {"Content-Type": content_type})
        self.assertEqual(status, 200, out)
        self.assertEqual(json.loads(out), {"s": NASTY, "n": 42, "arr": ["a'b", "c\\d"]})

    def test_url_params_cannot_inject(self):
        table = self.table()
        self.adapter.insert(f"INSERT INTO {table} FORMAT CSV", b"1,keep\n")
        injection = "x' OR 1 = 1 OR s = '"
        got = self.rows(f"SELECT count() AS c FROM {table} WHERE s = {{v:String}}", param_v=crate_param(injection))
        self.assertEqual(got, [{"c": 0}])
        got = self.rows("SELECT {v:String} AS v", param_v=crate_param(NASTY))
        self.assertEqual(got, [{"v": NASTY}])
        got = self.rows("SELECT {t:Identifier} AS x FROM (SELECT 5 AS a)", param_t="a")
        self.assertEqual(got, [{"x": 5}])

    def test_param_of_wrong_type_is_an_error(self):
        status, headers, body = self.adapter.request("POST", "/?param_n=abc", b"SELECT {n:UInt8}")
        self.assertNotEqual(status, 200)
        self.assertTrue(headers.get("x-clickhouse-exception-code"), body)

    def test_curl_form_params(self):
        url = f"http://127.0.0.1:{self.adapter.port}/"
        got = subprocess.run(
            [
                "curl",
                "-sS",
                "--form-string",
                "query=SELECT {s:String} AS s FORMAT JSONEachRow",
                "--form-string",
                f"param_s={crate_param(NASTY)}",
                url,
            ],
            capture_output=True,
            check=True,
        )
        self.assertEqual(json.loads(got.stdout), {"s": NASTY})

    # --- database, settings, isolation ---------------------------------------------------

    def test_database_param(self):
        self.adapter.query("CREATE DATABASE IF NOT EXISTS other_db")
        self.adapter.query("CREATE TABLE IF NOT EXISTS other_db.only_here (a UInt8) ENGINE = Memory")
        self.assertEqual(self.adapter.query("SELECT currentDatabase()", database="other_db"), b"other_db\n")
        self.assertEqual(self.adapter.query("SELECT count() FROM only_here", database="other_db"), b"0\n")
        self.assertEqual(self.adapter.query("SELECT currentDatabase()"), b"default\n")
        self.assert_exception(self.adapter.request("POST", "/", b"SELECT 1 FROM only_here"), 404, 60, "UNKNOWN_TABLE")
        self.assert_exception(
            self.adapter.request("POST", "/?database=no_such_db", b"SELECT 1"), 404, 81, "UNKNOWN_DATABASE"
        )

    def test_settings_apply_to_one_request_only(self):
        get = "SELECT getSetting('max_execution_time'), getSetting('describe_include_subcolumns')"
        self.assertEqual(
            self.adapter.query(get, max_execution_time="123", describe_include_subcolumns="1"), b"123\ttrue\n"
        )
        self.assertEqual(self.adapter.query(get), b"0\tfalse\n")
        # Like clickhouse-server (chdb itself defaults to async inserts).
        self.assertEqual(self.adapter.query("SELECT getSetting('async_insert')"), b"false\n")
        # SET statements are run (so they are checked) and then undone, as on a server without sessions.
        self.adapter.query("SET max_execution_time = 77")
        self.assertEqual(self.adapter.query(get), b"0\tfalse\n")
        self.assert_exception(
            self.adapter.request("POST", "/", b"SET no_such_setting = 1"), 404, 115, "UNKNOWN_SETTING"
        )
        self.assert_exception(
            self.adapter.request("POST", "/?no_such_setting=1", b"SELECT 1"), 404, 115, "UNKNOWN_SETTING"
        )
        self.assertEqual(self.adapter.query("SELECT 1"), b"1\n")
        # `readonly` could never be unset in the shared session.
        self.adapter.query("SET readonly = 1")
        self.assertEqual(self.adapter.query("SELECT getSetting('readonly')"), b"0\n")
        self.adapter.query("USE system")
        self.assertEqual(self.adapter.query("SELECT currentDatabase()"), b"default\n")

    def test_reserved_params_are_not_settings(self):
        params = {
            "query": "SELECT 1",
            "session_id": "s1",
            "user": "default",
            "password": "x",
            "compress": "1",
            "wait_end_of_query": "1",
            "query_id": "q1",
            "client_protocol_version": "0",
            "": "",
        }
        status, headers, body = self.adapter.request("GET", "/?" + urlencode(params))
        self.assertEqual((status, body), (200, b"1\n"), body)

    def test_get_is_readonly(self):
        table = f"t_get_{uuid.uuid4().hex[:6]}"
        sql = f"CREATE TABLE {table} (a UInt8) ENGINE = Memory"
        self.assert_exception(self.adapter.request("GET", "/?" + urlencode({"query": sql})), 500, 164, "READONLY")
        self.assertEqual(self.adapter.query(f"EXISTS TABLE {table}"), b"0\n")

    def test_multi_statements_rejected(self):
        table = self.table()
        response = self.adapter.request("POST", "/", f"SELECT 1; DROP TABLE {table}".encode())
        self.assert_exception(response, 400, 62, "SYNTAX_ERROR")
        self.assertEqual(self.adapter.query(f"EXISTS TABLE {table}"), b"1\n")
        self.assertEqual(self.adapter.query("SELECT ';' AS x;"), b";\n")

    def test_temporary_tables_rejected(self):
        response = self.adapter.request("POST", "/", b"CREATE TEMPORARY TABLE tmp (a UInt8)")
        self.assert_exception(response, 501, 48, "NOT_IMPLEMENTED")

    # --- errors --------------------------------------------------------------------------

    def test_syntax_error(self):
        self.assert_exception(self.adapter.request("POST", "/", b"SELEC 1"), 400, 62, "SYNTAX_ERROR")
        self.assert_exception(self.adapter.request("GET", "/?query=SELEC%201"), 400, 62, "SYNTAX_ERROR")
        self.assert_exception(self.adapter.request("POST", "/", b""), 400, 62, "SYNTAX_ERROR")

    def test_unknown_table(self):
        response = self.adapter.request("POST", "/", b"SELECT * FROM no_such_table")
        self.assert_exception(response, 404, 60, "UNKNOWN_TABLE")
        response = self.adapter.insert("INSERT INTO no_such_table FORMAT RowBinary", row_binary([(1, "x")]))
        self.assert_exception(response, 404, 60, "UNKNOWN_TABLE")

    def test_malformed_requests(self):
        body, content_type = multipart({"query": "SELECT 1"})
        response = self.adapter.request("POST", "/", body[:-10], {"Content-Type": content_type})
        self.assert_exception(response, 400, 36, "BAD_ARGUMENTS")
        response = self.adapter.request("POST", "/", body, {"Content-Type": "multipart/form-data"})
        self.assert_exception(response, 400, 36, "BAD_ARGUMENTS")
        self.assert_exception(
            self.adapter.request("POST", "/", b"SELECT 1", {"Content-Encoding": "br"}),
            400,
            89,
            "UNKNOWN_COMPRESSION_METHOD",
        )
        self.assert_exception(self.adapter.request("POST", "/", b"\xff\xfe", {}), 400, 36, "BAD_ARGUMENTS")
        self.assert_alive()

    def test_garbage_on_the_socket(self):
        for garbage, expected in (
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", b"HTTP/1.1 400 "),
            (b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nSELECT", b"HTTP/1.1 400 "),
            (b"\x00\x01\x02 nonsense\r\n\r\n", b"Error code: 400"),  # http.server answers this HTTP/0.9-style
        ):
            with socket.create_connection(("127.0.0.1", self.adapter.port), timeout=10) as sock:
                sock.sendall(garbage)
                sock.shutdown(socket.SHUT_WR)
                reply = sock.recv(65536)
            self.assertIn(expected, reply)
        self.assert_alive()

    # --- inserts -------------------------------------------------------------------------

    def test_row_binary_insert_uncompressed(self):
        table = self.table()
        rows = [(i, f"row {i} ' \\ é") for i in range(1000)]
        status, headers, body = self.adapter.insert(
            f"INSERT INTO `{table}`(`a`,`s`) FORMAT RowBinary", row_binary(rows)
        )
        self.assertEqual((status, body), (200, b""), body)
        self.assertEqual(json.loads(headers["x-clickhouse-summary"])["written_rows"], "1000")
        got = self.rows(f"SELECT a, s FROM {table} ORDER BY a")
        self.assertEqual([(r["a"], r["s"]) for r in got], rows)

    def test_row_binary_insert_lz4_chunked(self):
        table = self.table()
        rows = [(i, "x" * (i % 50)) for i in range(50_000)]
        raw = row_binary(rows)
        # Several compressed blocks, sent in chunks that do not line up with the blocks.
        framed = b"".join(native_block(piece) for piece in split(raw, 256 * 1024))
        chunks = split(framed, 100_000)
        status, _, body = self.adapter.insert(
            f"INSERT INTO `{table}`(`a`,`s`) FORMAT RowBinary", iter(chunks), decompress="1"
        )
        self.assertEqual((status, body), (200, b""), body)
        got = self.rows(f"SELECT count() AS c, sum(a) AS sa, sum(length(s)) AS ls FROM {table}")
        self.assertEqual(got, [{"c": 50000, "sa": sum(range(50_000)), "ls": sum(i % 50 for i in range(50_000))}])

    def test_row_binary_with_names_and_types_insert_uncompressed_block_method(self):
        table = self.table()
        raw = b"\x02\x01a\x01s\x06UInt64\x06String" + row_binary([(7, "seven"), (8, "eight")])
        status, _, body = self.adapter.insert(
            f"INSERT INTO `{table}`(`a`,`s`) FORMAT RowBinaryWithNamesAndTypes",
            native_block(raw, method=0x02),
            decompress="1",
        )
        self.assertEqual((status, body), (200, b""), body)
        self.assertEqual(
            self.rows(f"SELECT a, s FROM {table} ORDER BY a"), [{"a": 7, "s": "seven"}, {"a": 8, "s": "eight"}]
        )

    def test_bad_compressed_blocks(self):
        table = self.table()
        sql = f"INSERT INTO {table}(a, s) FORMAT RowBinary"
        block = native_block(row_binary([(1, "x")]))
        corrupted = block[:-1] + bytes([block[-1] ^ 0xFF])
        self.assert_exception(self.adapter.insert(sql, corrupted, decompress="1"), 400, 40, "CHECKSUM_DOESNT_MATCH")
        bad_lz4 = native_block(b"\x00" * 100, payload=b"\xff" * 20)
        self.assert_exception(self.adapter.insert(sql, bad_lz4, decompress="1"), 400, 271, "CANNOT_DECOMPRESS")
        self.assert_exception(self.adapter.insert(sql, block[:-3], decompress="1"), 400, 271, "CANNOT_DECOMPRESS")
        zstd_block = native_block(b"abc", method=0x90, payload=b"abc")
        self.assert_exception(
            self.adapter.insert(sql, zstd_block, decompress="1"), 400, 89, "UNKNOWN_COMPRESSION_METHOD"
        )
        self.assertEqual(self.adapter.query(f"SELECT count() FROM {table}"), b"0\n")
        self.assert_alive()

    def test_checksum_layout_matches_the_engine(self):
        """The engine writes the same block framing into TinyLog files: decode one with the adapter's decoder."""
        sys.path.insert(0, str(HERE))
        from chdb_http_adapter import NativeBlockDecoder

        table = f"tl_{uuid.uuid4().hex[:6]}"
        self.adapter.query(f"CREATE TABLE {table} (a UInt64 CODEC(LZ4)) ENGINE = TinyLog")
        self.adapter.query(f"INSERT INTO {table} SELECT number FROM numbers(1000)")
        path = json.loads(
            self.adapter.query(f"SELECT data_paths FROM system.tables WHERE name = '{table}' FORMAT JSONEachRow")
        )
        column_file = Path(path["data_paths"][0]) / "a.bin"
        if not column_file.is_absolute():
            column_file = self.adapter.data_dir / column_file
        decoder = NativeBlockDecoder(verify_checksums=True)
        raw = decoder.decode(column_file.read_bytes())
        decoder.finish()
        self.assertEqual(raw, b"".join(struct.pack("<Q", i) for i in range(1000)))

    def test_text_inserts(self):
        table = self.table()
        self.adapter.insert(f"INSERT INTO {table} FORMAT CSV", b"1,a\n")
        self.adapter.insert(f"INSERT INTO {table} FORMAT JSONEachRow", b'{"a": 2, "s": "b"}\n')
        self.adapter.insert(f"INSERT INTO {table} FORMAT TabSeparated", b"3\tc\n")
        self.adapter.insert(f"INSERT INTO {table} VALUES", b"(4, 'd')")
        self.adapter.query(f"INSERT INTO {table} FORMAT CSV\n5,e\n")
        self.adapter.query(f"INSERT INTO {table} VALUES (6, 'f')")
        self.adapter.query(f"INSERT INTO {table} SELECT 7, 'g'")
        self.adapter.request(
            "POST",
            "/?" + urlencode({"query": f"INSERT INTO {table} FORMAT CSV"}),
            gzip.compress(b"8,h\n"),
            {"Content-Encoding": "gzip"},
        )
        got = self.rows(f"SELECT a, s FROM {table} ORDER BY a")
        self.assertEqual([(int(r["a"]), r["s"]) for r in got], list(zip(range(1, 9), "abcdefgh", strict=True)))

    def test_bad_insert_data(self):
        table = self.table()
        response = self.adapter.insert(f"INSERT INTO {table}(a, s) FORMAT RowBinary", b"\x01\x02")
        self.assertNotEqual(response[0], 200)
        self.assertIn("CANNOT_READ_ALL_DATA", response[2].decode())
        self.assertEqual(self.adapter.query(f"SELECT count() FROM {table}"), b"0\n")

    def test_rows_the_engine_refuses_after_parsing_fail_the_insert(self):
        """A CHECK constraint or too many partitions must fail the insert like clickhouse-server
        does (chdb's streaming insert reported success and stored nothing: silent loss)."""
        table = self.table("a UInt64, s String, CONSTRAINT no_five CHECK a != 5")
        sql = f"INSERT INTO {table}(a, s) FORMAT RowBinary"
        refused = self.adapter.insert(sql, native_block(row_binary([(1, "a"), (5, "b"), (7, "c")])), decompress="1")
        self.assert_exception(refused, 500, 469, "VIOLATED_CONSTRAINT")
        self.assertEqual(self.adapter.query(f"SELECT count() FROM {table}"), b"0\n")
        accepted = self.adapter.insert(sql, native_block(row_binary([(1, "a"), (7, "c")])), decompress="1")
        self.assertEqual(accepted[0], 200, accepted[2])
        self.assertEqual(self.adapter.query(f"SELECT count() FROM {table}"), b"2\n")

        partitioned = f"p_{uuid.uuid4().hex[:6]}"
        self.adapter.query(f"CREATE TABLE {partitioned} (a UInt64, s String) ENGINE = MergeTree PARTITION BY a ORDER BY a")
        too_many = self.adapter.insert(
            f"INSERT INTO {partitioned}(a, s) FORMAT RowBinary",
            row_binary([(i, "x") for i in range(5)]),
            max_partitions_per_insert_block="3",
        )
        self.assert_exception(too_many, 500, 252, "TOO_MANY_PARTS")
        self.assertEqual(self.adapter.query(f"SELECT count() FROM {partitioned}"), b"0\n")

    def test_insert_deduplication_token(self):
        table = self.table(settings="SETTINGS non_replicated_deduplication_window = 1000")
        sql = f"INSERT INTO {table}(a, s) FORMAT RowBinary"
        for rows, token in (([(1, "a")], "token-1"), ([(2, "b")], "token-1"), ([(2, "b")], "token-2")):
            status, _, body = self.adapter.insert(
                sql, native_block(row_binary(rows)), decompress="1", insert_deduplication_token=token
            )
            self.assertEqual(status, 200, body)
        # The second insert reused token-1: dropped although its data differs.
        self.assertEqual(self.rows(f"SELECT a, s FROM {table} ORDER BY a"), [{"a": 1, "s": "a"}, {"a": 2, "s": "b"}])
        self.assertEqual(self.adapter.query("SELECT getSetting('insert_deduplication_token')"), b"\n")

    # --- concurrency ---------------------------------------------------------------------

    def test_concurrent_writers_and_readers(self):
        table = self.table("writer UInt8, seq UInt32, db String")
        self.adapter.query("CREATE DATABASE IF NOT EXISTS concurrency_db")
        writers, batches, batch_rows = 4, 25, 200
        errors: list[str] = []
        done = threading.Event()

        def write(writer: int):
            conn = http.client.HTTPConnection("127.0.0.1", self.adapter.port, timeout=60)
            for batch in range(batches):
                raw = b"".join(
                    struct.pack("<BI", writer, batch * batch_rows + i) + b"\x07default" for i in range(batch_rows)
                )
                body = native_block(raw) if batch % 2 else raw
                params = {
                    "query": f"INSERT INTO {table}(writer, seq, db) FORMAT RowBinary",
                    "insert_deduplicate": "0",
                    **({"decompress": "1"} if batch % 2 else {}),
                }
                status, _, out = self.adapter.request(
                    "POST", "/?" + urlencode(params), iter(split(body, 1000)), conn=conn
                )
                if status != 200:
                    errors.append(f"writer {writer}: {status} {out!r}")
            conn.close()

        def read(reader: int):
            conn = http.client.HTTPConnection("127.0.0.1", self.adapter.port, timeout=60)
            last = 0
            while not done.is_set():
                database = "concurrency_db" if reader % 2 else "default"
                params = {
                    "database": database,
                    "max_execution_time": str(100 + reader),
                    "default_format": "JSONEachRow",
                }
                sql = (
                    f"SELECT count() AS c, uniqExact(writer, seq) AS u, currentDatabase() AS d, "
                    f"getSetting('max_execution_time') AS m FROM default.{table}"
                )
                status, _, out = self.adapter.request("POST", "/?" + urlencode(params), sql.encode(), conn=conn)
                row = json.loads(out) if status == 200 else {}
                if (
                    status != 200
                    or row["c"] != row["u"]
                    or row["c"] < last
                    or row["d"] != database
                    or row["m"] != 100 + reader
                ):
                    errors.append(f"reader {reader}: {status} {out!r}")
                    return
                last = row["c"]
            conn.close()

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        readers = [threading.Thread(target=read, args=(r,)) for r in range(8)]
        for thread in threads + readers:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        done.set()
        for thread in readers:
            thread.join(timeout=60)
        self.assertEqual(errors, [])
        got = self.rows(
            f"SELECT writer, count() AS c, uniqExact(seq) AS u FROM {table} GROUP BY writer ORDER BY writer"
        )
        expected = [{"writer": w, "c": batches * batch_rows, "u": batches * batch_rows} for w in range(writers)]
        self.assertEqual(got, expected)
        self.assertEqual(
            self.adapter.query("SELECT currentDatabase(), getSetting('max_execution_time')"), b"default\t0\n"
        )

    # --- other clients -------------------------------------------------------------------

    def test_clickhouse_connect(self):
        try:
            import clickhouse_connect
        except ImportError:
            self.skipTest("clickhouse-connect is not installed (requirements-test.txt)")
        table = self.table("a UInt64, s String")
        for compress in (False, "lz4", "gzip"):
            client = clickhouse_connect.get_client(host="127.0.0.1", port=self.adapter.port, compress=compress)
            try:
                self.assertTrue(client.server_version.startswith("26."))
                client.insert(table, [[1, "one"], [2, "two"]], column_names=["a", "s"])
                result = client.query(
                    f"SELECT a, s FROM {table} WHERE s = {{s:String}} ORDER BY a", parameters={"s": "two"}
                )
                self.assertEqual(result.result_rows[-1], (2, "two"))
                self.assertEqual(
                    client.command(f"SELECT count() FROM {table}"), 2 * (1 + [False, "lz4", "gzip"].index(compress))
                )
            finally:
                client.close()


class PersistenceTest(unittest.TestCase):
    """Data must survive a clean stop and a kill -9 (each test has its own adapter and directory)."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="chdb-adapter-persist-"))
        self.adapter = Adapter(self.tmp / "data", self.tmp / "adapter.log")

    def tearDown(self):
        if self.adapter.process and self.adapter.process.poll() is None:
            self.adapter.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_some_data(self):
        self.adapter.start()
        self.adapter.query("CREATE TABLE kept (a UInt64, s String) ENGINE = ReplacingMergeTree ORDER BY a")
        status, _, body = self.adapter.insert(
            "INSERT INTO kept(a, s) FORMAT RowBinary",
            native_block(row_binary([(i, str(i)) for i in range(100)])),
            decompress="1",
        )
        self.assertEqual(status, 200, body)

    def assert_data_kept(self):
        self.adapter.start()
        self.assertEqual(self.adapter.query("SELECT count(), sum(a) FROM kept"), b"100\t4950\n")

    def test_restart_keeps_data(self):
        self.write_some_data()
        self.assertEqual(self.adapter.stop(signal.SIGTERM), 0)
        self.assert_data_kept()
        self.assertEqual(self.adapter.stop(signal.SIGINT), 0)

    def test_kill_9_keeps_data(self):
        self.write_some_data()
        self.assertEqual(self.adapter.stop(signal.SIGKILL), -signal.SIGKILL)
        self.assert_data_kept()


if __name__ == "__main__":
    unittest.main()
