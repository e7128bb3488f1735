"""SQLAlchemy Core statements run on the DBAPI connection itself, for the hot paths.

SQLAlchemy's execution layer (events, parameter objects, result wrapping) costs ~50-100 µs a
statement on a small machine, more than a short INSERT or an indexed SELECT takes in SQLite,
and its unit of work as much again for BEGIN and COMMIT. Where a request's latency is a few
such statements (the webhook intake), they run here instead: each statement is still built
with Core and compiled by the dialect (once per statement, dialect and column set), and every
value still goes through its column type's own bind and result processors, so rows are stored
and read exactly as SQLAlchemy would store and read them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


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

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None,
             ) -> list[tuple[Any, ...]]:
        """The rows a SELECT returns, each value through its column type's result processor."""
        entry = _compile(statement, self.dialect)
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(*_driver_call(entry, self.dialect, params or {}))
            fetched = cursor.fetchall()
            # The driver's type codes pick the processors, as SQLAlchemy's results do.
            results = _result_processors(statement, self.dialect,
                                         tuple(column[1] for column in cursor.description))
        finally:
            cursor.close()
        if not any(results):
            return [tuple(row) for row in fetched]
        return [tuple(value if process is None else process(value)
                      for process, value in zip(results, row, strict=True))
                for row in fetched]

    def execute_many(self, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a DML statement once per row (every row with the same keys); the row count."""
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

    def insert(self, table: Table, row: Mapping[str, Any]) -> None:
        """INSERT one row of `table` (only the columns `row` names)."""
        self.execute_many(_plain_insert(table), [row])

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


@functools.cache
def _plain_insert(table: Table) -> Insert:
    return insert(table)


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


@functools.lru_cache(maxsize=256)
def _result_processors(statement: Executable, dialect: Dialect,
                       type_codes: tuple[Any, ...]) -> tuple[Processor | None, ...]:
    columns = getattr(statement, "selected_columns", ())
    return tuple(column.type.dialect_impl(dialect).result_processor(dialect, type_code)
                 for column, type_code in zip(columns, type_codes, strict=True))
