"""SQL in an answer: it parses, it only reads, and it touches allowed tables only.

The SQL is taken from ``field`` when given, else from a ```` ```sql ```` block,
else the whole text. ``sqlglot`` parses it in the configured dialect. Read-only
means every statement is a query (``SELECT``, set operations, ``WITH``) with no
write anywhere inside it (a data-modifying CTE, ``SELECT ... INTO``), and one
statement unless ``statements`` allows more (stacked queries are an injection
classic). Names defined by the query's own CTEs are not tables.
"""

from __future__ import annotations

import re
from typing import Iterator, Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, excerpt
from unwalled.contracts.verdict import Violation

SQL_FENCE = re.compile(r"```[ \t]*(?:sql|postgres|postgresql|mysql|sqlite)[^\n]*\n"
                       r"(?P<body>.*?)(?:```|\Z)", re.S | re.I)
WRITES = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable",
          "Command", "Into", "Grant", "Revoke", "Copy", "LoadData", "Set", "Use",
          "Transaction", "Commit", "Rollback", "Pragma", "Analyze")


class SqlOptions(Options):
    kind: Literal["sql"] = "sql"
    dialect: str = "postgres"
    read_only: bool = True
    tables: list[str] | None = None
    """Allowed tables (``name`` or ``schema.name``, any case). None: any table."""
    statements: int = Field(1, ge=1)
    """How many statements one answer may hold."""


class SqlCheck(Check):
    kind = "sql"
    options: SqlOptions

    def __init__(self, options: SqlOptions) -> None:
        super().__init__(options)
        from sqlglot import Dialect, exp

        try:
            self.dialect = Dialect.get_or_raise(options.dialect)
        except ValueError as exc:
            raise ValueError(f"unknown SQL dialect {options.dialect!r}: {exc}") from None
        self.exp = exp
        self.writes = tuple(getattr(exp, name) for name in WRITES if hasattr(exp, name))
        # Node kinds by their ``key``: a set lookup per node while walking the tree
        # costs far less than isinstance against twenty classes.
        self.write_keys = frozenset(cls.key for cls in self.writes)
        self.tables = None if options.tables is None else \
            frozenset(t.lower() for t in options.tables)

    def texts(self, answer: Answer) -> Iterator[tuple[str, str]]:
        if self.options.field is not None:
            yield from super().texts(answer)
            return
        fenced = SQL_FENCE.search(answer.text)
        yield ("text (sql block)", fenced.group("body")) if fenced else \
            ("text", answer.text)

    def run(self, answer: Answer) -> list[Violation]:
        import sqlglot
        from sqlglot.errors import ParseError, TokenError

        found: list[Violation] = []
        for path, text in self.texts(answer):
            try:
                statements = [s for s in sqlglot.parse(text, read=self.dialect)
                              if s is not None]
            except (ParseError, TokenError) as exc:
                message = str(exc).splitlines()[0]
                found.append(self.violation(path, f"is not valid "
                                                  f"{self.options.dialect} SQL: {message}"))
                continue
            found.extend(self._judge(path, statements))
        return found

    def _judge(self, path: str, statements: list) -> list[Violation]:
        found: list[Violation] = []
        if not statements:
            return [self.violation(path, "holds no SQL statement")]
        if len(statements) > self.options.statements:
            found.append(self.violation(
                path, f"holds {len(statements)} statements; at most "
                      f"{self.options.statements} allowed"))
        for number, statement in enumerate(statements, start=1):
            where = f"{path} statement {number}"
            if not isinstance(statement, (self.exp.Query, *self.writes)):
                found.append(self.violation(
                    where, f"is not valid {self.options.dialect} SQL: it reads as a "
                           f"bare {statement.key} expression, not a statement"))
                continue
            found.extend(self._statement(where, statement))
        return found

    def _statement(self, where: str, statement) -> list[Violation]:
        """Read-only and table rules, from one walk over the statement's tree."""
        exp = self.exp
        found: list[Violation] = []
        writes, tables, own = [], [], set()
        write_keys = self.write_keys
        for node in statement.walk():
            key = node.key
            if key in write_keys:
                writes.append(node)
            elif key == "table":
                tables.append(node)
            elif key == "cte":
                own.add(node.alias_or_name.lower())
        if self.options.read_only:
            if not isinstance(statement, exp.Query):
                return [self.violation(where, f"is a {statement.key.upper()} statement; "
                                              "only read-only queries (SELECT) are "
                                              "allowed")] + self._tables(where, tables, own)
            found.extend(self.violation(where, f"contains a write ({node.key.upper()}: "
                                               f"{excerpt(node.sql())}); only reads are "
                                               "allowed") for node in writes)
        return found + self._tables(where, tables, own)

    def _tables(self, where: str, tables: list, own: set[str]) -> list[Violation]:
        if self.tables is None:
            return []
        found = []
        for table in tables:
            name = table.name.lower()
            qualified = f"{table.db.lower()}.{name}" if table.db else name
            if not name or name in own:
                continue
            if name not in self.tables and qualified not in self.tables:
                allowed = ", ".join(sorted(self.tables)) or "none"
                found.append(self.violation(where, f"reads table {qualified!r}, which is "
                                                   f"not on the allow-list ({allowed})"))
        return found


def build(options: SqlOptions) -> SqlCheck:
    return SqlCheck(options)
