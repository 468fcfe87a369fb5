"""The broken-model corpus: every mistake a user makes is reported, exactly where it is.

Each file in `broken/` is one realistic mistake (some with two or three problems, to prove that
every problem is reported, not just the first). Its header comments declare the problems that
`load_model` must report, one per line, in the order `ModelError` sorts them::

    # expect: LINE:COL: MESSAGE

YAML syntax errors are worded by the YAML parser, and PyYAML words them differently with and
without libyaml. A file whose problems differ without libyaml adds the pure-Python wording as
`# expect-without-libyaml: LINE:COL: MESSAGE` lines; without them, `# expect:` holds for both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import qualify
import qualify.model.source as source
from qualify.errors import ModelError
from qualify.model import AllOf, AnyOf, Compare, Not, load_model
from qualify.model.predicates import OPERATORS

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
CORPUS = sorted(BROKEN.glob("*.yaml"))
FULL_CONTRACT = HERE / "full_contract.yaml"
DEMO_MODEL = Path(qualify.__file__).parent / "examples" / "demo-model.yaml"

EXPECT = re.compile(r"^# (expect|expect-without-libyaml): (\d+):(\d+): (.+)$")
WITH_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))

Problem = tuple[int, int, str]


def expected(path: Path, *, libyaml: bool) -> list[Problem]:
    """The problems a corpus file declares for one YAML backend."""
    found: dict[str, list[Problem]] = {"expect": [], "expect-without-libyaml": []}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("# expect"):
            continue
        match = EXPECT.match(line)
        assert match, f"{path.name}:{number}: malformed expectation: {line!r}"
        kind, row, column, message = match.groups()
        found[kind].append((int(row), int(column), message))
    if not libyaml and found["expect-without-libyaml"]:
        return found["expect-without-libyaml"]
    return found["expect"]


def actual(path: Path) -> list[Problem]:
    with pytest.raises(ModelError) as caught:
        load_model(path.read_text(encoding="utf-8"), path.name)
    return [(p.line, p.column, p.message) for p in caught.value.problems]


class PurePythonLoader(yaml.SafeLoader):
    """What `qualify.model.source` builds when libyaml is missing: no implicit resolvers."""


PurePythonLoader.yaml_implicit_resolvers = {}


def test_corpus_is_large_and_every_file_expects_problems() -> None:
    assert len(CORPUS) >= 25
    for path in CORPUS:
        assert expected(path, libyaml=True), f"{path.name} declares no `# expect:` line"


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_broken_model_reports_exactly_its_problems(path: Path) -> None:
    assert actual(path) == expected(path, libyaml=WITH_LIBYAML)


@pytest.mark.skipif(not WITH_LIBYAML, reason="already the backend of the test above")
@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_broken_model_without_libyaml(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "_Loader", PurePythonLoader)
    assert actual(path) == expected(path, libyaml=False)


def test_render_shows_position_source_line_and_caret() -> None:
    path = BROKEN / "bad_durations.yaml"
    text = path.read_text(encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_model(text, "bad_durations.yaml")
    error = caught.value
    source_lines = text.splitlines()
    rendered = error.render().splitlines()
    assert str(error) == error.render()
    assert len(error.problems) == 3
    assert len(rendered) == 3 * len(error.problems)
    for i, problem in enumerate(error.problems):
        head, shown, caret = rendered[3 * i : 3 * i + 3]
        assert head == f"bad_durations.yaml:{problem.line}:{problem.column}: {problem.message}"
        assert shown == "    " + source_lines[problem.line - 1]
        assert caret == "    " + " " * (problem.column - 1) + "^"
    # The first one, spelled out: the caret stands under the bad value.
    assert rendered[:3] == [
        "bad_durations.yaml:12:13: `within` must be a duration such as `30m`, `12h`, `7d` or "
        "`4w`, not the text `7 days`",
        "        within: 7 days",
        "                ^",
    ]


def run_check(path: Path | str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "qualify", "check", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def test_check_command_reports_problems_and_exits_2() -> None:
    name = "missing_rule_parts.yaml"
    done = run_check(name, cwd=BROKEN)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""
    shown = " ".join(done.stderr.split())
    problems = expected(BROKEN / name, libyaml=WITH_LIBYAML)
    assert len(problems) == 4
    for line, column, message in problems:
        assert " ".join(f"{name}:{line}:{column}: {message}".split()) in shown


def test_check_command_prints_problems_unwrapped() -> None:
    name = "routing_targets.yaml"
    text = (BROKEN / name).read_text(encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_model(text, name)
    done = run_check(name, cwd=BROKEN, columns=80)
    assert done.returncode == 2
    assert done.stderr == caught.value.render() + "\n"


def test_check_command_accepts_the_demo_model() -> None:
    done = run_check(DEMO_MODEL, cwd=HERE)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "ok" in done.stdout
    assert done.stderr == ""


def test_yaml_1_2_booleans_stay_text() -> None:
    model = load_model(
        "name: booleans\n"
        "version: 1\n"
        "fit:\n"
        "  - name: norway\n"
        "    when: {country: NO, flag: yes, mode: off, on: On, known: true, gone: false}\n"
        "    points: 5\n"
        "  - name: nordics\n"
        "    when: {country: {in: [NO, SE, DK]}, phone: {exists: true}}\n"
        "    points: 1\n",
        "booleans.yaml",
    )
    norway, nordics = model.fit
    assert isinstance(norway.when, AllOf)
    values = {c.key: c.value for c in norway.when.items if isinstance(c, Compare)}
    assert values == {
        "country": "NO",
        "flag": "yes",
        "mode": "off",
        "on": "On",
        "known": True,
        "gone": False,
    }
    assert all(isinstance(values[k], str) for k in ("country", "flag", "mode", "on"))
    assert nordics.when == AllOf(
        (Compare("country", "in", ("NO", "SE", "DK")), Compare("phone", "exists", True))
    )


def _operators(predicate: object) -> set[str]:
    if isinstance(predicate, Compare):
        return {predicate.op}
    if isinstance(predicate, AllOf | AnyOf):
        return set().union(*(_operators(item) for item in predicate.items))
    if isinstance(predicate, Not):
        return _operators(predicate.item)
    return set()


def test_full_contract_model_loads() -> None:
    model = load_model(FULL_CONTRACT.read_text(encoding="utf-8"), FULL_CONTRACT.name)
    assert model.name == "saas-example"
    assert model.version == "1"
    assert len(model.fit) == 8
    assert len(model.engagement) == 9
    assert model.half_life == 30 * 86400
    assert model.lifecycle.accept_within == 24 * 3600
    assert model.lifecycle.requalify_after == 30 * 86400
    assert [name for name, _ in model.qualification.tiers][:3] == ["hot", "warm", "cool"]
    assert [name for name, _ in model.qualification.grades] == ["A", "B", "C", "D"]
    assert model.qualification.pql is not None
    assert model.qualification.pql.all == ("invited teammates", "used core feature 5 times")
    assert [r.name for r in model.routing][-1] == "everyone else"
    kinds = {r.kind for r in model.engagement}
    assert kinds == {"each", "times", "once"}
    used = set().union(*(_operators(r.when) for r in model.fit))
    used |= set().union(*(_operators(r.where) for r in model.engagement if r.where))
    assert used == set(OPERATORS)
