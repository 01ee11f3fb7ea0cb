"""Database URL, engine set-up and schema upgrades.

SQLite is set up for several writing processes at once: WAL (readers never block the writer),
synchronous=NORMAL (durable at checkpoints, safe against corruption), a long busy_timeout, foreign
keys on, and every write transaction begun IMMEDIATE so that it takes the write lock up front and
waits for it in SQLite's busy handler, instead of failing with "database is locked" when a read
transaction later tries to become a write. Read transactions (see :func:`reader`) begin DEFERRED so
they never wait for writers.

WAL checkpoints (copying the log back into the database file, then an fsync) are run by a
:class:`WalCheckpointer` thread of the store, so a committing writer, say a training loop flushing
its history, does not wait for the disk; writers checkpoint themselves only past a larger safety
threshold (:data:`WRITER_AUTOCHECKPOINT_PAGES`).

The schema is made only by Alembic (migrations/ next to this package); :func:`upgrade` runs it
under a lock held in the database itself: on SQLite the BEGIN IMMEDIATE of the migrating
transaction (SQLite has transactional DDL, so the migration is also all-or-nothing), on PostgreSQL
``pg_advisory_xact_lock``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, pool, text
from sqlalchemy.engine import Connection, make_url

from service import config

BUSY_TIMEOUT_MS = 60_000
# Arbitrary constant naming gradbook's migration lock among PostgreSQL advisory locks.
PG_MIGRATION_LOCK = 0x67726164  # "grad"
_READ_OPTION = "gradbook_read_only"
# With a WalCheckpointer running, a writer's commit checkpoints only beyond this many WAL pages
# (64 MiB at 4 KiB pages; SQLite's default is 1,000), should the thread fall behind.
WRITER_AUTOCHECKPOINT_PAGES = 16_384
log = logging.getLogger(__name__)


def database_url(explicit: str | None = None) -> str:
    """The URL to use (``config.database_url``: explicit, else $GRADBOOK_DATABASE_URL, else
    ./gradbook.db), checked to be a SQLAlchemy URL."""
    url = config.database_url(explicit)
    try:
        make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise ValueError(f"database url: {url!r} is not a valid SQLAlchemy URL ({exc})") from None
    return url


def _is_memory_sqlite(url) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: str, *, wal_autocheckpoint: int | None = None) -> Engine:
    """An engine for ``url``; on SQLite with the pragmas and IMMEDIATE write transactions above.
    ``wal_autocheckpoint``: pages of WAL after which a commit checkpoints (None: SQLite's default)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    memory = _is_memory_sqlite(parsed)
    if memory:
        # One shared connection, or every checkout would see its own empty database.
        engine = create_engine(parsed, poolclass=pool.StaticPool, connect_args={"check_same_thread": False})
    else:
        # Enough pooled connections for a threaded web server's concurrent readers.
        engine = create_engine(
            parsed,
            pool_size=8,
            max_overflow=32,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take BEGIN away from the sqlite3 module; the "begin" hook below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not memory:
            # Before the first table (and before WAL writes the header): then a delete can return its
            # pages to the file system; on an existing database this does nothing (db vacuum switches it).
            cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
            cursor.execute("PRAGMA journal_mode = WAL")
            if wal_autocheckpoint is not None:
                cursor.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        read_only = conn.get_execution_options().get(_READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def is_file_sqlite(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and not _is_memory_sqlite(parsed)


class WalCheckpointer:
    """A daemon thread that runs a PASSIVE checkpoint of a SQLite database's WAL every ``interval``
    seconds. PASSIVE never waits for readers or writers: it copies what it can and returns, and a
    round with nothing new to copy costs a lock check, no disk access."""

    def __init__(self, engine: Engine, interval: float = 0.25):
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gradbook-wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames copied to the database)."""
        # The raw driver connection runs outside a transaction (the engine's "begin" hook would
        # open an IMMEDIATE one, inside which SQLite cannot checkpoint).
        raw = self.engine.raw_connection()
        try:
            return tuple(raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        finally:
            raw.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - a failed round is retried; writers have the safety net
                log.debug("WAL checkpoint failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def open_engine(url: str) -> tuple[Engine, WalCheckpointer | None]:
    """The engine a store or a writer process writes through; on a SQLite file, with the
    :class:`WalCheckpointer` that spares its commits the checkpoints (stop it before disposing)."""
    if not is_file_sqlite(url):
        return make_engine(url), None
    engine = make_engine(url, wal_autocheckpoint=WRITER_AUTOCHECKPOINT_PAGES)
    return engine, WalCheckpointer(engine)


def reader(engine: Engine) -> Engine:
    """The same engine whose transactions are read-only (DEFERRED on SQLite: no write lock)."""
    return engine.execution_options(**{_READ_OPTION: True})


def migrations_dir() -> Path:
    """The repository's migrations/ folder, found next to the service package."""
    path = Path(__file__).resolve().parents[2] / "migrations"
    if not (path / "env.py").is_file():
        raise RuntimeError(f"migrations folder not found at {path} (expected env.py there)")
    return path


def alembic_config(url: str):
    """An Alembic Config built in code (the project has no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(config.DEFAULT_DATABASE_URL)).get_current_head()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str | None = None, *, engine: Engine | None = None) -> str | None:
    """Bring the database at ``url`` to the newest schema; safe to call from many processes at once.

    Returns the revision the database is at afterwards.
    """
    from alembic import command

    url = database_url(url)
    own_engine = engine is None
    engine = engine or make_engine(url)
    try:
        head = head_revision()
        with reader(engine).connect() as conn:
            if current_revision(conn) == head:  # the common case takes no lock at all
                return head
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, i.e. the lock
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            if current_revision(conn) != head:  # someone may have migrated while we waited
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
            return current_revision(conn)
    finally:
        if own_engine:
            engine.dispose()
