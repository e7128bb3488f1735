"""SQLAlchemy Core statements run on the DBAPI connection itself, for the hot paths.

SQLAlchemy's execution layer (events, parameter objects, result wrapping) costs ~50-100 µs a
statement on a small machine, more than a short INSERT or an indexed SELECT takes in SQLite,
and its unit of work as much again for BEGIN and COMMIT. Where latency is a few such
statements per request or per signal (the webhook intake, signal processing), they run here
instead: each statement is still built with Core and compiled by the dialect (once per
statement, dialect and column set), and every value still goes through its column type's own
bind and result processors, so rows are stored and read exactly as SQLAlchemy would store and
read them.
"""

from __future__ import annotations

import functools
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Self

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]


class StatementBuiltPerCallError(TypeError):
    """A driver statement was built inside a function: it must be a module-level constant."""


class Statement:
    """A Core statement the driver runs: built once, at import, as a module-level constant.

    Compiled forms and result processors are cached by the statement's identity; a statement
    built per call would miss every cache, pay SQLAlchemy's compilation each time (~1 ms for
    the queue claim) and grow the caches until they evict the hot path's entries. So building
    one anywhere but at a module's top level raises StatementBuiltPerCallError, and the
    driver runs nothing else.
    """

    __slots__ = ("core", "origin")

    def __init__(self, core: Executable):
        caller = sys._getframe(1)
        if caller.f_code.co_name != "<module>":
            raise StatementBuiltPerCallError(
                f"driver statements are module-level constants; one was built in "
                f"{caller.f_code.co_name}() ({caller.f_code.co_filename}:{caller.f_lineno})")
        self.core = core
        self.origin = f"{caller.f_globals.get('__name__')}:{caller.f_lineno}"

    def __repr__(self) -> str:
        return f"Statement({self.origin})"


@dataclass(frozen=True)
class _Compiled:
    compiled: SQLCompiler
    binds: dict[str, Processor]  # bind processors by parameter name
    expanding: bool


class DriverConnection:
    """A DBAPI connection and its SQLAlchemy dialect. Statements run in whatever transaction
    the connection is in; `transaction` opens one on a connection nobody else is using."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect):
        self.dbapi = dbapi_connection
        self.dialect = dialect

    @classmethod
    def of_session(cls, session: Session) -> DriverConnection:
        """The session's connection, in the session's transaction (begun if it was not)."""
        connection = session.connection()
        return cls(connection.connection.dbapi_connection, connection.dialect)

    def rows(self, query: Statement, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The rows a SELECT (or a DML statement with RETURNING) returns, as named tuples,
        each value through its column type's result processor."""
        statement, params = _core(query), params or {}
        entry = _compile(statement, self.dialect, _column_keys(statement, params))
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(*_driver_call(entry, self.dialect, params))
            fetched = cursor.fetchall()
            results = _result_processors(statement, self.dialect, cursor)
        finally:
            cursor.close()
        make = _row_type(statement)._make
        if not any(results):
            return [make(row) for row in fetched]
        return [make(value if process is None else process(value)
                     for process, value in zip(results, row, strict=True))
                for row in fetched]

    def execute(self, query: Statement, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement whose result nobody reads (an INSERT, an UPDATE): inside
        `pipeline` it is sent without waiting for the server."""
        statement, params = _core(query), params or {}
        entry = _compile(statement, self.dialect, _column_keys(statement, params))
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(*_driver_call(entry, self.dialect, params))
        finally:
            cursor.close()

    def execute_many(self, query: Statement, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a DML statement once per row (every row with the same keys); the row count."""
        statement = _core(query)
        entry = _compile(statement, self.dialect, tuple(rows[0]))
        names, positional = entry.compiled.positiontup, entry.compiled.positional
        processed = [_processed(entry.binds, row) for row in rows]
        parameters = ([tuple(row[name] for name in names or ()) for row in processed]
                      if positional else processed)
        cursor = self.dbapi.cursor()
        try:
            cursor.executemany(entry.compiled.string, parameters)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    @contextmanager
    def autocommit(self) -> Iterator[DriverConnection]:
        """Each statement of the block commits on its own, without BEGIN and COMMIT: a single
        statement is atomic anyway, and on PostgreSQL those are two round trips more. For a
        connection outside any transaction. (SQLite connections of tradeloop's engines run
        without pysqlite's implicit transactions, so there this is already the case.)"""
        if self.dialect.name != "postgresql":
            yield self
            return
        self.dbapi.autocommit = True
        try:
            yield self
        finally:
            self.dbapi.autocommit = False

    @contextmanager
    def pipeline(self) -> Iterator[DriverConnection]:
        """On PostgreSQL (psycopg's pipeline mode), the block's statements go to the server
        without a round trip each: `rows` waits for what was sent before it, and the end of
        the block for the rest, raising the first error. Elsewhere statements run as usual."""
        start = getattr(self.dbapi, "pipeline", None)
        with start() if start is not None else nullcontext():
            yield self

    @contextmanager
    def transaction(self) -> Iterator[DriverConnection]:
        """BEGIN (IMMEDIATE on SQLite: the write lock up front, as every unit of work takes
        it), then COMMIT, or ROLLBACK when the block raises."""
        if self.dialect.name == "sqlite":
            self.dbapi.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            # The block's error is the one to report; a connection that cannot even roll
            # back is discarded by its owner.
            with suppress(Exception):
                self.dbapi.rollback()
            raise
        self.dbapi.commit()


def _core(query: Statement) -> Executable:
    if not isinstance(query, Statement):
        raise StatementBuiltPerCallError(
            f"the driver runs Statement constants only, not {type(query).__name__}: wrap the "
            "Core statement in Statement(...) at module level")
    return query.core


def _processed(binds: Mapping[str, Processor], row: Mapping[str, Any]) -> dict[str, Any]:
    # As SQLAlchemy does: every value, None included, goes through its processor.
    return {name: value if (process := binds.get(name)) is None else process(value)
            for name, value in row.items()}


def _driver_call(entry: _Compiled, dialect: Dialect,
                 params: Mapping[str, Any]) -> tuple[str, Any]:
    """The driver's SQL and parameters; IN lists expanded to as many placeholders as values."""
    compiled = entry.compiled
    if entry.expanding:
        state = compiled.construct_expanded_state(params)
        sql, names, values = state.statement, state.positiontup, state.parameters
        expansion = state.parameter_expansion
        binds = {**entry.binds, **{expanded: entry.binds[name]
                                   for name, expanded_names in expansion.items()
                                   if name in entry.binds for expanded in expanded_names}}
    else:
        # construct_params: with the values the statement carries itself (a LIMIT).
        sql, names, binds = compiled.string, compiled.positiontup, entry.binds
        values = compiled.construct_params(params)
    processed = _processed(binds, values)
    if compiled.positional:
        return sql, tuple(processed[name] for name in names or ())
    return sql, processed


def _column_keys(statement: Executable, params: Mapping[str, Any]) -> tuple[str, ...] | None:
    # An INSERT or UPDATE sets the columns its parameters name, as Connection.execute does.
    return tuple(params) if isinstance(statement, UpdateBase) else None


@functools.lru_cache(maxsize=256)
def _compile(statement: Executable, dialect: Dialect,
             column_keys: tuple[str, ...] | None = None) -> _Compiled:
    compiled = statement.compile(dialect=dialect,
                                 column_keys=list(column_keys) if column_keys else None)
    assert isinstance(compiled, SQLCompiler)  # Core statements compile to SQL
    binds = {name: process for name, bind in compiled.binds.items()
             if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))}
    expanding = any(bind.expanding for bind in compiled.binds.values())
    return _Compiled(compiled, binds, expanding)


def _result_processors(statement: Executable, dialect: Dialect,
                       cursor: Any) -> tuple[Processor | None, ...]:
    """The columns' result processors, picked by the driver's type codes as SQLAlchemy's
    results do; a statement's type codes do not change, so its cursor's description (which
    psycopg builds anew at each access) is read only the first time."""
    key = (statement, dialect)
    processors = _RESULT_PROCESSORS.get(key)
    if processors is None:
        columns = _columns(statement)
        if cursor.description is None:  # nothing to process (a driver without a description)
            return (None,) * len(columns)
        type_codes = tuple(column[1] for column in cursor.description)
        processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, type_code)
            for column, type_code in zip(columns, type_codes, strict=True))
        if len(_RESULT_PROCESSORS) < 512:
            _RESULT_PROCESSORS[key] = processors
    return processors


_RESULT_PROCESSORS: dict[tuple[Executable, Dialect], tuple[Processor | None, ...]] = {}


def _columns(statement: Executable) -> Sequence[Any]:
    # A SELECT's columns, or a DML statement's RETURNING columns.
    return list(getattr(statement, "exported_columns", ()))


@functools.lru_cache(maxsize=256)
def _row_type(statement: Executable) -> Any:
    """Rows as named tuples: unpacked like tuples, read by column name like SQLAlchemy's."""
    return namedtuple("Row", [column.key for column in _columns(statement)],  # type: ignore[misc]
                      rename=True)


class DriverRepository:
    """Base of the repositories of the hot paths: their statements run on one driver
    connection, in whatever transaction it is in."""

    def __init__(self, connection: DriverConnection):
        self._connection = connection

    @classmethod
    def of_session(cls, session: Session) -> Self:
        """On the session's connection, in its transaction (begun if it was not)."""
        return cls(DriverConnection.of_session(session))
