"""Statements that write many rows at once: one statement per shape, however many rows.

A write cycle of the background writer holds many runs; writing each row with its own
statements would cost a round trip apiece and, worse, building and binding SQLAlchemy
statements costs several times what the database spends on them. The statements here are
compiled once per shape (the columns they set, the conditions they check) and run through
the driver alone with the rows' values, one statement per table and shape:

- PostgreSQL: ``UPDATE t SET … FROM unnest(%(a)b::type[], …) AS tasker_rows(…) WHERE …`` —
  one array parameter per column, so the text is the same for any number of rows and the
  server prepares it once (psycopg prepares a statement run five times). The arrays are of
  the columns' types without their lengths (``_pg_array_of``), and sent in binary (``%b``):
  psycopg's text format searches every string element with a regular expression for what to
  quote, which cost a third of the writer's time on PostgreSQL (20,000 runs: 420,000
  searches); binary arrays are dumped about 2.5 times faster;
- MySQL/MariaDB: ``UPDATE t, (SELECT … UNION ALL SELECT …) AS tasker_rows SET … WHERE …``;
- SQLite: the one-row statement, run by ``executemany`` (SQLite is in the process: no round
  trips to save, only the per-statement work of SQLAlchemy).

Inserts are one multi-row INSERT (PostgreSQL: ``INSERT … SELECT FROM unnest(…)``; MySQL:
PyMySQL's ``executemany`` rewrites them into one ``INSERT … VALUES (…), (…)``).

Each UPDATE is built by a function from the per-row values (``src[name]``) to its WHERE
conditions and ordered SET list, with the store's own expressions, so a multi-row update
means exactly what the one-row update means for each of its rows. Constants stay bound
parameters as in the one-row statements (on PostgreSQL 100.0 stays a double precision
parameter: inlined, it would be NUMERIC and the percent arithmetic would change). SET lists
read a column only before any assignment to it, as the one-row statements do: then they mean
the same whether the assignments are evaluated left to right (MySQL's order for one table)
or all at once (PostgreSQL, SQLite). MySQL documents no order for a multi-table SET: the
tests compare every shape with its one-row statements (tests/integration/
test_batched_writes.py, on MariaDB).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Double, String, Uuid, bindparam, column, update
from sqlalchemy import table as light_table
from sqlalchemy.types import TypeEngine

from tasker.store.core import StoreCore
from tasker.store.schema import UTCDateTime
from tasker.validate import sent_size

__all__ = ["MultiRowWrites", "Source"]

# The name of the per-row values in a multi-row UPDATE (a table of the rows' values).
MARK = "tasker_rows"
# Rows and bytes of values per MySQL statement: its text holds every value, and must stay
# well within max_allowed_packet (16 MiB by default on MariaDB, 64 MiB on MySQL; PyMySQL's
# own executemany keeps to 1 MB).
_MYSQL_CHUNK = 500
_MYSQL_CHUNK_BYTES = 1 << 20
# Bytes per PostgreSQL statement. Its rows travel as array parameters, not in the text, but
# the server takes at most 1 GB in one message and in one array: a batch of long texts (each
# run's may hold up to that much, tasker.runtime.storable) is split well below it. The bound
# counts four bytes a character (UTF-8's most) and each value's length word and padding, so
# the usual batch is sized with one C-level sum per text column and sent whole.
_PG_CHUNK_BYTES = 256 << 20
_PG_VALUE_BYTES = 16


# What a row's value takes in the statement besides its text (quotes, a comma, a CAST of a
# time, a number's digits), and a row besides its values (SELECT, UNION ALL).
_VALUE_BYTES = 32
_ROW_BYTES = 16


def _chunks(rows: list[tuple[Any, ...]], limit: int) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in runs of at most _MYSQL_CHUNK rows and ``limit`` bytes of values as sent
    (a row that alone takes more goes alone: each call's texts are held to what the server
    takes in one statement, :mod:`tasker.runtime.storable`, and so is a row of one call)."""
    chunk: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        n = _ROW_BYTES
        for v in row:
            n += _VALUE_BYTES + (sent_size(v) if type(v) is str else 0)
        if chunk and (len(chunk) >= _MYSQL_CHUNK or size + n > limit):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += n
    if chunk:
        yield chunk


# The per-row values of a multi-row statement: (name, type) per position in a row.
Source = Sequence[tuple[str, TypeEngine[Any]]]
# (WHERE conditions, ordered SET list) of an UPDATE, from the per-row values by name.
Build = Callable[[Mapping[str, Any]], tuple[list[Any], list[tuple[Any, Any]]]]


def _utc(value: datetime) -> datetime:
    tz = value.tzinfo
    if tz is timezone.utc:
        return value
    return value.replace(tzinfo=timezone.utc) if tz is None else value.astimezone(timezone.utc)


def _converter(type_: TypeEngine[Any], dialect: Any) -> Callable[[Any], Any] | None:
    """How a value of ``type_`` goes to the driver, where SQLAlchemy's processing (skipped
    here: it is the per-row cost this module avoids) would change it: as
    ``UTCDateTime.process_bind_param`` does for times (``tests/integration`` checks they
    agree), float() for doubles on PostgreSQL (psycopg refuses an array of ints and floats
    mixed; the column stores either as that double)."""
    if isinstance(type_, UTCDateTime):
        name = dialect.name
        if name == "sqlite":
            return lambda v: None if v is None else _utc(v).isoformat(" ", "microseconds")[:26]
        if name == "postgresql":
            return lambda v: None if v is None else _utc(v)
        return lambda v: None if v is None else _utc(v).replace(tzinfo=None)
    if isinstance(type_, Double) and dialect.name == "postgresql":
        return lambda v: float(v) if type(v) is int else v
    return None


def _pg_array_of(type_: TypeEngine[Any], dialect: Any) -> str:
    """The array type a PostgreSQL statement casts a column's values to: the column's type
    without its length. An explicit cast to varchar(n) cuts a longer text without a word,
    where the column's own assignment refuses it, as the one-row statements' does."""
    name = type_.compile(dialect=dialect)
    return f"{_LENGTH.sub('', name)}[]"


_LENGTH = re.compile(r"\(\d+\)$")


def _convert_once(row: Any, converters: Sequence[tuple[Any, Any]], seen: dict[int, Any]) -> None:
    """Convert ``row``'s values at the converters' keys in place, each object only once
    across the rows that share ``seen`` (by id: the rows keep every object alive)."""
    for key, conv in converters:
        v = row[key]
        done = seen.get(id(v), seen)
        if done is seen:
            done = seen[id(v)] = conv(v)
        row[key] = done


class _Rows:
    """Turns rows of values into what the driver takes: converted, in position order."""

    def __init__(self, source: Source, dialect: Any) -> None:
        self.width = len(source)
        # The positions holding text (or None): what may make a PostgreSQL batch long.
        self.texts = [i for i, (_, type_) in enumerate(source) if isinstance(type_, String | Uuid)]
        self.converters = [
            (i, conv)
            for i, (_, type_) in enumerate(source)
            if (conv := _converter(type_, dialect)) is not None
        ]

    def convert(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not self.converters:
            return rows if isinstance(rows, list) else list(rows)
        # A row holds the same time in several columns (a run's end is its last update and
        # its last heartbeat), and a batch the same few objects many times: each is
        # converted once. (By id: every object stays alive in the rows meanwhile.)
        seen: dict[int, Any] = {}
        out = []
        for row in rows:
            values = list(row)
            _convert_once(values, self.converters, seen)
            out.append(tuple(values))
        return out

    def columns(self, rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        """The rows' values column by column (PostgreSQL's array parameters)."""
        if self.converters:
            rows = self.convert(rows)
        if not rows:
            return [[] for _ in range(self.width)]
        return [list(c) for c in zip(*rows, strict=True)]

    def column_parts(
        self, rows: Sequence[tuple[Any, ...]], converted: bool = False
    ) -> Iterator[list[list[Any]]]:
        """The rows' values column by column, in as many parts as keep each statement under
        ``_PG_CHUNK_BYTES`` (one part but for batches of very long texts; a row that alone
        takes more goes alone, as the budget of its texts allows)."""
        cols = [list(c) for c in zip(*rows, strict=True)] if converted else self.columns(rows)
        n = len(cols[0]) if cols else 0
        bound = n * self.width * _PG_VALUE_BYTES
        bound += 4 * sum(sum(map(len, filter(None, cols[i]))) for i in self.texts)
        if bound <= _PG_CHUNK_BYTES:
            yield cols
            return
        start, size = 0, 0
        for at in range(n):
            row = self.width * _PG_VALUE_BYTES + 4 * sum(len(cols[i][at] or "") for i in self.texts)
            if at > start and size + row > _PG_CHUNK_BYTES:
                yield [c[start:at] for c in cols]
                start, size = at, 0
            size += row
        yield [c[start:] for c in cols]


class _SqliteUpdate:
    """The one-row UPDATE, run by executemany."""

    def __init__(
        self,
        sql: str,
        pick: Callable[[tuple[Any, ...]], Any],
        consts: tuple[Any, ...],
        rows: _Rows,
        single: bool,
    ) -> None:
        self.sql, self.pick, self.consts, self.rows, self.single = sql, pick, consts, rows, single

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        consts, pick = self.consts, self.pick
        if self.single:
            params = [(pick(row + consts),) for row in self.rows.convert(rows)]
        else:
            params = [pick(row + consts) for row in self.rows.convert(rows)]
        return int(conn.exec_driver_sql(self.sql, params).rowcount)


class _PgUpdate:
    """UPDATE … FROM unnest(arrays): one statement, one array parameter per column."""

    def __init__(self, sql: str, consts: dict[str, Any], names: list[str], rows: _Rows) -> None:
        self.sql, self.consts, self.names, self.rows = sql, consts, names, rows

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        matched = 0
        for cols in self.rows.column_parts(rows):
            params = dict(self.consts)
            params.update(zip(self.names, cols, strict=True))
            matched += int(conn.exec_driver_sql(self.sql, params).rowcount)
        return matched


class _MysqlUpdate:
    """UPDATE t, (SELECT … UNION ALL SELECT …) AS tasker_rows SET …: the rows in the text,
    as positional (``%s``) or named (``%(name)s``) parameters, as the dialect compiled the
    statement's own."""

    def __init__(
        self,
        head: str,
        names: list[str],
        casts: list[str | None],
        tail: str,
        consts: tuple[Any, ...] | dict[str, Any],
        rows: _Rows,
    ) -> None:
        self.head, self.names, self.tail, self.consts, self.rows = head, names, tail, consts, rows
        self.casts = casts
        self._sql: dict[int, str] = {}  # by number of rows

    def _text(self, n: int) -> str:
        sql = self._sql.get(n)
        if sql is None:
            named = isinstance(self.consts, dict)
            width = len(self.names)

            def mark(i: int, j: int) -> str:
                placeholder = f"%({MARK}_{i}_{j})s" if named else "%s"
                cast = self.casts[j]
                # A time is text in the statement: compared as text, not as a time, unless
                # cast (the latest-run pointer compares start times).
                return placeholder if cast is None else f"CAST({placeholder} AS {cast})"

            selects = [
                "SELECT "
                + ", ".join(f"{mark(0, j)} AS {name}" for j, name in enumerate(self.names))
            ]
            selects += [
                "SELECT " + ", ".join(mark(i, j) for j in range(width)) for i in range(1, n)
            ]
            sql = f"{self.head}, ({' UNION ALL '.join(selects)}) AS {MARK} SET {self.tail}"
            self._sql[n] = sql
        return sql

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]], limit: int) -> int:
        matched = 0
        for chunk in _chunks(self.rows.convert(rows), limit):
            params: Any
            if isinstance(self.consts, dict):
                params = dict(self.consts)
                for i, row in enumerate(chunk):
                    params.update((f"{MARK}_{i}_{j}", v) for j, v in enumerate(row))
            else:
                params = tuple(v for row in chunk for v in row) + self.consts
            matched += int(conn.exec_driver_sql(self._text(len(chunk)), params).rowcount)
        return matched


class _Insert:
    """One multi-row INSERT (optionally an upsert) of rows with the same columns."""

    def __init__(self, sql: str, rows: _Rows, arrays: bool) -> None:
        self.sql, self.rows, self.arrays = sql, rows, arrays

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if self.arrays:
            for cols in self.rows.column_parts(rows):
                conn.exec_driver_sql(self.sql, tuple(cols))
        else:
            conn.exec_driver_sql(self.sql, self.rows.convert(rows))

    def run_converted(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``run`` for rows whose values are what the driver takes already."""
        if self.arrays:
            for cols in self.rows.column_parts(rows, converted=True):
                conn.exec_driver_sql(self.sql, tuple(cols))
        else:
            conn.exec_driver_sql(self.sql, rows)


class MultiRowWrites(StoreCore):
    """Multi-row UPDATEs and INSERTs, prepared once per shape (see the module)."""

    def _update_rows(
        self,
        conn: Connection,
        shape: Hashable,
        table: Any,
        source: Source,
        build: Build,
        rows: Sequence[tuple[Any, ...]],
    ) -> int:
        """For each row of ``rows`` (values in ``source`` order), UPDATE ``table`` as
        ``build`` says, all in one statement; returns how many rows of ``table`` matched.
        Without rows, only prepares the statement."""
        key = ("rows", shape)
        prepared = self._stmts.get(key)
        if prepared is None:
            prepared = self._prepare_update(table, source, build)
            self._stmts[key] = prepared
        if not rows:
            return 0
        if self.dialect == "mysql":
            # The rows are in the statement's text: at most what the server takes in one.
            limit = min(_MYSQL_CHUNK_BYTES, self.text_budget().size)
            return int(prepared.run(conn, rows, limit))
        return int(prepared.run(conn, rows))

    def _prepare_update(self, table: Any, source: Source, build: Build) -> Any:
        if self.dialect == "sqlite":
            return self._prepare_sqlite_update(table, source, build)
        values = light_table(MARK, *[column(name, type_) for name, type_ in source])
        where, sets = build(values.c)  # type: ignore[arg-type]
        compiled = (
            update(table)
            .where(*where)
            .ordered_values(*sets)
            .compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        )
        if self.dialect == "postgresql":
            return self._pg_update(compiled, source)
        return self._mysql_update(compiled, source)

    def _prepare_sqlite_update(self, table: Any, source: Source, build: Build) -> _SqliteUpdate:
        dialect = self.engine.dialect
        # Placeholders for the rows' values (their None is never sent: executemany binds each
        # row's own).
        src = {
            name: bindparam(f"{MARK}_{i}", None, type_=type_, required=False)
            for i, (name, type_) in enumerate(source)
        }
        where, sets = build(src)
        compiled = (
            update(table)
            .where(*where)
            .ordered_values(*sets)
            .compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        )
        # Each ? takes a row's value or one of the statement's constants: rows are extended
        # with the constants and picked from in the order of the ?s.
        width = len(source)
        names = list(compiled.positiontup or [])
        consts = tuple(compiled.params[n] for n in names if not n.startswith(MARK))
        positions, k = [], 0
        for n in names:
            if n.startswith(MARK):
                positions.append(int(n[len(MARK) + 1 :]))
            else:
                positions.append(width + k)
                k += 1
        pick = operator.itemgetter(*positions)
        rows = _Rows(source, dialect)
        return _SqliteUpdate(compiled.string, pick, consts, rows, len(positions) == 1)

    def _pg_update(self, compiled: Any, source: Source) -> _PgUpdate:
        """UPDATE t SET … FROM tasker_rows … → … FROM unnest(%(a)b::type[], …) AS tasker_rows"""
        dialect = self.engine.dialect
        quote = dialect.identifier_preparer.quote
        sql: str = compiled.string
        arrays = ", ".join(
            f"%({MARK}_{i})b::{_pg_array_of(type_, dialect)}" for i, (_, type_) in enumerate(source)
        )
        names = ", ".join(quote(name) for name, _ in source)
        marker = f" FROM {MARK} "
        if compiled.positional or sql.count(marker) != 1:
            raise AssertionError(f"unexpected multi-row UPDATE: {sql}")
        sql = sql.replace(marker, f" FROM unnest({arrays}) AS {MARK}({names}) ")
        arrays_names = [f"{MARK}_{i}" for i in range(len(source))]
        return _PgUpdate(sql, dict(compiled.params), arrays_names, _Rows(source, dialect))

    def _mysql_update(self, compiled: Any, source: Source) -> _MysqlUpdate:
        """UPDATE t, tasker_rows SET … → UPDATE t, (SELECT … UNION ALL …) AS tasker_rows SET …"""
        dialect = self.engine.dialect
        quote = dialect.identifier_preparer.quote
        sql: str = compiled.string
        marker = f", {MARK} SET "
        if sql.count(marker) != 1:
            raise AssertionError(f"unexpected multi-row UPDATE: {sql}")
        head, tail = sql.split(marker)
        consts: tuple[Any, ...] | dict[str, Any]
        if compiled.positional:  # the rows' values come first: they are in the FROM list
            consts = tuple(compiled.params[n] for n in compiled.positiontup or [])
        else:
            consts = dict(compiled.params)
        casts = [
            type_.compile(dialect=dialect) if isinstance(type_, UTCDateTime) else None
            for _, type_ in source
        ]
        names = [quote(name) for name, _ in source]
        return _MysqlUpdate(head, names, casts, tail, consts, _Rows(source, dialect))

    def _insert_rows(
        self,
        conn: Connection,
        table: Any,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        conflict: Sequence[str] | None = None,
    ) -> None:
        """INSERT ``rows`` (values in ``columns`` order) into ``table`` in one statement.
        With ``conflict`` (the columns of a unique key), a row whose key is taken already
        replaces that row's other columns instead (an upsert)."""
        if rows:
            self._insert_statement(table, columns, conflict).run(conn, rows)

    def _insert_dicts(
        self, conn: Connection, table: Any, columns: Sequence[str], rows: list[dict[str, Any]]
    ) -> None:
        """INSERT ``rows``, each a dict holding (at least) ``columns``, in one statement. The
        dicts are the caller's to drop: their values are converted for the driver in place
        (cheaper than building the rows twice), each object once (see ``_Rows.convert``)."""
        if not rows:
            return
        prepared = self._insert_statement(table, columns, None)
        converters = [(columns[i], conv) for i, conv in prepared.rows.converters]
        seen: dict[int, Any] = {}
        for row in rows:
            _convert_once(row, converters, seen)
        pick = operator.itemgetter(*columns)
        prepared.run_converted(conn, [pick(row) for row in rows])

    def _insert_statement(
        self, table: Any, columns: Sequence[str], conflict: Sequence[str] | None
    ) -> _Insert:
        key = ("insert rows", table.name, tuple(columns), tuple(conflict or ()))
        prepared = self._stmts.get(key)
        if prepared is None:
            prepared = self._prepare_insert(table, columns, conflict)
            self._stmts[key] = prepared
        return prepared

    def _prepare_insert(
        self, table: Any, columns: Sequence[str], conflict: Sequence[str] | None
    ) -> _Insert:
        dialect = self.engine.dialect
        prep = dialect.identifier_preparer
        source = [(c, table.c[c].type) for c in columns]
        rows = _Rows(source, dialect)
        names = ", ".join(prep.quote(c) for c in columns)
        target = f"INSERT INTO {prep.format_table(table)} ({names}) "
        others = [c for c in columns if c not in (conflict or ())]
        if self.dialect == "postgresql":
            arrays = ", ".join(f"%b::{_pg_array_of(t, dialect)}" for _, t in source)
            # Only the schema's names and types are in the text; the values are parameters.
            sql = target + f"SELECT * FROM unnest({arrays})"  # noqa: S608
            arrays_param = True
        else:
            mark = "?" if self.dialect == "sqlite" else "%s"
            sql = target + "VALUES (" + ", ".join(mark for _ in columns) + ")"
            arrays_param = False
        if conflict:
            keys = ", ".join(prep.quote(c) for c in conflict)
            if self.dialect == "mysql":
                sets = ", ".join(f"{prep.quote(c)} = VALUES({prep.quote(c)})" for c in others)
                sql += f" ON DUPLICATE KEY UPDATE {sets}"
            else:
                sets = ", ".join(f"{prep.quote(c)} = excluded.{prep.quote(c)}" for c in others)
                sql += f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"
        return _Insert(sql, rows, arrays_param)
