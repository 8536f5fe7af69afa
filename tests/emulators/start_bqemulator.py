"""Start bqemulator with no network, and one of its gaps worked around at its door.

- Its engine loads DuckDB's spatial extension at start, which DuckDB downloads on first use,
  and a machine without network fails there. The tests use no GEOGRAPHY, so the emulator
  starts without it.
- It cannot parse `array_agg(distinct x ignore nulls)`, which BigQuery needs in a dynamic
  `insert_overwrite` (an array cannot hold a null) and xform writes: the emulator gets
  `array_agg(distinct x)`, the same array when no partition value is null. xform's SQL is never
  changed for the emulator: only what the emulator runs is.

Arguments are bqemulator's own."""

import re
import sys

import bqemulator.sql.translator as translator
import bqemulator.storage.engine as engine
from bqemulator.cli import main

engine.DuckDBEngine._load_spatial = lambda self: None

DISTINCT_IGNORE_NULLS = re.compile(
    r"(array_agg\(\s*distinct\s(?:[^()]|\([^()]*\))*?)\s+ignore\s+nulls\s*\)", re.IGNORECASE
)
_translate = translator.SQLTranslator.translate


def translate(self, bq_sql, *args, **kwargs):
    if isinstance(bq_sql, str):
        bq_sql = DISTINCT_IGNORE_NULLS.sub(r"\1)", bq_sql)
    return _translate(self, bq_sql, *args, **kwargs)


translator.SQLTranslator.translate = translate
sys.argv[0] = "bqemulator"
sys.exit(main())
