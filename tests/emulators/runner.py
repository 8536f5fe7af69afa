"""Run xform's emitted warehouse statements on a local emulator and print what they left.

The Rust tests (tests/warehouse_emulators.rs) start the emulator server, then pipe one JSON
document to this script on stdin:

    {"warehouse": "snowflake" | "bigquery", "port": 8765, "project": "p",
     "database": "analytics", "schema": "shop",
     "steps": [{"name": "seed.shop.raw_orders", "statements": ["create ...", "insert ..."]}],
     "queries": {"model.shop.orders": "select * from ..."}}

Each step's statements run in order on one connection; a step stops at its first failed
statement. Every query then runs, and one JSON document is printed:

    {"steps": [{"name": ..., "error": null | "message", "statement": index}],
     "queries": {"name": {"columns": [...], "rows": [[cell, ...]], "error": null}}}

Cells are normalised so that two warehouses can be compared with DuckDB: null stays null,
booleans are "true"/"false", numbers are printed with up to 6 decimals and no trailing zeros,
dates and times in ISO form with a space before the time.
"""

import datetime
import decimal
import json
import sys
import urllib.error
import urllib.request


def number(value):
    text = f"{decimal.Decimal(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def cell(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return number(value)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


class Snowflake:
    def __init__(self, doc):
        import snowflake.connector

        self.conn = snowflake.connector.connect(
            user="xform",
            password="emulator",
            account="fakesnow",
            host="127.0.0.1",
            port=doc["port"],
            protocol="http",
            # The session's database and schema, as the profile sets them.
            database=doc.get("database"),
            schema=doc.get("schema"),
            # The connector retries a 500 answer for minutes; a test fails fast instead.
            login_timeout=30,
            network_timeout=30,
            socket_timeout=30,
        )

    def run(self, sql):
        cur = self.conn.cursor()
        cur.execute(sql)
        if cur.description is None:
            return [], []
        columns = [d[0].lower() for d in cur.description]
        return columns, [[cell(v) for v in row] for row in cur.fetchall()]


class BigQuery:
    """The REST API of BigQuery (jobs.query, then getQueryResults pages)."""

    TYPES_NUMERIC = {"INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC"}

    def __init__(self, doc):
        self.base = f"http://127.0.0.1:{doc['port']}/bigquery/v2/projects/{doc['project']}"

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise RuntimeError(detail) from None

    def run(self, sql):
        result = self.call("POST", "/queries", {"query": sql, "useLegacySql": False})
        if result.get("errors"):
            raise RuntimeError(result["errors"][0].get("message"))
        fields = (result.get("schema") or {}).get("fields") or []
        rows = list(result.get("rows") or [])
        job = (result.get("jobReference") or {}).get("jobId")
        token = result.get("pageToken")
        while token:
            page = self.call("GET", f"/queries/{job}?pageToken={token}")
            rows.extend(page.get("rows") or [])
            token = page.get("pageToken")
        columns = [f["name"].lower() for f in fields]
        return columns, [
            [self.value(f, c.get("v")) for f, c in zip(fields, row["f"])] for row in rows
        ]

    def value(self, field, v):
        if v is None:
            return None
        kind = field.get("type", "").upper()
        if kind in self.TYPES_NUMERIC:
            return number(v)
        if kind in ("BOOL", "BOOLEAN"):
            return "true" if str(v).lower() == "true" else "false"
        if kind == "TIMESTAMP":
            try:
                # Seconds since the epoch ("1.7041032E9"), or microseconds as an integer.
                given = decimal.Decimal(v)
                micros = given if "." not in v and "E" not in v.upper() else given * 1_000_000
                moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(
                    microseconds=int(micros)
                )
                return moment.isoformat(sep=" ")
            except decimal.InvalidOperation:
                return str(v).replace("T", " ").removesuffix(" UTC").removesuffix("Z")
        if kind == "DATETIME":
            return str(v).replace("T", " ")
        return str(v)


def main():
    doc = json.load(sys.stdin)
    warehouse = {"snowflake": Snowflake, "bigquery": BigQuery}[doc["warehouse"]](doc)
    out = {"steps": [], "queries": {}}
    for step in doc.get("steps", []):
        record = {"name": step["name"], "error": None, "statement": None}
        for index, sql in enumerate(step["statements"]):
            try:
                warehouse.run(sql)
            except Exception as e:  # every driver error is reported, not raised
                record["error"] = str(e)
                record["statement"] = index
                break
        out["steps"].append(record)
    for name, sql in sorted(doc.get("queries", {}).items()):
        try:
            columns, rows = warehouse.run(sql)
            out["queries"][name] = {"columns": columns, "rows": rows, "error": None}
        except Exception as e:
            out["queries"][name] = {"columns": [], "rows": [], "error": str(e)}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
