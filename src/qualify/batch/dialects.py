"""What differs between the batch engines: reading JSON, numbers from text, a few functions.

The plan (`qualify.batch.plan`) and the predicate compiler are written once, in Ibis; each
engine reads a JSON value its own way (DuckDB's `json_type`, PostgreSQL's `jsonb_typeof`,
Spark's `VARIANT`), and only these few primitives are engine-specific. Every dialect gives a
value three views, in one vocabulary: its JSON text, its type (`string`, `number`,
`boolean`, `null`, `array`, `object`; NULL when absent) and its text (unquoted for strings).

DuckDB and Spark can call Python from a plan, so the rare values SQL cannot judge exactly
go to the live engine's own tests there. PostgreSQL cannot; its dialect says so
(`python_udfs = False`), and the plan flags the leads holding such values instead, for the
engine to score with the live engine (`qualify.batch.engine`).
"""

from __future__ import annotations

import decimal
from collections.abc import Collection
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from qualify.errors import QualifyError

__all__ = [
    "DIALECTS",
    "Dialect",
    "DuckDBDialect",
    "PostgresDialect",
    "SparkDialect",
    "duckdb_stored_events",
    "duckdb_stored_messages",
    "pg_rule_properties",
]

JSON = dt.JSON()
JSONB = dt.JSON(binary=True)
# Text that SQL reads as a number exactly as Python's float() does (after commas go).
PLAIN_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# What Python's str.strip() removes from ASCII text.
ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def key_parts(key: str) -> list[str]:
    """A dotted key's parts; keys a JSON path cannot spell are refused before any work."""
    if any(c in key for c in "\"\\'"):
        raise QualifyError(
            f"the batch engines cannot read the key {key!r}: a key with a quote or a "
            "backslash; rename it, or score with the live engine (`qualify score`)"
        )
    return key.split(".")


def _json_path(parts: list[str]) -> str:
    return "$." + ".".join(f'"{part}"' for part in parts)


class Dialect:
    """The engine-specific primitives of a plan (DuckDB's, by default)."""

    name = "duckdb"
    python_udfs = True
    number_pattern = PLAIN_NUMBER

    def extract(
        self, table: ir.Table, column: str, keys: list[str], prefix: str
    ) -> dict[str, tuple[ir.Value, ir.Value, ir.Value]]:
        """(JSON text, type, text) of every key's value, by key."""
        raise NotImplementedError

    def document(self, value: ir.Value) -> ir.Value:
        """A JSON column (or its text) as the engine reads values out of it fastest."""
        return value

    def is_ascii(self, text: ir.StringValue) -> ir.BooleanValue:
        return _strlen(text) == text.length()

    def finite(self, number: ir.FloatingValue) -> ir.BooleanValue:
        return _isfinite(number)

    def text_number(self, text: ir.StringValue) -> ir.FloatingValue:
        """A float from text that matched `number_pattern`, rounded as Python rounds."""
        return text.try_cast("float64")

    def json_number(self, text: ir.StringValue) -> ir.FloatingValue:
        """A float from the text of a JSON number."""
        return text.cast("float64")

    def strip(self, text: ir.StringValue) -> ir.StringValue:
        return _trim(text, ASCII_SPACE)

    def float_text(self, number: ir.FloatingValue) -> ir.StringValue:
        """Text equal for equal floats, different for different ones."""
        return (number + 0.0).cast("string")

    def sum_floats(self, values: ir.FloatingValue) -> ir.FloatingScalar:
        return values.sum()

    def floating(self, value: float) -> ir.FloatingValue:
        """A float literal that the engine types as one (so arithmetic on it is the live
        engine's floating point), where a bare `10.0` would be an exact decimal."""
        return ibis.literal(float(value), type="float64")

    def check_model(self, operators: set[str]) -> None:
        """Refuse, before any work, what the engine cannot compute exactly."""


class DuckDBDialect(Dialect):
    name = "duckdb"

    def extract(
        self, table: ir.Table, column: str, keys: list[str], prefix: str
    ) -> dict[str, tuple[ir.Value, ir.Value, ir.Value]]:
        # One `json_extract` with every path parses each document once.
        paths: list[str] = []
        for key in keys:
            paths.append(_json_path(key_parts(key)))
            if "." in key:  # a flat key that itself contains dots wins when it has a value
                paths.append('$."' + key + '"')
        parsed = _json_extract_many(table[column].cast("json"), paths)
        found: dict[str, tuple[ir.Value, ir.Value, ir.Value]] = {}
        at = 0
        for key in keys:
            value = parsed[at]
            at += 1
            if "." in key:
                flat = parsed[at]
                at += 1
                flat_type = _json_type(flat)
                value = ibis.ifelse(flat_type.notnull() & (flat_type != "NULL"), flat, value)
            kind = _json_type(value)
            normal = ibis.cases(
                (kind == "VARCHAR", "string"),
                (kind.isin(("BIGINT", "UBIGINT", "DOUBLE")), "number"),
                (kind == "BOOLEAN", "boolean"),
                (kind == "NULL", "null"),
                (kind == "ARRAY", "array"),
                else_=ibis.ifelse(kind.isnull(), ibis.null("string"), "object"),
            )
            found[key] = (value.cast("string"), normal, _json_extract_string(value, "$"))
        return found

    def sum_floats(self, values: ir.FloatingValue) -> ir.FloatingScalar:
        # DuckDB's compensated (Kahan) sum: decay terms summed nearly as exactly as the live
        # engine's `math.fsum`, and far less dependent on the order threads add them in.
        return _fsum(values)


class PostgresDialect(Dialect):
    name = "postgres"
    python_udfs = False

    def floating(self, value: float) -> ir.FloatingValue:
        return _float8(ibis.literal(float(value), type="float64"))

    # numeric's own limits: a longer text or a larger exponent is left to the live engine
    number_pattern = r"^[+-]?([0-9]{1,40}\.?[0-9]{0,40}|\.[0-9]{1,40})([eE][+-]?[0-9]{1,3})?$"

    def document(self, value: ir.Value) -> ir.Value:
        if value.type().is_json() and value.type().binary:
            return value
        return value.cast(JSONB)

    def extract(
        self, table: ir.Table, column: str, keys: list[str], prefix: str
    ) -> dict[str, tuple[ir.Value, ir.Value, ir.Value]]:
        doc = self.document(table[column])
        found: dict[str, tuple[ir.Value, ir.Value, ir.Value]] = {}
        for key in keys:
            parts = key_parts(key)
            value, text = _pg_get(doc, parts)
            if "." in key:
                flat, flat_text = _pg_get(doc, [key])
                flat_type = _jsonb_typeof(flat)
                has_flat = flat_type.notnull() & (flat_type != "null")
                value = ibis.ifelse(has_flat, flat, value)
                text = ibis.ifelse(has_flat, flat_text, text)
            found[key] = (value.cast("string"), _jsonb_typeof(value), text)
        return found

    def is_ascii(self, text: ir.StringValue) -> ir.BooleanValue:
        return _octet_length(text) == text.length()

    def finite(self, number: ir.FloatingValue) -> ir.BooleanValue:
        return number.notnull()  # `_bounded` never yields an infinity or a NaN

    def text_number(self, text: ir.StringValue) -> ir.FloatingValue:
        return self.bounded(text.cast(dt.Decimal(None, None)))

    def json_number(self, text: ir.StringValue) -> ir.FloatingValue:
        return self.bounded(text.cast(dt.Decimal(None, None)))

    def safe(self, number: ir.DecimalValue) -> ir.BooleanValue:
        """Whether numeric → float8 is exact rounding here; PostgreSQL raises an error on an
        overflow or an underflow, where Python gives an infinity or zero."""
        size = number.abs()
        return (number == _decimal("0")) | (
            (size >= _decimal("1e-300")) & (size < _decimal("1e300"))
        )

    def bounded(self, number: ir.DecimalValue) -> ir.FloatingValue:
        return ibis.ifelse(self.safe(number), number.cast("float64"), ibis.null("float64"))

    def strip(self, text: ir.StringValue) -> ir.StringValue:
        return _btrim(text, ASCII_SPACE)

    def check_model(self, operators: set[str]) -> None:
        if "matches" in operators:
            raise QualifyError(
                "the postgres engine cannot run `matches`: its regular expressions are "
                "Python's, and PostgreSQL's differ; score this model with --engine duckdb "
                "or --engine spark"
            )


class SparkDialect(Dialect):
    name = "spark"

    def floating(self, value: float) -> ir.FloatingValue:
        return _double(ibis.literal(float(value), type="float64"))

    def extract(
        self, table: ir.Table, column: str, keys: list[str], prefix: str
    ) -> dict[str, tuple[ir.Value, ir.Value, ir.Value]]:
        doc = _parse_json(table[column].cast("string"))
        found: dict[str, tuple[ir.Value, ir.Value, ir.Value]] = {}
        for key in keys:
            path = "$" + "".join(f"['{part}']" for part in key_parts(key))
            value = _variant_get(doc, path, "variant")
            if "." in key:
                flat = _variant_get(doc, f"$['{key}']", "variant")
                flat_type = _variant_type(flat)
                value = ibis.ifelse(flat_type.notnull() & (flat_type != "null"), flat, value)
            found[key] = (
                _to_json(value),
                _variant_type(value),
                _variant_get_text(value, "$", "string"),
            )
        return found

    def is_ascii(self, text: ir.StringValue) -> ir.BooleanValue:
        return _octet_length(text) == text.length()

    def finite(self, number: ir.FloatingValue) -> ir.BooleanValue:
        return ~number.isnan() & ~number.isinf()

    def strip(self, text: ir.StringValue) -> ir.StringValue:
        return _btrim(text, ASCII_SPACE)


DIALECTS: dict[str, Dialect] = {
    "duckdb": DuckDBDialect(),
    "postgres": PostgresDialect(),
    "spark": SparkDialect(),
}


def _decimal(text: str) -> ir.DecimalValue:
    return ibis.literal(decimal.Decimal(text), type=dt.Decimal(None, None))


def _variant_type(value: Any) -> ir.StringValue:
    """Spark's `schema_of_variant` (`DECIMAL(3,1)`, `ARRAY<BIGINT>`, `VOID` …) in the
    dialects' vocabulary."""
    schema = _schema_of_variant(value)
    head = schema.re_extract(r"^[A-Z]+", 0)
    return ibis.cases(
        (head == "STRING", "string"),
        (
            head.isin(("BIGINT", "INT", "SMALLINT", "TINYINT", "DECIMAL", "DOUBLE", "FLOAT")),
            "number",
        ),
        (head == "BOOLEAN", "boolean"),
        (head == "VOID", "null"),
        (head == "ARRAY", "array"),
        (head == "OBJECT", "object"),
        else_=ibis.null("string"),
    )


# Engine functions, called by name (`ibis.udf.scalar.builtin`): not SQL text.


@ibis.udf.scalar.builtin(
    name="json_extract", signature=((JSON, dt.Array(dt.string)), dt.Array(JSON))
)
def _json_extract_many(doc: Any, paths: list[str]) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_extract", signature=((JSON, dt.string), JSON))
def _json_get(doc: Any, path: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_keys", signature=((JSON,), dt.Array(dt.string)))
def _json_keys(doc: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_keys", signature=((dt.string,), dt.Array(dt.string)))
def _json_keys_text(text: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(
    name="json_extract", signature=((dt.string, dt.Array(dt.string)), dt.Array(JSON))
)
def _json_extract_text_many(text: Any, paths: list[str]) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_valid", signature=((dt.string,), dt.boolean))
def _json_valid(text: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(
    name="list_distinct", signature=((dt.Array(dt.string),), dt.Array(dt.string))
)
def _list_distinct(values: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_object", signature=((dt.string, dt.string), JSON))
def _json_object(key: str, value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="to_json", signature=((dt.string,), dt.string))
def _json_quote(text: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_type", signature=((JSON,), dt.string))
def _json_type(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_extract_string", signature=((JSON, dt.string), dt.string))
def _json_extract_string(value: Any, path: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="float8", signature=((dt.float64,), dt.float64))
def _float8(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="double", signature=((dt.float64,), dt.float64))
def _double(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="strlen", signature=((dt.string,), dt.int64))
def _strlen(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="octet_length", signature=((dt.string,), dt.int64))
def _octet_length(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="isfinite", signature=((dt.float64,), dt.boolean))
def _isfinite(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="trim", signature=((dt.string, dt.string), dt.string))
def _trim(value: Any, characters: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="btrim", signature=((dt.string, dt.string), dt.string))
def _btrim(value: Any, characters: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.agg.builtin(name="fsum", signature=((dt.float64,), dt.float64))
def _fsum(values: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="jsonb_typeof", signature=((JSONB,), dt.string))
def _jsonb_typeof(value: Any) -> Any: ...  # type: ignore[empty-body]


# The functions behind `->` and `->>` with a key: `jsonb_extract_path(doc, key)` gives the
# same values but builds an array of its variadic path on every call, which took twice
# the time of taking a value out of 1.2 million stored messages' properties.
@ibis.udf.scalar.builtin(name="jsonb_object_field", signature=((JSONB, dt.string), JSONB))
def _jsonb_get(doc: Any, key: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="jsonb_object_field_text", signature=((JSONB, dt.string), dt.string))
def _jsonb_get_text(doc: Any, key: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="jsonb_build_object", signature=((dt.string, dt.string), JSONB))
def _jsonb_pair(key: str, value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="jsonb_concat", signature=((JSONB, JSONB), JSONB))
def _jsonb_concat(left: Any, right: Any) -> Any: ...  # type: ignore[empty-body]


def pg_rule_properties(payload: ir.Value, kind: ir.StringValue) -> ir.Value:
    """The properties rules see in a stored message (PostgreSQL, in place). A page or screen
    view's `name` is one of them unless the properties carry their own, as when the live
    engine decodes the message; a message stored as it came has it only at the top."""
    doc = payload if payload.type().is_json() and payload.type().binary else payload.cast(JSONB)
    properties = _jsonb_get(doc, "properties")
    name = _jsonb_get_text(doc, "name")
    named = kind.isin(("page", "screen")) & name.notnull() & (name != "")
    pair = _jsonb_pair("name", name)
    return ibis.cases(
        (named & properties.isnull(), pair),
        (named, _jsonb_concat(pair, properties)),  # the right side wins a shared key
        else_=properties,
    )


def pg_stored_events(events: ir.Table) -> ir.Table:
    """A PostgreSQL store's `events` table as the plan's events relation, computed by the
    server from its `jsonb`: the name rules match (a track's event casefolded — `lower()`
    for ASCII names; other names flag their lead for the live engine), the properties the
    live engine sees. The postgres engine plans over it in place; DuckDB reads its rows
    (`stored_rows`). `jsonb` keeps the last of a key sent twice, as the live engine does."""
    dialect = DIALECTS["postgres"]
    events = events.filter(events.type.isin(("track", "page", "screen")))
    track = events.type == "track"
    return events.select(
        lead_id=events.lead_id.cast("string"),
        message_id=events.message_id.cast("string"),
        name=ibis.ifelse(track, dialect.strip(events.name).lower(), events.type).cast("string"),
        ts=events.ts.cast("float64"),
        properties=pg_rule_properties(events.payload, events.type),
        rare=track & ~dialect.is_ascii(events.name),
    )


def duckdb_stored_messages(raw: ir.Table) -> ir.Table:
    """A store's `events` rows (`lead_id`, `message_id`, `type`, `name`, `ts`, the stored
    message as JSON text `payload`), each message parsed for what rules read: `ok` (it
    parses), `parts` (its properties and its name, as JSON) and `twice` (a key sent twice
    at its top). DuckDB's JSON functions parse their text at every call, so this is the
    one step that reads the messages; `duckdb_stored_events` reads its parts."""
    ok = _json_valid(raw.payload)
    parts = _json_extract_text_many(raw.payload, ["$.properties", "$.name"])
    return raw.select(
        "lead_id",
        "message_id",
        "type",
        "name",
        ts=raw.ts.cast("float64"),
        ok=ok,
        parts=ibis.ifelse(ok, parts, ibis.null(dt.Array(JSON))),
        twice=ibis.ifelse(ok, _sent_twice(_json_keys_text(raw.payload)), False),
    )


def duckdb_stored_events(messages: ir.Table, keys: Collection[str]) -> ir.Table:
    """Stored messages (`duckdb_stored_messages`) as the plan's events relation, read by
    DuckDB itself: the name rules match, the properties as the live engine decodes them,
    and `rare` where DuckDB would not read what the live engine reads — a track's non-ASCII
    name (`lower()` is not `casefold()`), a message DuckDB cannot parse, or a key sent twice
    on the way to a value rules read (`keys`): DuckDB reads the first, the live engine the
    last. Their leads are scored by the live engine."""
    dialect = DIALECTS["duckdb"]
    properties = messages.parts[0]
    track = messages.type == "track"
    twice = messages.twice | _sent_twice(_json_keys(properties))
    parents = {
        tuple(parts[:i]) for key in keys for parts in [key_parts(key)] for i in range(1, len(parts))
    }
    for path in sorted(parents):
        twice = twice | _sent_twice(_json_keys(_json_get(properties, _json_path(list(path)))))
    page_name = _json_extract_string(messages.parts[1], "$")
    return messages.select(
        "lead_id",
        "message_id",
        name=ibis.ifelse(track, dialect.strip(messages.name).lower(), messages.type),
        ts=messages.ts,
        properties=duckdb_rule_properties(page_name, properties, messages.type),
        rare=(track & ~dialect.is_ascii(messages.name)) | ~messages.ok | twice.fill_null(False),
    )


def duckdb_rule_properties(
    name: ir.StringValue, properties: ir.Value, kind: ir.StringValue
) -> ir.Value:
    """The properties rules see in a stored message (DuckDB): as `pg_rule_properties`, a
    page or screen view's `name` joins them unless they carry their own. Spliced into the
    object's (minified) text after its other keys, where the live engine puts it."""
    named = kind.isin(("page", "screen")) & name.notnull() & (name != "")
    text = properties.cast("string")
    own = _json_get(properties, '$."name"').notnull()
    alone = _json_object("name", name)
    added = (text.substr(0, text.length() - 1) + ',"name":' + _json_quote(name) + "}").cast(JSON)
    return ibis.cases(
        (named & (properties.isnull() | (text == "{}")), alone),
        (named & ~own, added),
        else_=properties,
    )


def _sent_twice(names: ir.ArrayValue) -> ir.BooleanValue:
    """Whether an object's keys (`json_keys`) hold one twice (NULL when it is no object)."""
    return names.length() != _list_distinct(names).length()


def _pg_get(doc: Any, parts: list[str]) -> tuple[Any, ir.StringValue]:
    """The value at a path, and its text (strings unquoted), one key at a time: a step into
    anything but an object gives NULL, as in the live engine's `lookup`."""
    for part in parts[:-1]:
        doc = _jsonb_get(doc, part)
    return _jsonb_get(doc, parts[-1]), _jsonb_get_text(doc, parts[-1])


@ibis.udf.scalar.builtin(name="try_parse_json", signature=((dt.string,), JSON))
def _parse_json(text: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="variant_get", signature=((JSON, dt.string, dt.string), JSON))
def _variant_get(value: Any, path: str, kind: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="variant_get", signature=((JSON, dt.string, dt.string), dt.string))
def _variant_get_text(value: Any, path: str, kind: str) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="schema_of_variant", signature=((JSON,), dt.string))
def _schema_of_variant(value: Any) -> Any: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="to_json", signature=((JSON,), dt.string))
def _to_json(value: Any) -> Any: ...  # type: ignore[empty-body]
