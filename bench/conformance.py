#!/usr/bin/env python3
"""Build public dbt projects with dbt-core + dbt-duckdb and with xform, and compare the results.

    python bench/conformance.py --xform PATH --project NAME=DIR [--project NAME=DIR ...]
        [--package NAME=DIR ...] [--vars YAML] --out DIR

Run it with the Python of a venv that has dbt-core 1.11, dbt-duckdb 1.11 and pyyaml (the `dbt`
beside that Python is used unless `--dbt` names another; its `duckdb` module reads the
databases). See docs/conformance.md.

For each project:
1. Copies the project into two fresh work folders, `<work>/<NAME>/dbt` and `<work>/<NAME>/xform`
   (`--work`, default `<out>/work`). Hub and git packages cannot be downloaded, so every
   `packages.yml` / `dependencies.yml` entry is rewritten to a `local:` path: hub and git
   entries to a copy of the checkout given by `--package NAME=DIR`, `local:` entries to a copy of
   the folder they name. The copies sit in `<side>/packages/<package>` and their own packages
   files are rewritten the same way. Then `dbt deps` runs in the dbt copy and `xform deps` in
   the xform copy (if `xform deps` fails, the packages are copied into `dbt_packages/` instead,
   and the report says so).
2. Writes `profiles.yml` into each copy (type duckdb, path conformance.duckdb, schema main,
   threads 1) and runs the project's steps (from bench/conformance_projects.yml: what its CI
   runs) with dbt, then the same commands with xform. Each command has a time limit
   (`--timeout`, 900 s). `target/run_results.json` is saved after each command.
3. Compares every relation of the two DuckDB files (opened read-only afterwards): schema, name,
   kind (table / view), column names and types, and the multiset of rows (sorted by their
   string form; floats to 12 significant digits), and the status of every node in the
   run_results (by unique_id; the last command that ran a node wins), and the exit codes.
4. Writes `<out>/<NAME>.json` and prints a summary with the first differences.

Exit code: 0 when every project conforms, 1 when one differs, 2 on a usage error.
"""

import argparse
import collections
import datetime as dt
import decimal
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("conformance.py needs pyyaml: run it with the venv's python (see docs/conformance.md)")

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "conformance_projects.yml"
DB_FILE = "conformance.duckdb"
PACKAGE_FILES = ("packages.yml", "dependencies.yml")
SKIP_NAMES = {".git", "target", "dbt_packages", "dbt_modules", "logs", ".user.yml", "__pycache__"}
SKIP_SUFFIXES = (".duckdb", ".duckdb.wal")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SAMPLE = 5


# --------------------------------------------------------------------------------------------
# small helpers


def now_iso():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def project_name_of(folder):
    """The `name:` of a dbt project folder, or None."""
    p = Path(folder) / "dbt_project.yml"
    if not p.is_file():
        return None
    try:
        doc = load_yaml(p) or {}
    except yaml.YAMLError:
        return None
    name = doc.get("name")
    return str(name) if name else None


def copy_tree(src, dst, exclude=()):
    """Copy a project or package folder without build output; `exclude` holds absolute paths."""
    exclude = {Path(e).resolve() for e in exclude}

    def ignore(folder, names):
        out = []
        for n in names:
            if n in SKIP_NAMES or n.endswith(SKIP_SUFFIXES):
                out.append(n)
            elif exclude and (Path(folder) / n).resolve() in exclude:
                out.append(n)
        return out

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)


def shorten(text, limit=600):
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_pairs(values, flag):
    out = {}
    for v in values or []:
        if "=" not in v:
            raise SystemExit(f"usage: {flag} expects NAME=DIR, got {v!r}")
        k, d = v.split("=", 1)
        out[k.strip()] = Path(d).expanduser().resolve()
    return out


# --------------------------------------------------------------------------------------------
# packages


class PackageError(Exception):
    pass


class Packages:
    """Turns packages.yml entries into local copies of checkouts, for one side's work folder."""

    def __init__(self, given, dest, project_dir):
        self.given = given  # {key: Path} from --package
        self.by_project_name = {}
        for key, d in given.items():
            n = project_name_of(d)
            if n:
                self.by_project_name.setdefault(n, d)
        self.dest = dest  # <side>/packages
        self.project_dir = project_dir  # original project folder (left out of package copies)
        self.copies = {}  # package name -> copied folder
        self.origins = {}  # package name -> original folder
        self.notes = []

    def _lookup(self, candidates, what):
        for c in candidates:
            if c in self.given:
                return self.given[c]
        for c in candidates:
            if c in self.by_project_name:
                return self.by_project_name[c]
        raise PackageError(
            f"{what}: no local checkout; pass --package {candidates[0]}=DIR "
            f"(tried {', '.join(dict.fromkeys(candidates))})"
        )

    @staticmethod
    def _names_for(base):
        base = base.strip("/")
        out = [base, base.replace("-", "_")]
        for prefix in ("dbt-", "dbt_"):
            if base.startswith(prefix):
                rest = base[len(prefix):]
                out += [rest, rest.replace("-", "_")]
        return list(dict.fromkeys(out))

    def resolve(self, entry, base_dir):
        """The original folder an entry stands for (base_dir: the folder of its packages file)."""
        if not isinstance(entry, dict):
            raise PackageError(f"unreadable package entry {entry!r}")
        if "local" in entry:
            return (Path(base_dir) / str(entry["local"])).resolve(), f"local: {entry['local']}"
        if "package" in entry:
            hub = str(entry["package"])
            short = hub.split("/")[-1]
            return self._lookup([short, hub] + self._names_for(short), f"package: {hub}"), f"package: {hub}"
        for key in ("git", "private"):
            if key in entry:
                url = str(entry[key])
                base = re.sub(r"\.git$", "", url.rstrip("/")).split("/")[-1].split(":")[-1]
                owner_repo = "/".join(re.sub(r"\.git$", "", url.rstrip("/")).replace(":", "/").split("/")[-2:])
                folder = self._lookup(self._names_for(base) + [owner_repo, url], f"{key}: {url}")
                sub = entry.get("subdirectory")
                return (folder / sub if sub else folder), f"{key}: {url}"
        if "tarball" in entry:
            name = str(entry.get("name") or "")
            return self._lookup(self._names_for(name) or [name], f"tarball: {entry['tarball']}"), f"tarball: {entry['tarball']}"
        raise PackageError(f"unknown package entry {entry!r}")

    def install(self, origin, label):
        """Copy one package (and, recursively, its packages) under dest; returns the copy."""
        if not (origin / "dbt_project.yml").is_file():
            raise PackageError(f"{label}: {origin} is not a dbt project (no dbt_project.yml)")
        name = project_name_of(origin) or origin.name
        if name in self.copies:
            if self.origins[name] != origin:
                self.notes.append(f"package {name}: {origin} ignored, {self.origins[name]} already used")
            return self.copies[name]
        copy = self.dest / name
        self.copies[name] = copy
        self.origins[name] = origin
        exclude = [self.project_dir] if self._inside(self.project_dir, origin) else []
        copy_tree(origin, copy, exclude=exclude)
        self.rewrite(copy, origin)
        return copy

    @staticmethod
    def _inside(path, folder):
        try:
            Path(path).resolve().relative_to(Path(folder).resolve())
            return True
        except ValueError:
            return False

    def rewrite(self, copy, origin):
        """Rewrite the packages files of a copied folder to `local:` copies; drop its lock file."""
        changed = []
        for fname in PACKAGE_FILES:
            f = copy / fname
            if not f.is_file():
                continue
            doc = load_yaml(f) or {}
            entries = doc.get("packages") or []
            new = []
            for e in entries:
                folder, label = self.resolve(e, origin)
                local = self.install(folder, label)
                new.append({"local": str(local)})
                changed.append(f"{label} -> {self._display(folder)}")
            if "packages" in doc:
                doc["packages"] = new
                f.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        lock = copy / "package-lock.yml"
        if lock.exists():
            lock.unlink()
        return changed

    @staticmethod
    def _display(p):
        return str(p)


# --------------------------------------------------------------------------------------------
# running commands


def run_cmd(argv, cwd, env, timeout, log_path):
    start = time.monotonic()
    timed_out = False
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        log.write("$ " + " ".join(_quote(a) for a in argv) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log.write(f"could not start: {e}\n")
            return {"argv": argv, "exit_code": None, "seconds": 0.0, "timed_out": False,
                    "log": str(log_path), "start_error": str(e)}
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            code = proc.returncode
            log.write(f"\n[conformance] timed out after {timeout} s\n")
    return {"argv": argv, "exit_code": code, "seconds": round(time.monotonic() - start, 2),
            "timed_out": timed_out, "log": str(log_path)}


def _quote(a):
    return a if re.fullmatch(r"[\w@%+=:,./-]+", a) else "'" + a.replace("'", "'\\''") + "'"


ERROR_LINE = re.compile(r"(?i)(\berror\b|\bpanicked\b|\bexception\b|traceback|unrecognized subcommand)")
NOT_ERROR = re.compile(r"(?i)(ERROR=\d|\b0 errors?\b|error_if|warn_if|\bNO-OP=|\bSTART\b.*\[RUN\]"
                       r"|\d+ of \d+ ERROR|Completed with \d+ error)")
# dbt's detailed error blocks and xform's diagnostics come first; any error-ish line after that
BEST_LINE = re.compile(r"(Compilation|Runtime|Database|Parsing|Dependency|Deps|Env var) Error\b"
                       r"|^\s*(\d\d:\d\d:\d\d\s+)?Failure in |^error(\[[^\]]*\])?:|^\s*× ")
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d\s+")


def first_error(log_path, context=3):
    """The first error of a command's output: dbt's "Failure in … / … Error" block, or xform's
    first diagnostic (`xform::code` then `× message` continued on `│` lines), else the first
    line that says error."""
    try:
        lines = [TIMESTAMP.sub("", ANSI.sub("", l.rstrip()))
                 for l in open(log_path, encoding="utf-8", errors="replace")]
    except OSError:
        return None
    lines = lines[1:]  # the command line
    for pattern, skip in ((BEST_LINE, None), (ERROR_LINE, NOT_ERROR)):
        for i, line in enumerate(lines):
            if not pattern.search(line) or (skip and skip.search(line)):
                continue
            if line.lstrip().startswith("× "):
                code = next((l.strip() for l in reversed(lines[max(0, i - 3):i])
                             if re.fullmatch(r"\s*[\w]+::[\w:]+\s*", l)), None)
                msg = [line.strip()[2:]]
                for l in lines[i + 1:i + 12]:
                    if not l.strip().startswith("│"):
                        break
                    msg.append(l.strip()[1:].strip())
                text = " ".join(m for m in msg if m)
                return shorten((f"{code}: " if code else "") + text, 500)
            block = [l.strip() for l in lines[i:i + 1 + context] if l.strip()]
            return shorten("\n".join(block), 500)
    return None


def tool_version(argv, env):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = ANSI.sub("", out.stdout + out.stderr)
    m = re.search(r"installed:\s*(\S+)", text)
    plugins = re.findall(r"-\s*(\w+):\s*(\S+)", text.split("Plugins:", 1)[1]) if "Plugins:" in text else []
    if m:
        return "dbt-core " + m.group(1) + "".join(f", dbt-{p} {v}" for p, v in plugins)
    return text.strip().splitlines()[0] if text.strip() else f"exit {out.returncode}"


# --------------------------------------------------------------------------------------------
# one side: copy, deps, steps


def write_profile(folder, profile, target, threads):
    doc = {profile: {"target": target, "outputs": {target: {
        "type": "duckdb", "path": DB_FILE, "schema": "main", "threads": threads}}}}
    (folder / "profiles.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def side_env(folder):
    env = dict(os.environ)
    for k in ("DBT_TARGET_PATH", "DBT_PROJECT_DIR", "DBT_PROFILE", "DBT_TARGET"):
        env.pop(k, None)
    env.update({
        "DBT_PROFILES_DIR": str(folder),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        "DBT_VERSION_CHECK": "false",
        "DBT_USE_COLORS": "false",
        "DBT_PARTIAL_PARSE": "false",
        "NO_COLOR": "1",
        "TZ": "UTC",
    })
    return env


def prepare(side, project_dir, work, packages_given):
    """Fresh copy of the project with its packages files rewritten; returns (folder, info)."""
    root = work / side
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    folder = root / "project"
    copy_tree(project_dir, folder)
    pk = Packages(packages_given, root / "packages", project_dir)
    info = {"rewritten": [], "notes": pk.notes, "error": None}
    try:
        info["rewritten"] = pk.rewrite(folder, project_dir)
    except PackageError as e:
        info["error"] = str(e)
    info["packages"] = {n: str(o) for n, o in pk.origins.items()}
    info["copies"] = {n: str(c) for n, c in pk.copies.items()}
    return folder, info


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_side(side, exe, project_dir, work, packages_given, spec, args, logs):
    started = time.monotonic()
    folder, pkinfo = prepare(side, project_dir, work, packages_given)
    rec = {"side": side, "executable": str(exe), "folder": str(folder), "packages": pkinfo,
           "started_at": now_iso(),
           "steps": [], "nodes": {}, "manifest_counts": None}
    env = side_env(folder)
    profile = (load_yaml(folder / "dbt_project.yml") or {}).get("profile") or project_name_of(folder)
    write_profile(folder, str(profile), spec["target"], args.threads)
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir(parents=True)

    # deps
    if pkinfo["error"]:
        rec["steps"].append({"argv": [str(exe), "deps"], "exit_code": None, "seconds": 0.0,
                             "first_error": "conformance: " + pkinfo["error"], "skipped": True})
    elif any((folder / f).is_file() for f in PACKAGE_FILES):
        r = run_cmd([str(exe), "deps"], folder, env, args.timeout, logs / "00-deps.log")
        r["first_error"] = first_error(r["log"]) if r["exit_code"] != 0 else None
        rec["steps"].append(r)
        if r["exit_code"] != 0 and side == "xform":
            # `xform deps` unknown or failing: install the copies the way dbt's local packages are
            why = ("not a known command" if re.search(
                r"(?i)unrecognized subcommand|unexpected argument|invalid subcommand|unknown command",
                open(r["log"], encoding="utf-8", errors="replace").read()) else f"exit {r['exit_code']}")
            dest = folder / "dbt_packages"
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir()
            for name, copy in pkinfo["copies"].items():
                shutil.copytree(copy, dest / name, symlinks=True)
            rec["deps_fallback"] = (f"xform deps failed ({why}): the packages were copied into "
                                    f"dbt_packages/ instead ({', '.join(sorted(pkinfo['copies']))})")
    installed = folder / "dbt_packages"
    rec["installed_packages"] = sorted(p.name for p in installed.iterdir()) if installed.is_dir() else []

    # steps
    vars_arg = args.vars if args.vars is not None else spec.get("vars")
    for i, step in enumerate(spec["steps"], start=1):
        argv = [str(exe), *[str(a) for a in step]]
        if vars_arg:
            argv += ["--vars", vars_arg]
        results = folder / "target" / "run_results.json"
        if results.exists():
            results.unlink()
        r = run_cmd(argv, folder, env, args.timeout, logs / f"{i:02d}-{step[0]}.log")
        r["first_error"] = first_error(r["log"]) if r["exit_code"] != 0 else None
        rr = read_json(results)
        if rr is not None:
            shutil.copy(results, logs / f"{i:02d}-{step[0]}.run_results.json")
            counts = collections.Counter()
            for res in rr.get("results", []):
                uid = res.get("unique_id")
                if not uid:
                    continue
                counts[str(res.get("status"))] += 1
                rec["nodes"][uid] = {"status": str(res.get("status")), "step": i,
                                     "message": shorten(str(res.get("message") or ""), 300),
                                     "failures": res.get("failures")}
            r["statuses"] = dict(sorted(counts.items()))
        else:
            r["statuses"] = None
        rec["steps"].append(r)

    manifest = read_json(folder / "target" / "manifest.json")
    if manifest:
        c = collections.Counter(n.get("resource_type") for n in manifest.get("nodes", {}).values())
        c["source"] = len(manifest.get("sources", {}))
        c["unit_test"] += len(manifest.get("unit_tests", {}))
        rec["manifest_counts"] = {k: v for k, v in sorted(c.items()) if v}
    rec["seconds"] = round(time.monotonic() - started, 1)
    rec["database"] = str(folder / DB_FILE)
    rec["summary"] = node_summary(rec["nodes"])
    rec["not_ok"] = [{"unique_id": u, "status": v["status"], "message": v["message"]}
                     for u, v in sorted(rec["nodes"].items())
                     if v["status"] not in ("success", "pass", "no-op")]
    return rec


def is_test(uid):
    return uid.startswith(("test.", "unit_test."))


def node_summary(nodes):
    tests = collections.Counter(v["status"] for k, v in nodes.items() if is_test(k))
    others = collections.Counter(v["status"] for k, v in nodes.items() if not is_test(k))
    return {"tests": dict(sorted(tests.items())), "nodes": dict(sorted(others.items()))}


# --------------------------------------------------------------------------------------------
# reading a database


CLOCK = {"window": None}  # (start, end) naive UTC datetimes; timestamps inside read "<clock>"


def norm(v):
    """A value in a form that compares across two runs: floats to 12 significant digits, and
    timestamps near the time of the runs (a `current_timestamp` in a view or table) masked."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, dt.datetime) and CLOCK["window"]:
        u = v.astimezone(dt.timezone.utc).replace(tzinfo=None) if v.tzinfo else v
        if CLOCK["window"][0] <= u <= CLOCK["window"][1]:
            return "<clock>"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return float(f"{v:.12g}")
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return f"interval {v.days}d {v.seconds}s {v.microseconds}us"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "0x" + bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    return str(v)


def row_key(row):
    return json.dumps([norm(v) for v in row], ensure_ascii=False, default=str)


def qi(name):
    return '"' + name.replace('"', '""') + '"'


def read_catalog(path):
    """{(schema, name): {kind, columns: [(name, type)]}} of a DuckDB file, or an error string."""
    import duckdb

    if not Path(path).is_file():
        return None, "no database file"
    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to open is reported
        return None, f"cannot open: {e}"
    rels = {}
    q = """
        select schema_name, table_name, 'table' from duckdb_tables()
         where database_name = current_database() and not temporary
        union all
        select schema_name, view_name, 'view' from duckdb_views()
         where database_name = current_database() and not internal and not temporary
    """
    for schema, name, kind in con.execute(q).fetchall():
        rels[(schema, name)] = {"kind": kind, "columns": []}
    cols = con.execute("""
        select schema_name, table_name, column_name, data_type from duckdb_columns()
         where database_name = current_database() and not internal
         order by schema_name, table_name, column_index""").fetchall()
    for schema, name, col, typ in cols:
        if (schema, name) in rels:
            rels[(schema, name)]["columns"].append((col, typ))
    return (con, rels), None


def fetch_rows(con, schema, name, columns):
    sql = f"select {', '.join(qi(c) for c in columns) or '*'} from {qi(schema)}.{qi(name)}"
    try:
        rows = con.execute(sql).fetchall()
    except Exception as e:  # noqa: BLE001
        return None, shorten(str(e), 300)
    return collections.Counter(row_key(r) for r in rows), None


def compare_databases(dbt_db, xf_db):
    out = {"equal": [], "differing": [], "only_dbt": [], "only_xform": [], "errors": {}}
    a, err_a = read_catalog(dbt_db)
    b, err_b = read_catalog(xf_db)
    if err_a:
        out["errors"]["dbt"] = err_a
    if err_b:
        out["errors"]["xform"] = err_b
    rels_a = a[1] if a else {}
    rels_b = b[1] if b else {}
    out["only_dbt"] = [f"{s}.{n}" for s, n in sorted(set(rels_a) - set(rels_b))]
    out["only_xform"] = [f"{s}.{n}" for s, n in sorted(set(rels_b) - set(rels_a))]
    for key in sorted(set(rels_a) & set(rels_b)):
        ra, rb = rels_a[key], rels_b[key]
        rel = f"{key[0]}.{key[1]}"
        diffs = []
        if ra["kind"] != rb["kind"]:
            diffs.append({"what": "kind", "dbt": ra["kind"], "xform": rb["kind"]})
        names_a = [c for c, _ in ra["columns"]]
        names_b = [c for c, _ in rb["columns"]]
        if names_a != names_b:
            if sorted(names_a) == sorted(names_b):
                diffs.append({"what": "column order", "dbt": names_a, "xform": names_b})
            else:
                diffs.append({"what": "columns",
                              "only_dbt": [c for c in names_a if c not in names_b],
                              "only_xform": [c for c in names_b if c not in names_a]})
        types_b = dict(rb["columns"])
        type_diffs = [{"column": c, "dbt": t, "xform": types_b[c]}
                      for c, t in ra["columns"] if c in types_b and types_b[c] != t]
        if type_diffs:
            diffs.append({"what": "column types", "columns": type_diffs})
        common = [c for c in names_a if c in types_b]
        rows_a, ea = fetch_rows(a[0], key[0], key[1], common)
        rows_b, eb = fetch_rows(b[0], key[0], key[1], common)
        counts = {"dbt": None if rows_a is None else sum(rows_a.values()),
                  "xform": None if rows_b is None else sum(rows_b.values())}
        if ea or eb:
            if not (ea and eb):
                diffs.append({"what": "select failed", "dbt": ea, "xform": eb})
        elif rows_a != rows_b:
            only_a = sorted((rows_a - rows_b).elements())
            only_b = sorted((rows_b - rows_a).elements())
            diffs.append({"what": "rows", "row_count": counts,
                          "only_dbt_count": len(only_a), "only_xform_count": len(only_b),
                          "only_dbt_sample": only_a[:SAMPLE], "only_xform_sample": only_b[:SAMPLE],
                          "columns_compared": common})
        if diffs:
            out["differing"].append({"relation": rel, "kind": ra["kind"], "rows": counts, "diffs": diffs})
        else:
            out["equal"].append(rel)
    for side in (a, b):
        if side:
            side[0].close()
    out["counts"] = {"dbt": len(rels_a), "xform": len(rels_b)}
    return out


def compare_nodes(na, nb):
    out = {"tests_equal": 0, "tests_differing": [], "nodes_equal": 0, "nodes_differing": [],
           "only_dbt": [], "only_xform": []}
    for uid in sorted(set(na) | set(nb)):
        if uid not in nb:
            out["only_dbt"].append({"unique_id": uid, "dbt": na[uid]["status"]})
        elif uid not in na:
            out["only_xform"].append({"unique_id": uid, "xform": nb[uid]["status"]})
        elif na[uid]["status"] == nb[uid]["status"]:
            out["tests_equal" if is_test(uid) else "nodes_equal"] += 1
        else:
            d = {"unique_id": uid, "dbt": na[uid]["status"], "xform": nb[uid]["status"],
                 "dbt_message": na[uid]["message"], "xform_message": nb[uid]["message"]}
            out["tests_differing" if is_test(uid) else "nodes_differing"].append(d)
    return out


# --------------------------------------------------------------------------------------------
# one project


def conform(name, project_dir, spec, args, dbt_exe, xform_exe):
    out_dir = args.out
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    report = {"project": name, "project_dir": str(project_dir), "date": now_iso(),
              "steps": spec["steps"], "target": spec["target"],
              "vars": args.vars if args.vars is not None else spec.get("vars"),
              "ci": spec.get("ci"), "packages_given": {k: str(v) for k, v in args.packages.items()}}

    dbt_saved = work / "dbt-side.json"
    if args.reuse_dbt and dbt_saved.is_file() and (work / "dbt" / "project" / DB_FILE).is_file():
        report["dbt"] = read_json(dbt_saved)
        report["dbt"]["reused"] = True
        print(f"[{name}] dbt: reusing {dbt_saved}", flush=True)
    else:
        print(f"[{name}] dbt: {' ; '.join(' '.join(map(str, s)) for s in spec['steps'])}", flush=True)
        report["dbt"] = run_side("dbt", dbt_exe, project_dir, work, args.packages, spec, args,
                                 out_dir / name / "dbt")
        dbt_saved.write_text(json.dumps(report["dbt"], indent=1), encoding="utf-8")
    report["dbt"]["version"] = args.dbt_version

    if xform_exe is None or not Path(xform_exe).is_file():
        report["xform"] = {"side": "xform", "executable": str(xform_exe), "missing": True,
                           "steps": [], "nodes": {}, "summary": node_summary({})}
        print(f"[{name}] xform: binary not found at {xform_exe}", flush=True)
    else:
        print(f"[{name}] xform: same steps with {xform_exe}", flush=True)
        report["xform"] = run_side("xform", Path(xform_exe), project_dir, work, args.packages,
                                   spec, args, out_dir / name / "xform")
        report["xform"]["version"] = tool_version([str(xform_exe), "--version"], os.environ)

    if report["xform"].get("missing"):
        report["relations"] = None
        report["nodes"] = None
        report["exit_codes_equal"] = None
        report["conforms"] = False
    else:
        set_clock_window(report, args.clock_window)
        report["relations"] = compare_databases(report["dbt"]["database"], report["xform"]["database"])
        report["nodes"] = compare_nodes(report["dbt"]["nodes"], report["xform"]["nodes"])
        ea = [s.get("exit_code") for s in report["dbt"]["steps"]]
        eb = [s.get("exit_code") for s in report["xform"]["steps"]]
        report["exit_codes"] = {"dbt": ea, "xform": eb}
        report["exit_codes_equal"] = ea == eb
        rel, nd = report["relations"], report["nodes"]
        report["conforms"] = bool(
            report["exit_codes_equal"] and not rel["differing"] and not rel["only_dbt"]
            and not rel["only_xform"] and not rel["errors"] and not nd["tests_differing"]
            and not nd["nodes_differing"] and not nd["only_dbt"] and not nd["only_xform"])
    # the dbt side's own database, for the record even without xform
    report["dbt"]["relations"] = count_relations(report["dbt"]["database"])

    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    print_summary(report, path)
    return report


def set_clock_window(report, hours):
    """Timestamps from (earliest start - hours) to (now + hours) are masked when comparing."""
    if not hours:
        CLOCK["window"] = None
        report["clock_window"] = None
        return
    starts = []
    for side in ("dbt", "xform"):
        try:
            starts.append(dt.datetime.fromisoformat(report[side]["started_at"]))
        except (KeyError, TypeError, ValueError):
            pass
    now = dt.datetime.now(dt.timezone.utc)
    first = min(starts + [now])
    lo = (first - dt.timedelta(hours=hours)).replace(tzinfo=None)
    hi = (now + dt.timedelta(hours=hours)).replace(tzinfo=None)
    CLOCK["window"] = (lo, hi)
    report["clock_window"] = [lo.isoformat(), hi.isoformat()]


def count_relations(db):
    got, err = read_catalog(db)
    if err:
        return {"error": err}
    con, rels = got
    con.close()
    c = collections.Counter(v["kind"] for v in rels.values())
    return {"total": len(rels), "tables": c.get("table", 0), "views": c.get("view", 0)}


def fmt_counts(d):
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def fmt_side(rec):
    if rec.get("missing"):
        return "binary not found"
    codes = " ".join(str(s.get("exit_code")) for s in rec["steps"])
    s = rec["summary"]
    line = f"exit codes [{codes}]; nodes: {fmt_counts(s['nodes'])}; tests: {fmt_counts(s['tests'])}"
    if rec.get("deps_fallback"):
        line += "; deps fallback"
    return line


def print_summary(r, path):
    name = r["project"]
    print(f"\n== {name} ==")
    print(f"dbt   ({r['dbt'].get('version')}): {fmt_side(r['dbt'])}")
    rel = r["dbt"].get("relations") or {}
    if "total" in rel:
        print(f"      relations: {rel['total']} ({rel['tables']} tables, {rel['views']} views)")
    print(f"xform ({r['xform'].get('version', '-')}): {fmt_side(r['xform'])}")
    for side in ("dbt", "xform"):
        for s in r[side].get("steps", []):
            if s.get("first_error"):
                cmd = " ".join(Path(str(s["argv"][0])).name if i == 0 else str(a)
                               for i, a in enumerate(s["argv"]))
                print(f"  first error, {side} `{cmd}` (exit {s.get('exit_code')}):")
                print("    " + s["first_error"].replace("\n", "\n    "))
                break
    if r["xform"].get("deps_fallback"):
        print("  " + r["xform"]["deps_fallback"])
    bad = r["dbt"].get("not_ok") or []
    if bad:
        print(f"  dbt's own errors, failures and skips ({len(bad)}; expected differences):")
        for b in bad[:args_detail * 6]:
            msg = re.sub(r"\s+", " ", b["message"])
            msg = re.sub(r"^(Runtime|Compilation) Error in \S+ \S+ \([^)]*\) ", "", msg)
            print(f"    {b['status']:8} {b['unique_id']}" + (f": {shorten(msg, 110)}" if msg else ""))
        if len(bad) > args_detail * 6:
            print(f"    … {len(bad) - args_detail * 6} more in the JSON")
    if r.get("relations"):
        rl = r["relations"]
        print(f"relations: {len(rl['equal'])} equal, {len(rl['differing'])} differing, "
              f"{len(rl['only_dbt'])} only in dbt, {len(rl['only_xform'])} only in xform")
        for side, err in rl["errors"].items():
            print(f"  {side} database: {err}")
        for d in rl["differing"][:args_detail]:
            print(f"  {d['relation']} ({d['kind']}, rows dbt {d['rows']['dbt']} / xform {d['rows']['xform']}):")
            for x in d["diffs"]:
                print("    " + describe(x))
        if rl["only_dbt"]:
            print("  only in dbt: " + ", ".join(rl["only_dbt"][:10]) + (" …" if len(rl["only_dbt"]) > 10 else ""))
        if rl["only_xform"]:
            print("  only in xform: " + ", ".join(rl["only_xform"][:10]) + (" …" if len(rl["only_xform"]) > 10 else ""))
        nd = r["nodes"]
        print(f"tests: {nd['tests_equal']} equal, {len(nd['tests_differing'])} differing; other nodes: "
              f"{nd['nodes_equal']} equal, {len(nd['nodes_differing'])} differing; "
              f"{len(nd['only_dbt'])} ran only in dbt, {len(nd['only_xform'])} only in xform")
        differing = nd["nodes_differing"] + nd["tests_differing"]
        differing.sort(key=lambda d: d["xform"] == "skipped")  # causes before their skips
        for d in differing[:args_detail]:
            msg = shorten(re.sub(r"\s+", " ", d["xform_message"] or ""), 200)
            print(f"  {d['unique_id']}: dbt {d['dbt']}, xform {d['xform']}" + (f" — {msg}" if msg else ""))
        print(f"exit codes: dbt {r['exit_codes']['dbt']}, xform {r['exit_codes']['xform']}")
    print(f"conforms: {r['conforms']}   ({path})")


args_detail = 5


def describe(x):
    w = x["what"]
    if w == "kind":
        return f"kind: dbt {x['dbt']}, xform {x['xform']}"
    if w == "column order":
        return f"column order: dbt {x['dbt']}, xform {x['xform']}"
    if w == "columns":
        return f"columns only in dbt {x['only_dbt']}, only in xform {x['only_xform']}"
    if w == "column types":
        return "column types: " + ", ".join(f"{c['column']} dbt {c['dbt']} / xform {c['xform']}"
                                             for c in x["columns"][:6])
    if w == "select failed":
        return f"select failed: dbt {x['dbt']!r}, xform {x['xform']!r}"
    if w == "rows":
        s = (f"rows: {x['only_dbt_count']} only in dbt, {x['only_xform_count']} only in xform "
             f"(counts dbt {x['row_count']['dbt']}, xform {x['row_count']['xform']})")
        for r in x["only_dbt_sample"][:3]:
            s += f"\n      dbt:   {shorten(r, 200)}"
        for r in x["only_xform_sample"][:3]:
            s += f"\n      xform: {shorten(r, 200)}"
        return s
    return json.dumps(x)


# --------------------------------------------------------------------------------------------


def main(argv=None):
    global args_detail
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xform", help="the xform binary (its side is reported missing if absent)")
    ap.add_argument("--dbt", help="the dbt executable (default: the one beside this Python, else PATH)")
    ap.add_argument("--project", action="append", required=True, metavar="NAME=DIR",
                    help="a dbt project folder; NAME picks its settings in --config")
    ap.add_argument("--package", action="append", default=[], metavar="NAME=DIR",
                    help="a local checkout for a hub or git package (NAME: dbt_utils, dbt_date, audit_helper…)")
    ap.add_argument("--vars", help="YAML passed as --vars to every command (default: the project's in --config)")
    ap.add_argument("--steps", help="override the steps: commands separated by ';', e.g. 'seed; build --full-refresh'")
    ap.add_argument("--out", required=True, type=Path, help="where <NAME>.json and the logs go")
    ap.add_argument("--work", type=Path, help="where the work copies go (default OUT/work)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per command (default 900)")
    ap.add_argument("--threads", type=int, default=1, help="threads in profiles.yml (default 1)")
    ap.add_argument("--reuse-dbt", action="store_true",
                    help="keep the dbt side of an earlier run in the same --work folder")
    ap.add_argument("--clock-window", type=float, default=48, metavar="HOURS",
                    help="timestamps within HOURS of the runs compare equal (current_timestamp in a "
                         "view); 0 compares them exactly (default 48)")
    ap.add_argument("--detail", type=int, default=5, help="differences printed per kind (default 5)")
    args = ap.parse_args(argv)
    args_detail = args.detail

    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work = (args.work or args.out / "work").resolve()
    args.packages = split_pairs(args.package, "--package")
    projects = split_pairs(args.project, "--project")
    for k, d in list(projects.items()) + list(args.packages.items()):
        if not (d / "dbt_project.yml").is_file():
            ap.error(f"{k}={d}: no dbt_project.yml there")
    config = load_yaml(args.config) if args.config.is_file() else {}

    dbt_exe = args.dbt or (str(Path(sys.executable).parent / "dbt")
                           if (Path(sys.executable).parent / "dbt").is_file() else shutil.which("dbt"))
    if not dbt_exe:
        ap.error("no dbt found: run with the venv's python or pass --dbt")
    xform_exe = str(Path(args.xform).expanduser().resolve()) if args.xform else None
    try:
        import duckdb  # noqa: F401
    except ImportError:
        ap.error("the duckdb module is missing: run with the python of the venv that has dbt-duckdb")
    args.dbt_version = tool_version([dbt_exe, "--version"], side_env(args.out))

    all_ok = True
    for name, folder in projects.items():
        spec = dict(config.get(name) or {})
        spec.setdefault("target", "dev")
        spec.setdefault("steps", [["seed"], ["build"]])
        if args.steps:
            spec["steps"] = [s.split() for s in args.steps.split(";") if s.strip()]
        missing = [p for p in spec.get("packages") or [] if p not in args.packages]
        if missing:
            print(f"[{name}] note: bench/conformance_projects.yml lists packages {missing} "
                  f"that no --package names", flush=True)
        rep = conform(name, folder, spec, args, dbt_exe, xform_exe)
        all_ok = all_ok and rep["conforms"]
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
