"""Start fakesnow's server, with two of its limits worked around at its door.

DuckDB, under fakesnow, refuses a temporary table named with its database and schema
(`create or replace temporary table analytics.shop.orders__dbt_tmp`), which Snowflake accepts
and xform's plans write. The statement reaches the emulator as a plain table of the same name
instead; every plan drops its staging table at its end. xform's SQL is never changed for the
emulator: only what the emulator runs is.

fakesnow's server keeps every database in memory, and ignores `--db_path`. Given with `-s`,
the sessions here share databases kept in files under that folder instead, so that a server
killed and started again still has what it held (a test kills one in the middle of a build).

Arguments are fakesnow's own."""

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

if "-s" in sys.argv and "--db_path" in sys.argv:
    import importlib
    import threading

    import fakesnow
    from fakesnow.instance import FakeSnow

    # The package's `server` function, taken before importing the module of that name hides
    # it (the function reads the module's app through the package once it is imported).
    serve = fakesnow.server
    importlib.import_module("fakesnow.server").shared_fs = FakeSnow(
        db_path=sys.argv[sys.argv.index("--db_path") + 1]
    )
    port = int(sys.argv[sys.argv.index("--port") + 1])
    with serve(port=port, host="127.0.0.1"):
        threading.Event().wait()
else:
    sys.argv[0] = "fakesnow"
    sys.exit(main())
