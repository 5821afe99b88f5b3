"""Where Ferry's files live: ``include/`` beside ``plugins/`` unless ``FERRY_INCLUDE_DIR`` says otherwise."""

import os
from pathlib import Path

INCLUDE_DIR = Path(os.environ.get("FERRY_INCLUDE_DIR") or Path(__file__).resolve().parents[2] / "include")
SQL_DIR = INCLUDE_DIR / "sql"
