"""YAML text → plain values that remember where each key and value stood.

We compose PyYAML nodes ourselves instead of letting a loader construct objects, for two
reasons: every problem must be reported with its line and column, and YAML 1.1's implicit
booleans must not eat values such as `NO` (Norway) or `off`. Plain scalars are resolved by the
YAML 1.2 core schema: only `true`/`false` are booleans, `null`/`~`/empty are null, and numbers
are numbers; everything else, including `yes`, `no`, `on`, `off`, stays a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from qualify.errors import ModelProblem

__all__ = ["Located", "Pos", "load_located"]

_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int


@dataclass(slots=True)
class Located:
    """A parsed document: its value, and the position of each key and value by path."""

    value: Any
    keys: dict[tuple[Any, ...], Pos] = field(default_factory=dict)
    values: dict[tuple[Any, ...], Pos] = field(default_factory=dict)
    texts: dict[tuple[Any, ...], str] = field(default_factory=dict)  # scalars as written

    def at(self, path: tuple[Any, ...], *, key: bool = False) -> Pos:
        """Where `path` stands: its key when `key` and there is one, else its value.

        Falls back to the nearest enclosing node, so a problem always has a position.
        """
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return Pos(1, 1)
            path = path[:-1]
            key = True


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """A SafeLoader with no implicit resolvers: every plain scalar comes back untyped."""


_Loader.yaml_implicit_resolvers = {}


def _pos(mark: yaml.Mark) -> Pos:
    return Pos(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.tag not in ("tag:yaml.org,2002:str",) and node.tag.startswith("tag:yaml.org,2002:"):
        explicit = node.tag.rsplit(":", 1)[1]
        if explicit == "int":
            return int(text)
        if explicit == "float":
            return float(text)
        if explicit == "bool":
            return text.lower() == "true"
        if explicit == "null":
            return None
    if node.style:  # quoted or block scalars are always strings (plain: None or "")
        return text
    if node.tag == "tag:yaml.org,2002:str":
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if _INT.match(text):
            return int(text.replace("_", ""))
        if _FLOAT.match(text) and any(c.isdigit() for c in text):
            return float(text.replace("_", ""))
    return text


def _build(
    node: yaml.Node, path: tuple[Any, ...], doc: Located, problems: list[ModelProblem]
) -> Any:
    doc.values[path] = _pos(node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        doc.texts[path] = node.value
        try:
            return _scalar(node)
        except ValueError:
            problems.append(
                _problem(node, f"`{node.value}` is not a valid {node.tag.rsplit(':', 1)[1]}")
            )
            return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(_problem(key_node, "a key must be a plain name"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                problems.append(_problem(key_node, f"duplicate key `{key}`"))
                continue
            doc.keys[(*path, key)] = _pos(key_node.start_mark)
            result[key] = _build(value_node, (*path, key), doc, problems)
        return result
    problems.append(_problem(node, "unsupported YAML node"))  # pragma: no cover - defensive
    return None


def _problem(node: yaml.Node, message: str) -> ModelProblem:
    pos = _pos(node.start_mark)
    return ModelProblem(pos.line, pos.column, message)


def load_located(text: str) -> tuple[Located | None, list[ModelProblem]]:
    """Parse YAML text; on a syntax error return no document and that one problem."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, text)]
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks nearly everything
        return None, [ModelProblem(1, 1, f"YAML syntax error: {exc}")]
    doc = Located(None)
    problems: list[ModelProblem] = []
    if node is None:
        doc.values[()] = Pos(1, 1)
        return doc, problems
    doc.value = _build(node, (), doc, problems)
    return doc, problems


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> ModelProblem:
    """One clear problem from a YAML syntax error: where it is, and what was open there."""
    last_line = max(1, len(text.splitlines()))
    mark = exc.problem_mark or exc.context_mark
    if mark is not None and mark.line + 1 > last_line and exc.context_mark is not None:
        mark = exc.context_mark  # past the end of the file: point at what was left open
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or "invalid YAML"
    if exc.context:
        opened = exc.context_mark
        where = f" (line {opened.line + 1})" if opened is not None else ""
        what = f"{exc.context}{where}, {what}"
    if any(word in what for word in ("expected key", "block end", "'-' indicator")):
        what += (
            "; check the indentation: the keys of one mapping (and the items of one list) "
            "start in the same column"
        )
    if "escape" in what:
        what += (
            "; in double quotes a backslash starts an escape: write regular expressions "
            "in single quotes"
        )
    return ModelProblem(line, column, f"YAML syntax error: {what}")
