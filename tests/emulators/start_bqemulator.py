"""Start bqemulator with no network: its engine loads DuckDB's spatial extension at start,
which DuckDB downloads on first use, and a machine without network fails there. The tests use
no GEOGRAPHY, so the emulator starts without it. Arguments are bqemulator's own."""

import sys

import bqemulator.storage.engine as engine
from bqemulator.cli import main

engine.DuckDBEngine._load_spatial = lambda self: None
sys.argv[0] = "bqemulator"
sys.exit(main())
