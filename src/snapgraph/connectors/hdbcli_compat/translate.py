"""HANA SQL, as Gen2 scripts send it through hdbcli, rewritten for the database that serves the connection.

A statement is split into tokens (words, numbers, string literals, quoted identifiers, comments,
parameter markers, operators), so nothing inside a string literal or a comment is ever rewritten.
Then one rule decides each construct:

* **translated**: ``?`` markers (to ``%s`` for psycopg and PyMySQL, which then also need every
  literal ``%`` doubled), ``:name`` markers (to ``%(name)s`` there), ``"quoted"`` identifiers (to
  backticks on MariaDB), one trailing ``;``, ``CREATE COLUMN TABLE`` / ``CREATE ROW TABLE`` (to
  ``CREATE TABLE``), ``FROM DUMMY`` (dropped; ``FROM DUAL`` on MariaDB), ``COMMIT`` / ``ROLLBACK``
  (the connection's own), and HANA's ``UPSERT`` / ``REPLACE ... VALUES (...)`` with ``WHERE <cond>``,
  ``WITH PRIMARY KEY`` or neither (the primary key decides, as with ``WITH PRIMARY KEY``): parsed here
  into an :class:`Upsert` that the cursor runs as a look-up, then an ``UPDATE`` or an ``INSERT``, in
  one transaction;
* **the same in both**: ``SELECT``, ``WITH``, ``INSERT``, ``UPDATE``, ``DELETE``, ``LIMIT n OFFSET m``
  and DDL (``CREATE``, ``DROP``, ``ALTER``, ``TRUNCATE``) pass unchanged; what the serving database
  does not know (a HANA-only function or type name) fails there, loudly, with the statement named;
* **refused** (:class:`Refused`), because it would run differently or not at all: any other kind of
  statement (``MERGE``, ``CALL``, ``SET``, ...), ``SELECT TOP n``, ``UPSERT`` from a subquery, more
  than one statement, ``||`` on MariaDB (there it means OR), and ``?`` mixed with ``:name``.

A statement that is not well formed (an unterminated literal, an ``UPSERT`` that does not parse) is
:class:`Malformed`. Both name the statement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from snapgraph.connectors.databases import MARIADB, SQLITE, Dialect
from snapgraph.model.sap_database_builtins import unquoted_identifier

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<marker>\?)
  | (?P<named>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$#]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<op>\|\||<>|<=|>=|!=|.)
""", re.VERBOSE | re.DOTALL)

#: statement kinds that pass through (besides UPSERT/REPLACE, COMMIT and ROLLBACK, translated)
PASSED_KINDS = frozenset({"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE"})
UPSERT_KINDS = frozenset({"UPSERT", "REPLACE"})
TRANSACTION_KINDS = frozenset({"COMMIT", "ROLLBACK"})


class StatementError(Exception):
    """A statement the stand-in does not send; the message names it."""

    def __init__(self, statement: str, reason: str) -> None:
        super().__init__(f"{reason}: {statement.strip()!r}")
        self.statement = statement
        self.reason = reason


class Refused(StatementError):
    """Valid HANA SQL that the stand-in does not translate (it would run differently or not at all)."""


class Malformed(StatementError):
    """A statement that does not parse (an unterminated literal, a broken UPSERT)."""


@dataclass(frozen=True)
class Token:
    kind: str  # space, comment, string, quoted, marker, named, word, number, op
    text: str

    @property
    def keyword(self) -> str:
        """The word in upper case ('' for anything but a word)."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def significant(self) -> bool:
        return self.kind not in ("space", "comment")


@dataclass(frozen=True)
class Fragment:
    """A run of tokens of a statement (the whole of it, or one part of an UPSERT)."""

    tokens: tuple[Token, ...]

    @property
    def markers(self) -> int:
        """How many ``?`` markers it holds: how many positional parameters it consumes."""
        return sum(1 for t in self.tokens if t.kind == "marker")

    @property
    def has_parameters(self) -> bool:
        return any(t.kind in ("marker", "named") for t in self.tokens)


@dataclass(frozen=True)
class Plain:
    """A statement sent as it is (its markers and quoting translated when rendered)."""

    sql: Fragment
    named: bool  # its markers are :name ones (parameters come as a mapping)


@dataclass(frozen=True)
class Transaction:
    """``COMMIT`` or ``ROLLBACK``: done through the connection."""

    action: str  # "commit" or "rollback"


@dataclass(frozen=True)
class Upsert:
    """``UPSERT table [(columns)] VALUES (values) [WHERE condition | WITH PRIMARY KEY]``.

    ``columns`` is None when the statement lists none (then the values go to the table's columns in
    order); ``where`` is None for the primary-key form.
    """

    table: Fragment
    table_names: tuple[str, ...]  # schema and table, unquoted, as the catalog knows them (see identifier_name)
    columns: tuple[Fragment, ...] | None
    values: tuple[Fragment, ...]
    where: Fragment | None
    named: bool

    @property
    def markers(self) -> int:
        return sum(v.markers for v in self.values) + (self.where.markers if self.where is not None else 0)


Statement = Plain | Transaction | Upsert


def tokenize(statement: str) -> list[Token]:
    """The tokens of ``statement``; an unterminated literal or quoted identifier is :class:`Malformed`."""
    tokens = []
    for match in _TOKEN.finditer(statement):
        kind, text = match.lastgroup or "op", match.group()
        if kind == "op" and text in ("'", '"'):
            what = "string literal" if text == "'" else "quoted identifier"
            raise Malformed(statement, f"unterminated {what} at character {match.start() + 1}")
        tokens.append(Token(kind, text))
    return tokens


def identifier_name(token: Token) -> str:
    """The name a word or a quoted identifier stands for (quotes removed, doubled quotes undone; a word as
    written): the rule of the SAP operators' ``tableName`` too (:func:`unquoted_identifier`)."""
    return unquoted_identifier(token.text)


@lru_cache(maxsize=512)
def translate(statement: str, dialect: Dialect) -> Statement:
    """What to run on ``dialect``'s database for the HANA statement ``statement`` (see the module doc)."""
    tokens = _one_statement(statement, tokenize(statement))
    significant = [t for t in tokens if t.significant]
    if not significant:
        raise Malformed(statement, "an empty statement")
    kinds = {t.kind for t in significant}
    if "marker" in kinds and "named" in kinds:
        raise Refused(statement, "a statement with both ? and :name parameter markers")
    named = "named" in kinds
    kind = significant[0].keyword
    if dialect is MARIADB and any(t.kind == "op" and t.text == "||" for t in significant):
        raise Refused(statement, "|| is string concatenation in HANA but OR in MariaDB; use CONCAT(a, b)")
    if kind in TRANSACTION_KINDS:
        if len(significant) > 1 and not (len(significant) == 2 and significant[1].keyword == "WORK"):
            raise Refused(statement, f"{kind} with options")
        return Transaction(kind.lower())
    if kind in UPSERT_KINDS:
        return _upsert(statement, significant, named)
    if kind not in PASSED_KINDS:
        what = kind or significant[0].text
        raise Refused(statement, f"{what} statements are not translated (these are: "
                                 f"{', '.join(sorted(PASSED_KINDS | UPSERT_KINDS | TRANSACTION_KINDS))})")
    _refuse_top(statement, significant)
    return Plain(Fragment(tuple(_rewrite(tokens, dialect))), named)


def _one_statement(statement: str, tokens: list[Token]) -> list[Token]:
    """``tokens`` without a trailing ``;``; a ``;`` anywhere else is refused."""
    positions = [i for i, t in enumerate(tokens) if t.kind == "op" and t.text == ";"]
    if not positions:
        return tokens
    last_significant = max(i for i, t in enumerate(tokens) if t.significant)
    if positions != [last_significant]:
        raise Refused(statement, "more than one statement in one execute (hdbcli runs one at a time)")
    return tokens[:last_significant] + tokens[last_significant + 1:]


def _refuse_top(statement: str, significant: list[Token]) -> None:
    for i, token in enumerate(significant[:-1]):
        if token.keyword != "SELECT":
            continue
        following = significant[i + 1]
        if following.keyword in ("DISTINCT", "ALL") and i + 2 < len(significant):
            following = significant[i + 2]
        if following.keyword == "TOP":
            raise Refused(statement, "SELECT TOP n is not translated; write LIMIT n at the end "
                                     "(HANA takes it too)")


def _rewrite(tokens: list[Token], dialect: Dialect) -> list[Token]:
    """``CREATE COLUMN|ROW TABLE`` → ``CREATE TABLE``; ``FROM DUMMY`` dropped (``FROM DUAL`` on MariaDB)."""
    significant = [i for i, t in enumerate(tokens) if t.significant]
    dropped: set[int] = set()
    replaced: dict[int, Token] = {}
    for n, i in enumerate(significant[:-1]):
        word, following = tokens[i].keyword, significant[n + 1]
        if word == "CREATE" and tokens[following].keyword in ("COLUMN", "ROW") and n + 2 < len(significant) \
                and tokens[significant[n + 2]].keyword == "TABLE":
            dropped.update(range(i + 1, significant[n + 2]))
            replaced[i] = Token("word", tokens[i].text + " ")
        if word == "FROM" and tokens[following].keyword == "DUMMY":
            if dialect is MARIADB:
                replaced[following] = Token("word", "DUAL")
            else:
                dropped.update(range(i, following + 1))
    return [replaced.get(i, t) for i, t in enumerate(tokens) if i not in dropped]


def render(pieces: Sequence[str | Fragment], dialect: Dialect) -> str:
    """The SQL text for the driver: fragments' markers in the driver's style, literal ``%`` doubled
    when the driver substitutes parameters (psycopg, PyMySQL), ``"quoted"`` identifiers in the
    dialect's quoting. Plain string pieces are SQL the stand-in wrote itself (no ``%`` in them)."""
    substitutes = dialect.placeholder == "%s" and any(
        isinstance(p, Fragment) and p.has_parameters for p in pieces)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        for token in piece.tokens:
            if token.kind == "marker":
                out.append(dialect.placeholder)
            elif token.kind == "named":
                out.append(token.text if dialect is SQLITE else f"%({token.text[1:]})s")
            else:
                text = dialect.quote(identifier_name(token)) if token.kind == "quoted" else token.text
                out.append(text.replace("%", "%%") if substitutes else text)
    return "".join(out)


# -- UPSERT ------------------------------------------------------------------------------------------

def _upsert(statement: str, tokens: list[Token], named: bool) -> Upsert:
    """Parse ``UPSERT|REPLACE <table> [(<columns>)] VALUES (<values>) [WHERE <cond> | WITH PRIMARY KEY]``
    (``tokens``: the significant ones)."""
    at = 1
    table_start = at
    names: list[str] = []
    while True:
        if at >= len(tokens) or tokens[at].kind not in ("word", "quoted"):
            raise Malformed(statement, f"{tokens[0].keyword} needs a table name")
        names.append(identifier_name(tokens[at]))
        at += 1
        if at < len(tokens) and tokens[at].text == ".":
            at += 1
            continue
        break
    table = Fragment(tuple(_spaced(tokens[table_start:at])))
    columns: tuple[Fragment, ...] | None = None
    if at < len(tokens) and tokens[at].text == "(":
        if at + 1 < len(tokens) and tokens[at + 1].keyword in ("SELECT", "WITH"):
            raise Refused(statement, "UPSERT from a subquery is not translated; upsert row by row with VALUES")
        parts, at = _parenthesized(statement, tokens, at)
        if any(len(p.tokens) != 1 or p.tokens[0].kind not in ("word", "quoted") for p in parts):
            raise Malformed(statement, "the column list of an UPSERT holds column names only")
        columns = tuple(parts)
    if at < len(tokens) and tokens[at].keyword in ("SELECT", "WITH"):
        raise Refused(statement, "UPSERT from a subquery is not translated; upsert row by row with VALUES")
    if at >= len(tokens) or tokens[at].keyword != "VALUES":
        raise Malformed(statement, "UPSERT needs VALUES (...) after the table and its columns")
    values, at = _parenthesized(statement, tokens, at + 1)
    if columns is not None and len(columns) != len(values):
        raise Malformed(statement, f"UPSERT lists {len(columns)} columns but {len(values)} values")
    where: Fragment | None = None
    rest = tokens[at:]
    if [t.keyword for t in rest] == ["WITH", "PRIMARY", "KEY"] or not rest:
        pass
    elif rest[0].keyword == "WHERE" and len(rest) > 1:
        where = Fragment(tuple(_spaced(rest[1:])))
    else:
        raise Malformed(statement, f"unexpected {rest[0].text!r} after the VALUES of an UPSERT "
                                   "(expected WHERE <condition>, WITH PRIMARY KEY or the end)")
    return Upsert(table, tuple(names), columns, tuple(values), where, named)


def _parenthesized(statement: str, tokens: list[Token], at: int) -> tuple[list[Fragment], int]:
    """The comma-separated parts of the parenthesized list that starts at ``tokens[at]`` and the
    position after its closing parenthesis."""
    if at >= len(tokens) or tokens[at].text != "(":
        raise Malformed(statement, "expected '(' in the UPSERT")
    parts: list[Fragment] = []
    current: list[Token] = []
    depth = 0
    for i in range(at + 1, len(tokens)):
        token = tokens[i]
        if token.text == "(":
            depth += 1
        elif token.text == ")" and depth == 0:
            if not current:
                raise Malformed(statement, "an empty item in a parenthesized list of the UPSERT")
            parts.append(Fragment(tuple(_spaced(current))))
            return parts, i + 1
        elif token.text == ")":
            depth -= 1
        elif token.text == "," and depth == 0:
            if not current:
                raise Malformed(statement, "an empty item in a parenthesized list of the UPSERT")
            parts.append(Fragment(tuple(_spaced(current))))
            current = []
            continue
        current.append(token)
    raise Malformed(statement, "a parenthesis of the UPSERT is not closed")


def _spaced(tokens: Sequence[Token]) -> list[Token]:
    """Significant tokens with one space between two of them (none inside a dotted name, after an
    opening parenthesis or before a comma or closing parenthesis): SQL reads them the same."""
    out: list[Token] = []
    for token in tokens:
        if out and out[-1].text not in ("(", ".") and token.text not in (",", ")", "."):
            out.append(Token("space", " "))
        out.append(token)
    return out


__all__ = ["Fragment", "Malformed", "Plain", "Refused", "Statement", "StatementError", "Token", "Transaction",
           "Upsert", "identifier_name", "render", "tokenize", "translate"]
