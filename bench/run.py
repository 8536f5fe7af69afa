#!/usr/bin/env python3
"""Benchmark xform on generated projects (see bench/README.md).

    python3 bench/run.py [--sizes 1000,5000,10000,20000] [--json out.json] [--xform PATH] [--dbt]

For each size N: generate a project (bench/gen_project.py) into a temporary folder, then time
with the xform binary, each repeated --runs times (median reported), with the peak RSS of each:

  compile     cold `xform compile` into a target folder that never existed (`--target-path`
              cold-K, a new K each run), so nothing is cached and no file is overwritten
  compile floor
              examples/compile_floor (built beside the xform binary by `cargo build --release
              --bins --examples`): what a compile as specified cannot skip, done alone: read
              the project's files, parse each model's SQL with sqlparser and write every
              compiled file and the manifest (from a first compile, cold-0) on all cores,
              timed inside its process,
              plus the wall time of `xform --version` (a process's start and exit); its runs
              alternate with the cold compiles and compile/floor is the median of each pair's
              ratio
  warm        `xform compile` again with the target/ of the previous compile in place
  ls          `xform ls`
  select-one  `xform compile -s <a model of the last layer>` into a new target folder

Nothing is deleted until every size is measured: ext4 is slow to create files right after
thousands were deleted (it skips recently freed inodes), which would charge the file system's
bookkeeping of the previous run to the next one.
  build       full `xform build` on DuckDB (the .duckdb file deleted before each run), N <= --build-max
  floor       the statements xform executed (target/run/**) replayed in graph order on a fresh
              DuckDB file, through the `duckdb` Python module or CLI if either is available;
              build and floor runs alternate, and build/floor is the median of each pair's ratio

With --dbt and a `dbt` executable on PATH, also `dbt parse` and `dbt compile` on a copy of the
project (dbt-duckdb profile written to the temp folder). Python 3.11 standard library only.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import gen_project  # noqa: E402

GNU_TIME = "/usr/bin/time"

# Child helper used when /usr/bin/time is missing: runs one command in a fresh process so that
# RUSAGE_CHILDREN's max RSS is that command's alone. argv: out_file cwd cmd...
RSS_HELPER = r"""
import resource, subprocess, sys, time
out, cwd, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
with open(out + ".err", "wb") as err:
    rc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err).returncode
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write(f"{rc} {wall} {ru.ru_maxrss} {ru.ru_utime} {ru.ru_stime}\n")
"""


class Failed(Exception):
    pass


def default_xform():
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return os.path.join(target, "release", "xform")
    return os.path.join(REPO, "target", "release", "xform")


def rm(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def run_once(cmd, cwd, scratch, prepare=None):
    """Run cmd once; return (wall s, peak RSS MB or None, user+sys CPU s or None). Raise Failed on error."""
    if prepare:
        prepare()
        os.sync()  # keep the writeback of the deleted files out of the timed run
    err_path = os.path.join(scratch, "stderr.txt")
    rss_path = os.path.join(scratch, "rss.txt")
    rm(rss_path)
    if os.access(GNU_TIME, os.X_OK):
        full = [GNU_TIME, "-f", "%M %U %S", "-o", rss_path] + cmd
        with open(err_path, "wb") as err:
            t0 = time.perf_counter()
            rc = subprocess.run(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err).returncode
            wall = time.perf_counter() - t0
        kb = cpu = None
        try:
            with open(rss_path) as f:
                lines = [l.strip() for l in f if l.strip()]
            fields = lines[-1].split()
            kb, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
        except (OSError, ValueError, IndexError):
            pass
    else:
        subprocess.run([sys.executable, "-c", RSS_HELPER, rss_path, cwd] + cmd, check=True)
        with open(rss_path) as f:
            rc_s, wall_s, kb_s, user_s, sys_s = f.read().split()
        rc, wall, kb, cpu = int(rc_s), float(wall_s), int(kb_s), float(user_s) + float(sys_s)
        shutil.move(rss_path + ".err", err_path)
    if rc != 0:
        with open(err_path, "rb") as f:
            tail = f.read().decode("utf-8", "replace")[-2000:]
        raise Failed(f"`{' '.join(cmd)}` exited with {rc}:\n{tail}")
    return wall, (kb / 1024 if kb is not None else None), cpu


def hyperfine_times(cmd, cwd, scratch, runs, prepare_shell):
    out = os.path.join(scratch, "hyperfine.json")
    hf = ["hyperfine", "--runs", str(runs), "--style", "none", "--export-json", out]
    if prepare_shell:
        hf += ["--prepare", prepare_shell]
    hf.append(" ".join(shlex.quote(c) for c in cmd))
    r = subprocess.run(hf, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise Failed(f"hyperfine failed on `{' '.join(cmd)}`:\n{r.stderr.decode('utf-8', 'replace')[-2000:]}")
    with open(out) as f:
        return json.load(f)["results"][0]["times"]


def measure(cmd, cwd, scratch, runs, prepare=None, prepare_shell=None, use_hyperfine=False):
    """Median wall time over `runs` runs, the max peak RSS (MB) seen, all wall times, and
    the median user+sys CPU seconds (None if unknown)."""
    if use_hyperfine:
        # One run of our own for the peak RSS (and to fail early with the command's stderr).
        _, rss, cpu = run_once(cmd, cwd, scratch, prepare)
        times = hyperfine_times(cmd, cwd, scratch, runs, prepare_shell)
        return statistics.median(times), rss, times, cpu
    times, rss, cpus = [], [], []
    for _ in range(runs):
        t, m, c = run_once(cmd, cwd, scratch, prepare)
        times.append(t)
        if m is not None:
            rss.append(m)
        if c is not None:
            cpus.append(c)
    return statistics.median(times), (max(rss) if rss else None), times, (statistics.median(cpus) if cpus else None)


# --------------------------------------------------------------------------- DuckDB floor


def graph_order(manifest):
    """Node ids (models and seeds) in topological order of depends_on.nodes, ties by id."""
    nodes = manifest.get("nodes", {})
    import heapq

    indeg = {u: 0 for u in nodes}
    children = {u: [] for u in nodes}
    for u, n in nodes.items():
        for p in set(n.get("depends_on", {}).get("nodes", [])):
            if p in nodes:
                indeg[u] += 1
                children[p].append(u)
    ready = [u for u, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        u = heapq.heappop(ready)
        order.append(u)
        for c in children[u]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(nodes):
        raise Failed("manifest.json has a cycle")
    return order


def floor_statements(project):
    """The run SQL of every non-ephemeral model and seed, in graph order."""
    target = os.path.join(project, "target")
    with open(os.path.join(target, "manifest.json")) as f:
        manifest = json.load(f)
    name = manifest.get("metadata", {}).get("project_name", "bench")
    scripts, missing, schemas = [], 0, []
    for uid in graph_order(manifest):
        node = manifest["nodes"][uid]
        if node.get("resource_type") not in ("model", "seed"):
            continue
        if node.get("config", {}).get("materialized") == "ephemeral":
            continue
        schema = (node.get("database"), node.get("schema") or "main")
        if schema not in schemas:
            schemas.append(schema)
        path = os.path.join(target, "run", name, node["original_file_path"])
        try:
            with open(path, encoding="utf-8") as f:
                scripts.append(f.read())
        except OSError:
            missing += 1
    if missing:
        raise Failed(f"{missing} run files missing under target/run")
    # xform creates the schemas up front (not in the run files); so does the floor.
    quote = lambda x: '"' + x.replace('"', '""') + '"'  # noqa: E731
    prelude = "".join(
        f"create schema if not exists {quote(db) + '.' if db else ''}{quote(sc)};\n" for db, sc in schemas
    )
    return [prelude] + scripts


def floor_backend():
    try:
        import duckdb  # noqa: F401

        return "python"
    except ImportError:
        pass
    if shutil.which("duckdb"):
        return "cli"
    return None


def floor_once(scripts, db_dir, db_name, backend):
    rm(db_dir)
    os.makedirs(db_dir)
    os.sync()
    db = os.path.join(db_dir, db_name + ".duckdb")  # same catalog name as xform's database
    if backend == "python":
        import duckdb

        t0 = time.perf_counter()
        con = duckdb.connect(db)
        try:
            for s in scripts:
                con.execute(s)
        except duckdb.Error as e:
            raise Failed(f"DuckDB failed on the floor script: {e}\n{s[:500]}") from None
        finally:
            con.close()
        return time.perf_counter() - t0
    script = os.path.join(db_dir, "floor.sql")
    with open(script, "w", encoding="utf-8") as f:
        f.write(".bail on\n")
        f.write("\n".join(scripts))
    with open(script, "rb") as stdin:
        t0 = time.perf_counter()
        r = subprocess.run(["duckdb", db], stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
    if r.returncode != 0 or r.stderr.strip():
        raise Failed("duckdb CLI failed on the floor script:\n" + r.stderr.decode("utf-8", "replace")[-2000:])
    return wall


# --------------------------------------------------------------------------- dbt


def dbt_measure(project, work, runs):
    """Time `dbt parse` and `dbt compile` on a copy of the project; None if dbt is absent."""
    dbt = shutil.which("dbt")
    if not dbt:
        return None
    copy = os.path.join(work, "dbt_project")
    rm(copy)
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("target", "*.duckdb", "*.wal"))
    shutil.copy(os.path.join(copy, "xform.yml"), os.path.join(copy, "dbt_project.yml"))
    profiles = os.path.join(work, "dbt_profiles")
    os.makedirs(profiles, exist_ok=True)
    with open(os.path.join(profiles, "profiles.yml"), "w") as f:
        f.write("bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
                f"      path: {os.path.join(copy, 'bench.duckdb')}\n      threads: 4\n")
    common = ["--profiles-dir", profiles, "--project-dir", copy]
    prep = lambda: rm(os.path.join(copy, "target"))  # noqa: E731
    result = {}
    for sub in ("parse", "compile"):
        cmd = [dbt, sub, "--no-partial-parse"] + common
        t, m, times, _ = measure(cmd, copy, work, runs, prepare=prep)
        result[sub] = {"s": t, "mb": m, "times": times}
    return result


# --------------------------------------------------------------------------- main


def compile_floor_once(floor_bin, project, reference, work):
    """One run of the compile floor (examples/compile_floor.rs): its own timing of reading the
    project, parsing every model's SQL and writing every compiled file, in seconds, and its
    `bodies ...` line as a dict."""
    try:
        r = subprocess.run([floor_bin, project, reference, os.path.join(work, "compile-floor"), "1"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed(f"the compile floor exited with {r.returncode}:\n{r.stderr[-2000:]}")
        lines = r.stdout.split("\n")
        words = next(l for l in lines if l.startswith("bodies ")).split()
        info = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        return float(next(l for l in reversed(lines) if l.startswith("floor ")).split()[1]), info
    except (OSError, ValueError, IndexError, StopIteration) as e:
        raise Failed(f"the compile floor could not be run or read: {e}") from e


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def bench_size(n, args, xform, use_hyperfine, backend, works):
    work = tempfile.mkdtemp(prefix=f"xform-bench-{n}-")
    works.append(work)  # deleted by main once every size is measured
    project = os.path.join(work, "project")
    row = {"n": n, "dir": project}
    t0 = time.perf_counter()
    info = gen_project.generate(n, project, seed=args.seed)
    row["generate_s"] = time.perf_counter() - t0
    row["materializations"] = info["materializations"]
    pick = info["last_layer_model"]
    row["select_one_model"] = pick
    pd = ["--project-dir", project]
    runs = args.runs

    def step(key, cmd, prepare=None, prepare_shell=None):
        try:
            t, m, times, cpu = measure(cmd, project, work, runs, prepare, prepare_shell, use_hyperfine)
            row[key + "_s"], row[key + "_mb"], row[key + "_times"] = t, m, times
            row[key + "_cpu_s"] = cpu
            return True
        except Failed as e:
            print(f"  N={n} {key}: FAILED\n{e}", file=sys.stderr)
            row[key + "_s"] = "FAIL"
            return False

    fresh = [0]

    def fresh_step(key, cmd, after=None):
        """Like step, with a target folder of its own for each run (own loop, not hyperfine);
        `after()` runs after each run (the compile floor, so that the two alternate)."""
        times, rss, cpus = [], [], []
        try:
            for _ in range(runs):
                fresh[0] += 1
                t, m, c = run_once(cmd + ["--target-path", f"cold-{fresh[0]}"], project, work)
                times.append(t)
                rss += [m] if m is not None else []
                cpus += [c] if c is not None else []
                if after:
                    after()
        except Failed as e:
            print(f"  N={n} {key}: FAILED\n{e}", file=sys.stderr)
            row[key + "_s"] = "FAIL"
            return
        row[key + "_s"], row[key + "_times"] = statistics.median(times), times
        row[key + "_mb"] = max(rss) if rss else None
        row[key + "_cpu_s"] = statistics.median(cpus) if cpus else None

    print(f"N={n}: generated in {row['generate_s']:.2f} s ({project})", file=sys.stderr)
    # A first compile: the reference output for the compile floor, and a warm-up.
    floors = []
    floor_bin = args.compile_floor if os.access(args.compile_floor, os.X_OK) else None
    if floor_bin is None:
        print(f"  compile floor: n/a (no {args.compile_floor}; `cargo build --release --bins --examples`)",
              file=sys.stderr)
    startup = 0.0
    try:
        run_once([xform, "compile", "--target-path", "cold-0"] + pd, project, work)
        # The floor times itself inside its process; xform's compile is timed as a process.
        # Count a process's start and exit (`xform --version`) into the floor.
        startup = statistics.median(run_once([xform, "--version"], project, work)[0] for _ in range(5))
        row["process_start_s"] = startup
    except Failed as e:
        print(f"  N={n} first compile: FAILED\n{e}", file=sys.stderr)
        floor_bin = None

    def compile_floor():
        nonlocal floor_bin
        if floor_bin:
            try:
                t, info = compile_floor_once(floor_bin, project, os.path.join(project, "cold-0"), work)
                floors.append(t + startup)
                row["compile_floor_bodies"] = info
                if info.get("unrecovered") or info.get("failed"):
                    print(f"  N={n} compile floor: {info} (unrecovered: parsed with their injected "
                          "CTEs; failed: rejected by sqlparser)", file=sys.stderr)
            except Failed as e:
                print(f"  N={n} compile floor: FAILED\n{e}", file=sys.stderr)
                floor_bin = None
                floors.clear()

    fresh_step("compile", [xform, "compile"] + pd, compile_floor)
    if floors and isinstance(row.get("compile_s"), float):
        row["compile_floor_s"], row["compile_floor_times"] = statistics.median(floors), floors
        row["compile_floor_pairs"] = [c / f for c, f in zip(row["compile_times"], floors)]
    # The everyday case: target/ left by the previous compile of the same project.
    run_once([xform, "compile"] + pd, project, work)
    step("compile_warm", [xform, "compile"] + pd)
    step("ls", [xform, "ls"] + pd)
    fresh_step("select_one", [xform, "compile", "-s", pick] + pd)

    if n <= args.build_max:
        db = os.path.join(project, "bench.duckdb")
        rm_db = lambda: [rm(db), rm(db + ".wal")]  # noqa: E731
        rm_db_sh = f"rm -f {shlex.quote(db)} {shlex.quote(db + '.wal')} && sync"
        build = [xform, "build"] + pd + (["--threads", str(args.threads)] if args.threads else [])
        try:
            run_once(build, project, work, rm_db)  # probe (and warm-up); writes target/run
            ok = True
        except Failed as e:
            msg = str(e)
            ok = False
            if "without DuckDB" in msg:
                print(f"  N={n} build: skipped (this xform was built without DuckDB)", file=sys.stderr)
                row["build_s"] = "n/a"
            else:
                print(f"  N={n} build: FAILED\n{msg}", file=sys.stderr)
                row["build_s"] = "FAIL"
        if ok and backend is None:
            print("floor: n/a (neither the duckdb Python module nor the duckdb CLI is available)",
                  file=sys.stderr)
            step("build", build, rm_db, rm_db_sh)
        elif ok:
            # Build and floor alternate, so that both see the same machine: on a shared
            # machine the load moves between minutes, and the ratio is what the target is.
            try:
                scripts = floor_statements(project)
                builds, floors, cpus, rss = [], [], [], []
                for _ in range(runs):
                    t, m, c = run_once(build, project, work, rm_db)
                    builds.append(t)
                    cpus += [c] if c is not None else []
                    rss += [m] if m is not None else []
                    floors.append(floor_once(scripts, os.path.join(work, "floor"), "bench", backend))
                row["build_s"], row["build_times"] = statistics.median(builds), builds
                row["build_mb"] = max(rss) if rss else None
                row["build_cpu_s"] = statistics.median(cpus) if cpus else None
                row["floor_s"], row["floor_times"] = statistics.median(floors), floors
                row["floor_backend"] = backend
                row["floor_run_files"] = len(scripts) - 1
                row["build_floor_pairs"] = [b / f for b, f in zip(builds, floors)]
            except Failed as e:
                print(f"  N={n} build or floor: FAILED\n{e}", file=sys.stderr)
                row["floor_s"] = "FAIL"
    if args.dbt:
        d = dbt_measure(project, work, args.dbt_runs)
        if d:
            row["dbt_parse_s"] = d["parse"]["s"]
            row["dbt_compile_s"] = d["compile"]["s"]
            row["dbt_parse_mb"] = d["parse"]["mb"]
            row["dbt_compile_mb"] = d["compile"]["mb"]
    return row


def compile_ratio(r):
    """Median of the cold compile / compile floor ratios of runs taken back to back."""
    pairs = r.get("compile_floor_pairs")
    return statistics.median(pairs) if pairs else None


def build_ratio(r):
    """Median of the build/floor ratios of runs taken back to back, else the ratio of medians."""
    pairs = r.get("build_floor_pairs")
    if pairs:
        return statistics.median(pairs)
    return ratio(r.get("build_s"), r.get("floor_s"))


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return a / b
    return None


def table(rows, with_dbt):
    head = ["N", "compile s", "compile CPU s", "compile floor s", "compile/floor", "compile MB", "warm s", "warm MB", "ls s", "select-one s", "build s", "floor s", "build/floor"]
    if with_dbt:
        head += ["dbt parse s", "dbt compile s", "dbt/xform compile"]
    lines = []
    for r in rows:
        cells = [
            str(r["n"]),
            fmt(r.get("compile_s"), 3),
            fmt(r.get("compile_cpu_s"), 2),
            fmt(r.get("compile_floor_s"), 3),
            fmt(compile_ratio(r), 2),
            fmt(r.get("compile_mb"), 1),
            fmt(r.get("compile_warm_s"), 3),
            fmt(r.get("compile_warm_mb"), 1),
            fmt(r.get("ls_s"), 3),
            fmt(r.get("select_one_s"), 3),
            fmt(r.get("build_s", "-") , 3),
            fmt(r.get("floor_s", "-" if r.get("build_s", "-") == "-" else None), 3),
            fmt(build_ratio(r) if "floor_s" in r else "-", 2),
        ]
        if with_dbt:
            cells += [
                fmt(r.get("dbt_parse_s", "-"), 2),
                fmt(r.get("dbt_compile_s", "-"), 2),
                fmt(ratio(r.get("dbt_compile_s"), r.get("compile_s")) if "dbt_compile_s" in r else "-", 1),
            ]
        lines.append(cells)
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    out.append("  ".join("-" * w for w in widths))
    for l in lines:
        out.append("  ".join(c.rjust(w) for c, w in zip(l, widths)))
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Benchmark xform on generated projects.")
    ap.add_argument("--sizes", default="1000,5000,10000,20000", help="comma-separated model counts")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--xform", default=default_xform(),
                    help="xform binary (default: $CARGO_TARGET_DIR/release/xform or target/release/xform)")
    ap.add_argument("--compile-floor", default=None,
                    help="compile floor binary (default: examples/compile_floor beside the xform binary)")
    ap.add_argument("--dbt", action="store_true", help="also time dbt parse/compile if dbt is on PATH")
    ap.add_argument("--build-max", type=int, default=1000, help="run the full build only for N up to this")
    ap.add_argument("--runs", type=int, default=3, help="repetitions per measurement (median reported)")
    ap.add_argument("--dbt-runs", type=int, default=1, help="repetitions of each dbt command")
    ap.add_argument("--threads", type=int, help="pass --threads to xform build")
    ap.add_argument("--seed", type=int, default=42, help="generator seed")
    ap.add_argument("--keep", action="store_true", help="keep the generated projects")
    ap.add_argument("--no-hyperfine", action="store_true", help="time with our own loop even if hyperfine is installed")
    args = ap.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    xform = os.path.abspath(args.xform)
    if args.compile_floor is None:
        args.compile_floor = os.path.join(os.path.dirname(xform), "examples", "compile_floor")
    if not os.access(xform, os.X_OK):
        ap.error(f"no xform binary at {xform} (build it with `cargo build --release` or pass --xform)")
    use_hyperfine = bool(shutil.which("hyperfine")) and not args.no_hyperfine
    backend = floor_backend()
    with_dbt = args.dbt and shutil.which("dbt") is not None
    print(
        f"xform: {xform}\ntiming: {'hyperfine' if use_hyperfine else 'own loop'}, {args.runs} runs, median; "
        f"peak RSS: {'/usr/bin/time -f %M' if os.access(GNU_TIME, os.X_OK) else 'getrusage in a child helper'}; "
        f"floor: {backend or 'n/a'}",
        file=sys.stderr,
    )
    works = []
    try:
        rows = [bench_size(n, args, xform, use_hyperfine, backend, works) for n in sizes]
    finally:
        for work in works:
            if args.keep:
                print(f"  kept {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    if not args.keep:
        for r in rows:
            r.pop("dir", None)
    print(table(rows, with_dbt))
    if args.json:
        doc = {
            "xform": xform,
            "runs": args.runs,
            "timer": "hyperfine" if use_hyperfine else "loop",
            "floor_backend": backend,
            "cpus": os.cpu_count(),
            "rows": rows,
        }
        for r in rows:
            r["build_over_floor"] = build_ratio(r)
            if "dbt_compile_s" in r:
                r["dbt_over_xform_compile"] = ratio(r.get("dbt_compile_s"), r.get("compile_s"))
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    failed = any(v == "FAIL" for r in rows for v in r.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
