"""Columnar reads of a SQLite store through ADBC, for the one read that is big: a sweep's metric histories.

Python's ``sqlite3`` builds a tuple and a Python object per cell. For a 1,000-trial sweep with 100 epochs
of six curves (600k points) that was 0.9 s of ``Store.sweep()``'s 1.1 s on an idle machine, though
SQLite itself finds the rows in 0.1 s. The ADBC SQLite driver (``adbc-driver-sqlite``) hands back
Arrow columns built in C instead: on that store, old and new code alternated, 1.9-2.6 s before and
0.9-1.3 s after (docs/dashboard.md, "Scale").

The driver is a dependency, but the readers do not rely on it. When it cannot be imported, or it raises
on a query, :func:`arrow_columns` returns ``None`` and the caller reads through ``sqlite3`` as before.
For example, the store may be locked by a writer; ``sqlite3`` waits 5 s for such a lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

logger = logging.getLogger(__name__)


def read_only_uri(path: Path) -> str:
    """SQLite's URI for ``path``, opened read-only: a reader must never create or migrate the store."""
    return f"{path.resolve().as_uri()}?mode=ro"


def arrow_columns(path: Path, query: sa.Executable) -> dict[str, Any] | None:
    """``query``'s result as one numpy array per column (by label), or ``None`` when ADBC cannot read it.

    Integer columns come back as int64 arrays, REAL ones as float64, text as a ``pandas.Categorical``
    (dictionary-encoded in Arrow: no Python string per row).
    """
    try:
        import adbc_driver_sqlite.dbapi as adbc
    except ImportError:
        return None
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    values = compiled.params  # a property that builds the dict on every access
    params = [values[name] for name in compiled.positiontup or ()]
    try:
        with adbc.connect(read_only_uri(path)) as conn, conn.cursor() as cursor:
            cursor.execute(str(compiled), params)
            table = cursor.fetch_arrow_table()
    except Exception as e:  # adbc's own errors, and whatever a driver build or a store can raise
        logger.debug("columnar read of %s failed (%s); reading through sqlite3", path, e)
        return None
    return {name: _column(table.column(name)) for name in table.column_names}


def _column(column: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.dictionary_encode().to_pandas().array
    if column.null_count and not pa.types.is_floating(column.type):  # ints with nulls: keep them None
        return np.asarray(column.to_pylist(), dtype=object)
    return column.to_numpy(zero_copy_only=False)
