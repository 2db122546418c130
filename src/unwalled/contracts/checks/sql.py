"""SQL in an answer: it parses, it only reads, and it touches allowed tables only.

The SQL is taken from ``field`` when given, else from a ```` ```sql ```` block,
else the whole text. ``sqlglot`` parses it in the configured dialect. Read-only
means every statement is a query (``SELECT``, set operations, ``WITH``) with no
write anywhere inside it (a data-modifying CTE, ``SELECT ... INTO``), and one
statement unless ``statements`` allows more (stacked queries are an injection
classic), no row locks (``FOR UPDATE``), and no call to a function that acts
rather than computes (``dblink_exec``, ``lo_export``, ``pg_terminate_backend``,
``set_config``, ``pg_sleep``...: PostgreSQL's ``pg_`` system functions are
refused as a family, but for a few that only compute). A name defined by a CTE is not a table where
that CTE is in scope; inside the CTE's own body (unless ``RECURSIVE``) the same
name is the real table. Every ```` ```sql ```` block of an answer is checked.
"""

from __future__ import annotations

import logging
import re
from typing import Iterator, Literal

from pydantic import Field

from unwalled.contracts.checks.base import Answer, Check, Options, excerpt
from unwalled.contracts.verdict import Violation

SQL_FENCE = re.compile(r"```[ \t]*(?:sql|postgres|postgresql|mysql|sqlite)[^\n]*\n"
                       r"(?P<body>.*?)(?:```|\Z)", re.S | re.I)
WRITES = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable",
          "Command", "Into", "Grant", "Revoke", "Copy", "LoadData", "Set", "Use",
          "Transaction", "Commit", "Rollback", "Pragma", "Analyze", "Lock")
ACTING_FUNCTIONS = frozenset({
    # PostgreSQL: other connections, files, server state, sequences, locks, time
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query",
    "lo_import", "lo_export", "lo_unlink", "lo_create", "lo_put", "lo_from_bytea",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_switch_wal", "pg_create_restore_point", "pg_logical_emit_message",
    "set_config", "nextval", "setval", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
    "pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock",
    "query_to_xml", "query_to_xml_and_xmlschema", "cursor_to_xml",
    # MySQL and SQLite
    "load_file", "sleep", "benchmark", "get_lock", "load_extension", "writefile",
    "readfile", "edit", "fts3_tokenizer",
})
"""Functions whose call changes something, reads the server's files, or stalls
it: no read-only query needs them."""
ACTING_PREFIXES = ("pg_", "dblink", "lo_", "txid_", "binary_upgrade_")
"""PostgreSQL's system functions, other connections, large objects: refused as
a family, since a list of the acting ones is never complete (``pg_notify``,
``pg_promote``, ``pg_drop_replication_slot``...), but for these that only
compute or describe:"""
COMPUTING_SYSTEM_FUNCTIONS = frozenset({
    "pg_typeof", "pg_column_size", "pg_size_pretty", "pg_size_bytes",
    "pg_relation_size", "pg_total_relation_size", "pg_table_size", "pg_indexes_size",
    "pg_database_size", "pg_client_encoding", "pg_encoding_to_char",
    "pg_input_is_valid", "pg_get_viewdef", "pg_get_constraintdef", "pg_get_indexdef",
    "pg_get_expr", "pg_get_userbyid", "pg_backend_pid", "pg_is_in_recovery",
    "pg_postmaster_start_time", "pg_conf_load_time", "pg_current_xact_id",
})


def acts(name: str) -> bool:
    """Whether a function, by its lower-case name, acts rather than computes."""
    if name in ACTING_FUNCTIONS:
        return True
    return name.startswith(ACTING_PREFIXES) and name not in COMPUTING_SYSTEM_FUNCTIONS


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
        # sqlglot warns about what it cannot render, quoting the SQL: an answer's
        # text has no place in the server's log.
        logging.getLogger("sqlglot").setLevel(logging.ERROR)
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
        blocks = [m.group("body") for m in SQL_FENCE.finditer(answer.text)]
        if not blocks:
            yield "text", answer.text
        for number, body in enumerate(blocks, start=1):
            yield ("text (sql block)" if len(blocks) == 1
                   else f"text (sql block {number})"), body

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
        writes, tables, acting = [], [], []
        write_keys = self.write_keys
        for node in statement.walk():
            key = node.key
            if key in write_keys:
                writes.append(node)
            elif key == "table":
                tables.append(node)
            elif isinstance(node, exp.Func) and acts(_function_name(node)):
                acting.append(node)
        if self.options.read_only:
            if not isinstance(statement, exp.Query):
                return [self.violation(where, f"is a {statement.key.upper()} statement; "
                                              "only read-only queries (SELECT) are "
                                              "allowed")] + self._tables(where, tables)
            found.extend(self.violation(where, f"contains a write ({node.key.upper()}: "
                                               f"{excerpt(node.sql(dialect=self.dialect))}"
                                               "); only reads are allowed")
                         for node in writes)
            found.extend(self.violation(
                where, f"calls {_function_name(node)}(), which acts on the server "
                       "rather than reading data; only reads are allowed")
                for node in acting)
        return found + self._tables(where, tables)

    def _tables(self, where: str, tables: list) -> list[Violation]:
        if self.tables is None:
            return []
        found = []
        for table in tables:
            name = table.name.lower()
            qualified = f"{table.db.lower()}.{name}" if table.db else name
            if not name or self._names_a_cte(table):
                continue
            if name not in self.tables and qualified not in self.tables:
                allowed = ", ".join(sorted(self.tables)) or "none"
                found.append(self.violation(where, f"reads table {qualified!r}, which is "
                                                   f"not on the allow-list ({allowed})"))
        return found


    def _names_a_cte(self, table) -> bool:
        """Whether this table reference means a CTE in scope where it stands:
        one of a WITH on the way up from it, but not the CTE whose own body
        holds it (a non-recursive CTE cannot see itself)."""
        if table.db:
            return False  # schema.name is a table, whatever the CTEs are called
        name = table.name.lower()
        above: list = []
        node = table.parent
        while node is not None:
            above.append(node)
            for value in node.args.values():
                if isinstance(value, self.exp.With) and _in_scope(value, name, above):
                    return True
            node = node.parent
        return False


def _in_scope(with_, name: str, above: list) -> bool:
    """Whether a CTE of this WITH called ``name`` is seen where the reference
    stands. From the query's own body, every CTE is; from inside the body of
    CTE number k, a plain WITH shows only those listed before k (a RECURSIVE
    one shows all): ``WITH a AS (SELECT * FROM secrets), secrets AS (...)``
    reads the real table in ``a``."""
    ctes = list(with_.expressions)
    inside = next((k for k, cte in enumerate(ctes) if any(cte is a for a in above)),
                  None)
    visible = ctes if inside is None or with_.args.get("recursive") else ctes[:inside]
    return any(cte.alias_or_name.lower() == name for cte in visible)


def _function_name(node) -> str:
    """A function call's name, lower case, whether sqlglot knows it or not."""
    name = node.name if node.key == "anonymous" else node.sql_name()
    return str(name).lower()


def build(options: SqlOptions) -> SqlCheck:
    return SqlCheck(options)
