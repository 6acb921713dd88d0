"""Reads one research dataset file with an independent reader and prints its rows canonically.

Used by the API's export test (services/api/tests/export.rs) to check that what researchers'
tools read equals what ClickHouse holds, value by value:

    python read_dataset.py <reader> <file> '<{"column": "kind", ...}>'

reader: pyarrow or duckdb (Parquet), csv (gzip CSV, Python's csv module), ndjson (gzip NDJSON,
Python's json module). kind: text, int, bool, decimal, time, array. Prints one JSON object:
{"columns": [...], "types": {...} (Parquet only: the physical/logical type of each column),
"rows": [["canonical", ...], ...]}. Canonical values: null is \\N, a decimal its exact value
without trailing zeros, a time its UTC milliseconds, an array compact JSON, a bool true/false.
"""

import ast
import csv
import datetime
import decimal
import gzip
import io
import json
import sys

UTC = datetime.timezone.utc


def canonical(kind, value):
    if value is None:
        return "\\N"
    if kind == "decimal":
        if isinstance(value, float):
            raise SystemExit(f"a decimal was read as a float: {value!r}")
        text = format(decimal.Decimal(value).normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if kind == "time":
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime.datetime(1970, 1, 1, tzinfo=UTC)
        return str(delta // datetime.timedelta(milliseconds=1))
    if kind == "bool":
        if isinstance(value, str):
            value = {"true": True, "false": False}[value]
        return "true" if value else "false"
    if kind == "array":
        if isinstance(value, str):
            value = ast.literal_eval(value)
        return json.dumps(list(value), separators=(",", ":"))
    if kind == "int":
        return str(int(value))
    return str(value)


def read_pyarrow(path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    types = {field.name: str(field.type) for field in table.schema}
    return table.column_names, types, [tuple(row.values()) for row in table.to_pylist()]


def read_duckdb(path):
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    # The file alone: without this, the `dataset=…/date=…` directories become two more columns.
    cursor = connection.execute("SELECT * FROM read_parquet(?, hive_partitioning = false)", [path])
    columns = [description[0] for description in cursor.description]
    types = {description[0]: str(description[1]) for description in cursor.description}
    return columns, types, cursor.fetchall()


def read_csv(path):
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        columns = next(reader, [])
        rows = [tuple(None if value == "\\N" else value for value in row) for row in reader]
    return columns, {}, rows


def read_ndjson(path):
    rows = []
    columns = None
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if columns is None:
                columns = list(record)
            rows.append(tuple(record[column] for column in columns))
    return columns or [], {}, rows


READERS = {"pyarrow": read_pyarrow, "duckdb": read_duckdb, "csv": read_csv, "ndjson": read_ndjson}


def main():
    reader, path, kinds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    columns, types, rows = READERS[reader](path)
    out = {
        "columns": columns,
        "types": types,
        "rows": [
            [canonical(kinds[column], value) for column, value in zip(columns, row)] for row in rows
        ],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
