#!/usr/bin/env python3
"""Check that two xform binaries give the same output, for a refactor that must change none.

    python3 bench/same_output.py OLD_XFORM NEW_XFORM [--models 1000]

For every fixture project under tests/fixtures/compile/ (the err_* ones included: their exit
code and diagnostics are compared), `example_project` and a generated bench project of
`--models` models, each binary runs in its own copy of the project with SOURCE_DATE_EPOCH
fixed, one after the other in the same folder: `compile` everywhere, then `build --threads 1`
twice (the second run takes the incremental and snapshot paths) for example_project and the bench project. Compared byte for byte: exit codes,
stdout and stderr (timings masked), every file under target/compiled and target/run,
manifest.json, and, with the `duckdb` Python package installed, every table's rows in the
database each build leaves (sorted). Prints one line per project and exits 1 on a difference.
"""

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING = re.compile(r"\(\d+\.\d+ s\)|Done in \d+\.\d+ s")


def run(binary, project, args):
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000", NO_COLOR="1", HOME=str(project.parent))
    env.pop("DBT_PROFILES_DIR", None)
    env.pop("DBT_TARGET_PATH", None)
    out = subprocess.run([binary, *args], cwd=project, env=env, capture_output=True, text=True)
    text = (out.stdout + "\n--stderr--\n" + out.stderr).replace(str(project), "<project>")
    return f"exit {out.returncode}\n" + TIMING.sub("(<time>)", text)


def tree_diff(a, b):
    """Relative paths that differ between two folders (missing on one side, or other bytes)."""
    if not a.exists() and not b.exists():
        return []
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    fa, fb = files(a), files(b)
    diffs = sorted(str(p) for p in fa ^ fb)
    for p in sorted(fa & fb):
        if not filecmp.cmp(a / p, b / p, shallow=False):
            diffs.append(str(p))
    return diffs


def tables(db_file):
    try:
        import duckdb
    except ImportError:
        return None
    con = duckdb.connect(str(db_file), read_only=True)
    out = {}
    for schema, name in con.execute(
        "select table_schema, table_name from information_schema.tables order by 1, 2"
    ).fetchall():
        rows = con.execute(f'select * from "{schema}"."{name}"').fetchall()
        out[f"{schema}.{name}"] = sorted(map(repr, rows))
    con.close()
    return out


def compare(name, source, old, new, steps):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # Both binaries run in the same folder, one after the other, so absolute paths in the
        # output (seed files, root_path) are the same.
        work = Path(tmp) / "project"
        dirs = []
        for side, binary in (("old", old), ("new", new)):
            shutil.copytree(source, work, ignore=shutil.ignore_patterns("target", "*.duckdb", "*.wal"))
            outputs = [run(binary, work, step) for step in steps]
            kept = Path(tmp) / side
            work.rename(kept)
            dirs.append((kept, outputs))
        (a, out_a), (b, out_b) = dirs
        for step, x, y in zip(steps, out_a, out_b):
            if x != y:
                problems.append(f"output of `{' '.join(step)}` differs:\n--- old\n{x}\n--- new\n{y}")
        for sub in ("target/compiled", "target/run"):
            for p in tree_diff(a / sub, b / sub):
                problems.append(f"{sub}/{p} differs")
        for f in ("target/manifest.json",):
            if (a / f).exists() != (b / f).exists() or ((a / f).exists() and not filecmp.cmp(a / f, b / f, shallow=False)):
                problems.append(f"{f} differs")
        for db in sorted(a.glob("*.duckdb")):
            ta, tb = tables(db), tables(b / db.name)
            if ta is None:
                print(f"  ({name}: the duckdb Python package is not installed: tables not compared)")
            elif ta != tb:
                problems.append(f"the tables of {db.name} differ")
    print(f"{'OK  ' if not problems else 'DIFF'} {name}")
    for p in problems:
        print("    " + p.replace("\n", "\n    "))
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--models", type=int, default=1000)
    args = ap.parse_args()
    old, new = str(Path(args.old).resolve()), str(Path(args.new).resolve())
    ok = True
    for fixture in sorted((ROOT / "tests/fixtures/compile").iterdir()):
        ok &= compare(f"fixture {fixture.name}", fixture, old, new, [["compile"]])
    # One thread: the order of the progress lines is then fixed.
    build = [["compile"], ["build", "--threads", "1"], ["build", "--threads", "1"]]
    ok &= compare("example_project", ROOT / "example_project", old, new, build)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp) / "bench"
        subprocess.run([sys.executable, str(ROOT / "bench/gen_project.py"), str(args.models), str(bench)], check=True, capture_output=True)
        ok &= compare(f"bench project, {args.models} models", bench, old, new, build)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
