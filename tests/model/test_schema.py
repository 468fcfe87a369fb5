"""The published JSON Schema accepts every valid model and catches shape mistakes."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

import qualify
from qualify.model import json_schema

HERE = Path(__file__).parent
GOOD = [
    HERE / "full_contract.yaml",
    HERE.parent / "fixtures" / "worked_example.yaml",
    Path(qualify.__file__).parent / "examples" / "demo-model.yaml",
]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_valid_models_validate(path: Path) -> None:
    from qualify.model.source import load_located

    doc, problems = load_located(path.read_text())
    assert doc is not None and not problems
    jsonschema.validate(doc.value, json_schema())


@pytest.mark.parametrize(
    "mistake",
    [
        {"name": "x", "version": 1, "fits": []},
        {
            "name": "x",
            "version": 1,
            "fit": [{"name": "a", "when": {"i": {"start_with": "x"}}, "points": 1}],
        },
        {
            "name": "x",
            "version": 1,
            "engagement": [{"name": "a", "event": "e", "points": 1, "within": "7d"}],
        },
        {
            "name": "x",
            "version": 1,
            "engagement": [
                {"name": "a", "event": "e", "points": 1, "within": "7 days", "times": 2}
            ],
        },
        {"version": 1},
        {"name": "x", "version": 1, "routing": [{"name": "r"}]},
    ],
)
def test_shape_mistakes_are_caught(mistake: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(mistake, json_schema())
