#!/usr/bin/env python3
"""Generate a synthetic xform project of N models for benchmarking.

    python3 bench/gen_project.py N OUT_DIR [--seed S] [--layers L]

The output is deterministic for a given (N, seed, layers). Layout:

    OUT_DIR/xform.yml                 project file (vars, folder defaults per layer)
    OUT_DIR/seeds/raw_*.csv           3 seeds of 200 rows (id, region, a date, a number, ...)
    OUT_DIR/macros/bench_macros.sql   2 macros with arguments (one with a default)
    OUT_DIR/models/layer_K/model_XXXXX.sql
    OUT_DIR/models/layer_K/schema.yml descriptions/columns for ~1/5 of the layer's models

Every model exposes the same core columns (id, region, amount, event_date) with a unique id
(at most 200 rows), so any model can ref any earlier one and every model runs on DuckDB.
Layer 0 reads a seed through ref(); a model in layer K>0 refs 1 to 3 models of earlier layers
and combines them with `union all` + `group by id`, or a `left join ... using (id)`.

Materializations: ~50% view, ~28% table, ~14% ephemeral, ~8% incremental (unique_key `id`;
merge, delete+insert and append in turn; an `is_incremental()` filter on `{{ this }}`). On a
new database an incremental model builds as a table; a second `build` runs the incremental
path. Two bounds keep the
build cheap: an ephemeral model has at most 2 levels of ephemeral ancestors inlined into it,
and a model whose SQL would expand (through views and ephemeral parents, which DuckDB and the
CTE inlining re-expand) into more than --max-inline relations is made a table instead.
"""

import argparse
import datetime
import os
import random
import shutil
import sys

REGIONS = ["north", "south", "east", "west"]
SEED_ROWS = 200
SEED_NAMES = ["raw_events", "raw_customers", "raw_products"]
MAT_WEIGHTS = [("view", 50), ("table", 28), ("ephemeral", 14), ("incremental", 8)]
INCREMENTAL_STRATEGIES = ["merge", "delete+insert", "append"]
# Materializations that leave a relation DuckDB reads without expanding its SQL.
STORED = ("table", "incremental")
MAX_EPHEMERAL_DEPTH = 2


def folder_default(layer):
    """Folder-level +materialized default of layer K (set in xform.yml)."""
    return "table" if layer % 3 == 0 else "view"


def pick_weighted(rng, weights):
    total = sum(w for _, w in weights)
    x = rng.uniform(0, total)
    for value, w in weights:
        x -= w
        if x <= 0:
            return value
    return weights[-1][0]


# --------------------------------------------------------------------------- seeds


def write_seeds(rng, out):
    os.makedirs(os.path.join(out, "seeds"), exist_ok=True)
    base = datetime.date(2024, 1, 1)
    # raw_events: id, customer_id, region, amount, event_date
    lines = ["id,customer_id,region,amount,event_date"]
    for i in range(1, SEED_ROWS + 1):
        d = base + datetime.timedelta(days=rng.randrange(365))
        lines.append(f"{i},{rng.randint(1, SEED_ROWS)},{rng.choice(REGIONS)},{rng.randint(100, 99999) / 100:.2f},{d.isoformat()}")
    _write(os.path.join(out, "seeds", "raw_events.csv"), "\n".join(lines) + "\n")
    # raw_customers: id, name, region, credit_limit, signup_date
    lines = ["id,name,region,credit_limit,signup_date"]
    for i in range(1, SEED_ROWS + 1):
        d = base - datetime.timedelta(days=rng.randrange(1000))
        lines.append(f"{i},customer_{i:03d},{rng.choice(REGIONS)},{rng.randint(0, 5000)},{d.isoformat()}")
    _write(os.path.join(out, "seeds", "raw_customers.csv"), "\n".join(lines) + "\n")
    # raw_products: id, sku, region, price, launch_date
    lines = ["id,sku,region,price,launch_date"]
    for i in range(1, SEED_ROWS + 1):
        d = base + datetime.timedelta(days=rng.randrange(-200, 200))
        lines.append(f"{i},SKU-{rng.randrange(10**6):06d},{rng.choice(REGIONS)},{rng.randint(99, 20000) / 100:.2f},{d.isoformat()}")
    _write(os.path.join(out, "seeds", "raw_products.csv"), "\n".join(lines) + "\n")


# Core-column projection of each seed, used by layer-0 models.
SEED_SELECT = {
    "raw_events": ("id", "region", "cast(amount as double)", "cast(event_date as date)"),
    "raw_customers": ("id", "region", "cast(credit_limit as double)", "cast(signup_date as date)"),
    "raw_products": ("id", "region", "cast(price as double)", "cast(launch_date as date)"),
}

MACROS = """\
{#- Division that yields null instead of failing on a zero or null denominator. -#}
{% macro safe_divide(numerator, denominator) -%}
    case when {{ denominator }} is null or {{ denominator }} = 0 then null
         else cast({{ numerator }} as double) / {{ denominator }} end
{%- endmacro %}

{#- A numeric code per region (1-based position in `regions`, 0 when unknown). -#}
{% macro region_code(column_name, regions=none, scale=2) -%}
    {%- set regions = regions if regions is not none else var('regions') -%}
    round(case {% for r in regions %}when {{ column_name }} = '{{ r }}' then {{ loop.index }} {% endfor %}else 0 end, {{ scale }})
{%- endmacro %}
"""


def project_yml(layers):
    lines = [
        "# Synthetic benchmark project generated by bench/gen_project.py",
        "name: bench",
        "version: '1.0.0'",
        "config-version: 2",
        "profile: bench",
        "",
        'model-paths: ["models"]',
        'seed-paths: ["seeds"]',
        'macro-paths: ["macros"]',
        "target-path: target",
        "clean-targets:",
        "  - target",
        "",
        "vars:",
        "  lookback_days: 3",
        "  regions: [" + ", ".join(REGIONS) + "]",
        "",
        "models:",
        "  bench:",
        "    +tags: [bench]",
    ]
    for k in range(layers):
        lines.append(f"    layer_{k}:")
        lines.append(f"      +materialized: {folder_default(k)}")
        if k == layers - 1:
            lines.append("      +schema: marts")
    lines += [
        "",
        "seeds:",
        "  bench:",
        "    raw_events:",
        "      +column_types:",
        "        amount: DOUBLE",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- models


class Model:
    __slots__ = ("idx", "name", "layer", "mat", "parents", "seed", "eph_depth", "inline", "variant", "incr", "jinja")

    def __init__(self, idx, layer):
        self.idx = idx
        self.name = f"model_{idx:05d}"
        self.layer = layer
        self.parents = []
        self.seed = None


def plan_models(rng, n, layers, max_inline):
    sizes = [n // layers + (1 if k < n % layers else 0) for k in range(layers)]
    models, by_layer, idx = [], [], 0
    for k in range(layers):
        by_layer.append([])
        for _ in range(sizes[k]):
            m = Model(idx, k)
            idx += 1
            if k == 0:
                m.seed = SEED_NAMES[m.idx % len(SEED_NAMES)]
            else:
                count = rng.choice([1, 2, 2, 3])
                chosen = set()
                for _ in range(count * 4):
                    if len(chosen) == count:
                        break
                    # Mostly the previous layer, else any earlier layer.
                    src = k - 1 if rng.random() < 0.6 else rng.randrange(k)
                    if by_layer[src]:
                        chosen.add(rng.choice(by_layer[src]).idx)
                m.parents = sorted(chosen)
            mat = pick_weighted(rng, MAT_WEIGHTS)
            parents = [models[p] for p in m.parents]
            eph_parents = [p.eph_depth for p in parents if p.mat == "ephemeral"]
            m.eph_depth = 1 + max(eph_parents, default=0)
            if mat == "ephemeral" and m.eph_depth > MAX_EPHEMERAL_DEPTH:
                mat = "view"
            # Relations DuckDB expands when binding/executing this model: itself plus the
            # expansion of every parent that is not a table.
            m.inline = 1 + sum(p.inline for p in parents if p.mat not in STORED)
            if m.inline > max_inline and mat not in STORED:
                mat = "table"
            m.mat = mat
            m.variant = "join" if (len(m.parents) > 1 and rng.random() < 0.4) else "union"
            m.incr = rng.random() < 1 / 3
            m.jinja = rng.random() < 0.9  # ~10% of models are plain SQL plus ref()
            models.append(m)
            by_layer[k].append(m)
    return models, by_layer


def incremental_strategy(m):
    return INCREMENTAL_STRATEGIES[m.idx % len(INCREMENTAL_STRATEGIES)]


def render_model(m, models):
    out = []
    default = folder_default(m.layer)
    cfg = []
    if m.mat != default:
        cfg.append(f"materialized='{m.mat}'")
    if m.mat == "incremental":
        cfg.append(f"unique_key='id', incremental_strategy='{incremental_strategy(m)}'")
    if m.jinja:
        cfg.append(f"tags=['layer_{m.layer}']")
    if cfg:
        out.append("{{ config(" + ", ".join(cfg) + ") }}")
    out.append(f"-- {m.name}: layer {m.layer}, {m.mat}")
    out.append("")
    if m.layer == 0:
        cid, creg, camt, cdate = SEED_SELECT[m.seed]
        out.append("with source as (")
        out.append("")
        out.append(f"    select * from {{{{ ref('{m.seed}') }}}}")
        out.append("")
        out.append("),")
        out.append("")
        out.append("combined as (")
        out.append("")
        out.append("    select")
        out.append(f"        {cid} as id,")
        out.append(f"        {creg} as region,")
        out.append(f"        {camt} as amount,")
        out.append(f"        {cdate} as event_date")
        out.append("    from source")
        out.append("")
        out.append(")")
    else:
        parents = [models[p] for p in m.parents]
        ctes = []
        for j, p in enumerate(parents):
            ctes.append(f"p{j} as (\n\n    select id, region, amount, event_date from {{{{ ref('{p.name}') }}}}\n\n)")
        if len(parents) == 1:
            body = (
                "combined as (\n\n"
                "    select id, region, round(amount * 1.01, 2) as amount, event_date\n"
                "    from p0\n\n)"
            )
        elif m.variant == "union":
            unions = "\n    union all\n".join(f"    select * from p{j}" for j in range(len(parents)))
            body = (
                "unioned as (\n\n" + unions + "\n\n),\n\n"
                "combined as (\n\n"
                "    select\n"
                "        id,\n"
                "        min(region) as region,\n"
                "        round(sum(amount) / count(*), 2) as amount,\n"
                "        max(event_date) as event_date\n"
                "    from unioned\n"
                "    group by id\n\n)"
            )
        else:
            joins = "\n".join(f"    left join p{j} using (id)" for j in range(1, len(parents)))
            adds = " + ".join(f"coalesce(p{j}.amount, 0)" for j in range(1, len(parents)))
            body = (
                "combined as (\n\n"
                "    select\n"
                "        p0.id,\n"
                "        p0.region,\n"
                f"        round((p0.amount + {adds}) / {len(parents)}, 2) as amount,\n"
                "        p0.event_date\n"
                "    from p0\n" + joins + "\n\n)"
            )
        out.append("with " + ",\n\n".join(ctes + [body]))
    out.append("")
    out.append("select")
    if m.jinja:
        out.append("    id,")
        out.append("    region,")
        out.append("    amount,")
        out.append("    event_date,")
        out.append("    event_date - {{ var('lookback_days') }} as lookback_start,")
        out.append("    {{ safe_divide('amount', 'id') }} as amount_per_id,")
        if m.idx % 2:
            out.append("    {{ region_code('region') }} as region_code,")
        else:
            out.append("    {{ region_code('region', regions=var('regions'), scale=0) }} as region_code,")
        out.append("    {% for r in var('regions') -%}")
        out.append("    case when region = '{{ r }}' then amount else 0 end as {{ r }}_amount{{ ',' if not loop.last }}")
        out.append("    {% endfor %}")
    else:
        out.append("    id,")
        out.append("    region,")
        out.append("    amount,")
        out.append("    event_date")
    out.append("from combined")
    if m.mat == "incremental":
        out.append("{% if is_incremental() %}")
        # Rows of the latest day again (replaced by key), but never twice when appended.
        op = ">" if incremental_strategy(m) == "append" else ">="
        out.append(f"where event_date {op} (select max(event_date) from {{{{ this }}}})")
        out.append("{% endif %}")
    elif m.incr:
        out.append("{% if is_incremental() %}")
        out.append("where false")
        out.append("{% endif %}")
    return "\n".join(out) + "\n"


def schema_yml(layer_models):
    lines = ["version: 2", "", "models:"]
    for m in layer_models:
        lines += [
            f"  - name: {m.name}",
            f"    description: Synthetic model {m.idx} of layer {m.layer} ({m.mat}), "
            + (f"built from the seed {m.seed}." if m.seed else f"combining {len(m.parents)} upstream model(s)."),
            "    columns:",
            "      - name: id",
            "        description: Primary key, shared by every model of the project.",
            "        tests:",
            "          - not_null",
            "          - unique",
            "      - name: region",
            "        description: One of the `regions` project variable.",
            "      - name: amount",
            "        description: Amount averaged over the upstream models, rounded to 2 decimals.",
            "      - name: event_date",
            "        description: Latest date seen for this id upstream.",
            "",
        ]
    return "\n".join(lines)


def _write(path, text):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def generate(n, out, seed=42, layers=10, max_inline=32, clean=True):
    """Generate the project into `out`; return a summary dict."""
    if n < 1:
        raise ValueError("N must be positive")
    layers = max(1, min(layers, n))
    rng = random.Random(seed)
    if clean and os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    _write(os.path.join(out, "xform.yml"), project_yml(layers))
    write_seeds(rng, out)
    os.makedirs(os.path.join(out, "macros"), exist_ok=True)
    _write(os.path.join(out, "macros", "bench_macros.sql"), MACROS)
    models, by_layer = plan_models(rng, n, layers, max_inline)
    documented = 0
    for k, layer_models in enumerate(by_layer):
        d = os.path.join(out, "models", f"layer_{k}")
        os.makedirs(d, exist_ok=True)
        for m in layer_models:
            _write(os.path.join(d, m.name + ".sql"), render_model(m, models))
        docs = [m for m in layer_models if rng.random() < 0.2]
        documented += len(docs)
        if docs:
            _write(os.path.join(d, "schema.yml"), schema_yml(docs))
    mats = {}
    for m in models:
        mats[m.mat] = mats.get(m.mat, 0) + 1
    last = by_layer[-1]
    # A non-ephemeral model of the last layer, for `compile -s` (prefer the one with most parents).
    candidates = [m for m in last if m.mat != "ephemeral"] or last
    pick = max(candidates, key=lambda m: (len(m.parents), -m.idx))
    return {
        "models": n,
        "layers": layers,
        "materializations": mats,
        "documented": documented,
        "incremental_blocks": sum(1 for m in models if m.incr or m.mat == "incremental"),
        "max_inline": max(m.inline for m in models if m.mat != "ephemeral"),
        "last_layer_model": pick.name,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="number of models (100 to 20000)")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--max-inline", type=int, default=32,
                    help="make a model a table when views/ephemerals would expand to more relations than this")
    args = ap.parse_args(argv)
    if not 1 <= args.n <= 100_000:
        ap.error("N must be between 1 and 100000 (designed for 100 to 20000)")
    info = generate(args.n, args.out_dir, args.seed, args.layers, args.max_inline)
    mats = ", ".join(f"{k} {v}" for k, v in sorted(info["materializations"].items()))
    print(
        f"generated {info['models']} models in {info['layers']} layers into {args.out_dir} "
        f"({mats}; {info['documented']} documented; {info['incremental_blocks']} with is_incremental(); "
        f"largest expansion of a table {info['max_inline']} relations; last-layer model {info['last_layer_model']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
