"""The results history, one interface with one module per back end.

`open_store(location)` reads the location first: `postgresql://` (or `postgres://`)
URLs open the shared PostgreSQL back end, any other `scheme://` is refused, and
everything else is a path to a SQLite file. The URL is recognised before anything
touches the file system, so a mistyped URL never becomes a directory called `postgresql:`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Union

from controller.store.base import ResultStore, RunExists, RunNotFound, StoreError, redacted

__all__ = ["ResultStore", "RunExists", "RunNotFound", "StoreError", "is_url", "open_store", "redacted"]

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(location: Union[str, Path]) -> bool:
    """Whether a --db value is a URL (`scheme://...`) rather than a file path."""
    return isinstance(location, str) and _URL.match(location) is not None


def open_store(location: Union[str, Path], must_exist: bool = False) -> ResultStore:
    """The results database at `location`: a PostgreSQL URL or a SQLite file path.

    With `must_exist`, a SQLite file that is not there is a StoreError instead of a new,
    empty database (what `report` and `regress` want: reading nothing is a mistake).
    """
    text = str(location)
    log.info("results database: %s", redacted(text))
    match = _URL.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme in POSTGRES_SCHEMES:
            from controller.store.postgres import PostgresStore
            return PostgresStore(text)
        if scheme == "sqlite":
            from controller.store.sqlite import SqliteStore
            return SqliteStore(text[len(match.group(0)):], must_exist=must_exist)
        raise StoreError(f"unsupported database URL scheme {scheme}:// "
                         "(use postgresql://user@host:port/db or a file path)")
    from controller.store.sqlite import SqliteStore
    return SqliteStore(Path(location), must_exist=must_exist)
