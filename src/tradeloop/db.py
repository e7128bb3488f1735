"""Database plumbing: engine, declarative base, unit of work, and after-commit hooks."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from tradeloop.driver import DriverConnection

# Alembic autogenerate and cross-database migrations need stable constraint names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AFTER_COMMIT_KEY = "tradeloop_after_commit"
UNIT_OF_WORK_OPTION = "tradeloop_unit_of_work"
READ_ONLY_KEY = "tradeloop_read_only"


class ReadOnlySessionError(RuntimeError):
    """A read session was asked to write: the caller should have opened a unit of work."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops tzinfo otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    inserted_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_db_engine(url: str, *, connect_timeout_s: float = 2.0, **kwargs: Any) -> Engine:
    """An engine with bounded connect times; SQLite gets WAL, foreign keys and a busy timeout."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **kwargs,
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True, **kwargs}
    if make_url(url).get_backend_name() == "postgresql":
        timeout = max(1, round(connect_timeout_s))
        engine_kwargs.setdefault("connect_args", {"connect_timeout": timeout})
        if "poolclass" not in kwargs:
            engine_kwargs.setdefault("pool_timeout", connect_timeout_s)
    return create_engine(url, **engine_kwargs)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own implicit transactions break SAVEPOINT; SQLAlchemy emits BEGIN instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite_transaction(connection: Any) -> None:
    # Units of work take the write lock up front (IMMEDIATE): a deferred transaction that read
    # first and writes later fails at once with "database is locked" when another writer
    # committed in between (WAL snapshot rule), instead of waiting on the busy timeout.
    # Reads (read sessions, health pings) stay deferred so that a long write never blocks them.
    immediate = connection.get_execution_options().get(UNIT_OF_WORK_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine and its session factories; one per process (or per test).

    Two ways in: the ORM's unit of work (`unit_of_work`; `read_session` for reads that never
    take SQLite's write lock) and the driver's (`driver_unit_of_work`, for the hot paths'
    repositories; `autocommit_driver` for a unit of work that is one statement). Either may be
    pinned: `pinned` keeps one connection for a loop of units of work, `pinned_driver` one
    DBAPI connection for a writer that runs one unit at a time.
    """

    def __init__(self, engine: Engine,
                 session_factory: Callable[[], Session] | None = None, *,
                 read_session_factory: Callable[[], Session] | None = None,
                 pinned_to: Connection | None = None):
        self.engine = engine
        # Connections of units of work: on SQLite they begin IMMEDIATE (the write lock).
        self._writer = engine.execution_options(**{UNIT_OF_WORK_OPTION: True})
        self.session_factory = session_factory or sessionmaker(self._writer,
                                                               expire_on_commit=False)
        # Without the unit-of-work option: SQLite begins deferred, so reads never wait for
        # (or take) the write lock.
        self.read_session_factory = read_session_factory or sessionmaker(
            engine, expire_on_commit=False)
        self._pinned_to = pinned_to  # the connection of `pinned`, idle between units of work

    @classmethod
    def from_url(cls, url: str, *, connect_timeout_s: float = 2.0) -> Database:
        return cls(create_db_engine(url, connect_timeout_s=connect_timeout_s))

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back when it raises."""
        with _committed_at_the_end(self.session_factory()) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reading only: a deferred transaction that never takes SQLite's write
        lock (it reads the last committed snapshot while another connection writes). Flushing
        a change through it raises ReadOnlySessionError."""
        session = self.read_session_factory()
        session.info[READ_ONLY_KEY] = True
        # Ending a transaction that wrote nothing costs the same either way; committing keeps
        # what units of work nested on a shared connection (a test's) did meanwhile.
        with _committed_at_the_end(session):
            yield session

    @contextmanager
    def pinned(self) -> Iterator[Database]:
        """This database with every unit of work on one pooled connection, checked out once.

        For loops of many short transactions (a queue drain), which otherwise pay a pool
        checkout and, on PostgreSQL, a pre-ping round trip for each. Units of work behave as
        usual: a failed one rolls back, and a connection found broken is replaced when the
        next one starts. For one thread only.
        """
        factory = self.session_factory
        with self._writer.connect() as connection:
            # The same factory with another bind: a new sessionmaker would make a new Session
            # subclass, whose event dispatch SQLAlchemy builds again (~0.3 ms per drain).
            bound = functools.partial(factory, bind=connection)
            yield Database(self.engine, bound, read_session_factory=bound,
                           pinned_to=connection)

    @contextmanager
    def driver_unit_of_work(self) -> Iterator[DriverConnection]:
        """A unit of work on a DBAPI connection (see tradeloop.driver): commits when the block
        ends, rolls back when it raises."""
        with self._driver() as driver, driver.transaction():
            yield driver

    @contextmanager
    def autocommit_driver(self) -> Iterator[DriverConnection]:
        """A DBAPI connection on which each statement commits on its own (DriverConnection.
        autocommit): for a unit of work that is one statement (a queue claim)."""
        with self._driver() as driver, driver.autocommit():
            yield driver

    def pinned_driver(self) -> PinnedDriver:
        """Driver units of work that keep one DBAPI connection between them (PinnedDriver)."""
        return PinnedDriver(self.engine)

    @contextmanager
    def _driver(self) -> Iterator[DriverConnection]:
        """The pinned connection's DBAPI connection, else a pooled one's."""
        if self._pinned_to is not None:
            yield DriverConnection(self._pinned_to.connection.dbapi_connection,
                                   self._pinned_to.dialect)
        else:
            with _pooled_driver(self.engine) as driver:
                yield driver

    def ping(self) -> None:
        """Run a trivial query; raises when the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _committed_at_the_end(session: Session) -> Iterator[Session]:
    """The session, committed when the block ends, rolled back when it raises, then closed."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def _pooled_driver(engine: Engine) -> Iterator[DriverConnection]:
    """A pooled connection's DBAPI connection, given back to the pool at the end."""
    pooled = engine.raw_connection()
    try:
        yield DriverConnection(pooled.dbapi_connection, engine.dialect)
    finally:
        pooled.close()


class PinnedDriver:
    """Driver units of work (`Database.driver_unit_of_work`) that keep one DBAPI connection
    between them: no pool checkout, and on PostgreSQL no pre-ping round trip, per unit. For a
    writer that runs one unit at a time (the webhook intake). A unit that fails gives its
    connection back, and the next one checks out another."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._pooled: Any = None

    @contextmanager
    def unit_of_work(self) -> Iterator[DriverConnection]:
        """A driver unit of work on the kept connection (checked out if there is none)."""
        if self._pooled is None:
            self._pooled = self._engine.raw_connection()
        try:
            with DriverConnection(self._pooled.dbapi_connection,
                                  self._engine.dialect).transaction() as connection:
                yield connection
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Give the kept connection back."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            with suppress(Exception):  # a broken connection: the pool invalidates it
                pooled.close()


def run_after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Call `callback` once the session's transaction commits; drop it on rollback.

    Background jobs go through this so a job never refers to a row that does not exist.
    """
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


@event.listens_for(Session, "before_flush")
def _refuse_writes_in_read_sessions(session: Session, *_: Any) -> None:
    if session.info.get(READ_ONLY_KEY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlySessionError(
            "this read session cannot write: open a unit of work (Database.unit_of_work, or "
            "WriteSessionDep in a GET handler) for requests that change rows")


@event.listens_for(Session, "after_commit")
def _run_after_commit_callbacks(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.pop(AFTER_COMMIT_KEY, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit_callbacks(session: Session) -> None:
    session.info.pop(AFTER_COMMIT_KEY, None)
