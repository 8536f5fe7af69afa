"""Start fakesnow's server, with one of its limits worked around at its door.

DuckDB, under fakesnow, refuses a temporary table named with its database and schema
(`create or replace temporary table analytics.shop.orders__dbt_tmp`), which Snowflake accepts
and xform's plans write. The statement reaches the emulator as a plain table of the same name
instead; every plan drops its staging table at its end. xform's SQL is never changed for the
emulator: only what the emulator runs is. Arguments are fakesnow's own."""

import re
import sys

import fakesnow.cursor as cursor
from fakesnow.cli import main

QUALIFIED_TEMPORARY = re.compile(
    r"^(\s*create\s+or\s+replace\s+)temporary\s+(table\s+[^\s(]+\.[^\s(]+\.)",
    re.IGNORECASE,
)

_execute = cursor.FakeSnowflakeCursor.execute


def execute(self, command, *args, **kwargs):
    if isinstance(command, str):
        command = QUALIFIED_TEMPORARY.sub(r"\1\2", command, count=1)
    return _execute(self, command, *args, **kwargs)


cursor.FakeSnowflakeCursor.execute = execute
sys.argv[0] = "fakesnow"
sys.exit(main())
