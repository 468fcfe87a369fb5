"""The JSON Schema of model files, so editors (YAML language servers) complete and check them.

It describes the shape; `load_model` remains the authority (semantic checks such as unknown
rule names or shadowed tiers cannot be said in JSON Schema).
"""

from __future__ import annotations

from typing import Any

from qualify.model.predicates import OPERATORS
from qualify.model.routing import STRATEGIES

__all__ = ["json_schema"]

_DURATION = {
    "type": "string",
    "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$",
    "description": "A duration: 45s, 30m, 12h, 7d, 4w.",
}
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_NUMBER = {"type": "number"}


def _operators() -> dict[str, Any]:
    props: dict[str, Any] = {
        "equals": _SCALAR,
        "in": {"type": "array", "items": _SCALAR, "minItems": 1},
        "not_in": {"type": "array", "items": _SCALAR, "minItems": 1},
        "contains": {"type": ["string", "number"]},
        "starts_with": {"type": ["string", "number"]},
        "ends_with": {"type": ["string", "number"]},
        "matches": {"type": "string", "format": "regex"},
        "between": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
        "gt": _NUMBER,
        "gte": _NUMBER,
        "lt": _NUMBER,
        "lte": _NUMBER,
        "exists": {"type": "boolean"},
    }
    assert set(props) == set(OPERATORS)
    return {
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "minProperties": 1,
    }


def _criteria() -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": {
            "score_at_least": _NUMBER,
            "fit_at_least": _NUMBER,
            "engagement_at_least": _NUMBER,
            "all": {"type": "array", "items": {"type": "string"}},
            "any": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict (draft 2020-12)."""
    predicate_ref = {"$ref": "#/$defs/predicate"}
    member = {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "weight": {"type": "number", "exclusiveMinimum": 0},
                    "capacity": {"type": "integer", "minimum": 0},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        ]
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://qualify.dev/schema/model.json",
        "title": "Qualify scoring model",
        "type": "object",
        "required": ["name", "version"],
        "additionalProperties": False,
        "$defs": {
            "predicate": {
                "type": "object",
                "description": "Keys (dotted for nested values) to a value (equals) or operators; "
                "`any`, `all`, `not` combine.",
                "properties": {
                    "any": {"type": "array", "items": predicate_ref, "minItems": 1},
                    "all": {"type": "array", "items": predicate_ref, "minItems": 1},
                    "not": predicate_ref,
                },
                "additionalProperties": {"anyOf": [_SCALAR, _operators()]},
            },
            "criteria": _criteria(),
        },
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "version": {"type": ["integer", "string", "number"]},
            "description": {"type": "string"},
            "fit": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "when", "points"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": "string"},
                        "when": predicate_ref,
                        "points": _NUMBER,
                    },
                },
            },
            "engagement": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "event", "points"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": "string"},
                        "event": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            ]
                        },
                        "where": predicate_ref,
                        "points": _NUMBER,
                        "max_points": {"type": "number", "exclusiveMinimum": 0},
                        "times": {"type": "integer", "minimum": 1},
                        "within": _DURATION,
                        "distinct": {"type": "string", "minLength": 1},
                        "once": {"type": "boolean"},
                        "expires_after": _DURATION,
                    },
                    "dependentRequired": {"within": ["times"]},
                },
            },
            "decay": {
                "type": "object",
                "properties": {"engagement_half_life": _DURATION},
                "additionalProperties": False,
            },
            "qualification": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "mql": {"$ref": "#/$defs/criteria"},
                    "pql": {"$ref": "#/$defs/criteria"},
                    "tiers": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/$defs/criteria"},
                    },
                    "grades": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/$defs/criteria"},
                    },
                },
            },
            "lifecycle": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "sla": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "accept_within": _DURATION,
                            "on_breach": {"enum": ["none", "reassign"]},
                        },
                    },
                    "recycle": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"requalify_after": _DURATION},
                    },
                },
            },
            "routing": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": "string"},
                        "when": predicate_ref,
                        "nurture": {"type": "string", "minLength": 1},
                        "assign": {
                            "type": "object",
                            "required": ["team", "members"],
                            "additionalProperties": False,
                            "properties": {
                                "team": {"type": "string"},
                                "strategy": {"enum": list(STRATEGIES)},
                                "members": {"type": "array", "items": member, "minItems": 1},
                                "account_owner": {"type": "boolean"},
                            },
                        },
                    },
                    "oneOf": [{"required": ["nurture"]}, {"required": ["assign"]}],
                },
            },
        },
    }
