"""docs/privacy.md: every claim [Cn] in the text has a row in the claims table, every row
names at least one test, and every test named exists (file and function). A claim that loses
its test, or a test renamed away from its claim, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "privacy.md"
ROW = re.compile(r"^\| (C\d+) \| (.*) \|$")
TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def claims_table(text: str) -> dict[str, list[tuple[str, str]]]:
    rows: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            rows[m.group(1)] = TEST.findall(m.group(2))
    return rows


def problems(text: str) -> list[str]:
    rows = claims_table(text)
    found: list[str] = []
    cited = set(re.findall(r"\*\*\[(C\d+)\]\*\*", text))
    found += [f"{c} is claimed in the text but has no row" for c in sorted(cited - set(rows))]
    found += [f"{c} has a row but is claimed nowhere" for c in sorted(set(rows) - cited)]
    for claim, tests in rows.items():
        if not tests:
            found.append(f"{claim} names no test")
        for file, name in tests:
            path = ROOT / file
            if not path.is_file():
                found.append(f"{claim}: {file} does not exist")
            elif name not in _tests_in(path):
                found.append(f"{claim}: {file} has no {name}")
    return found


def test_every_privacy_claim_names_an_existing_test():
    text = DOC.read_text(encoding="utf-8")
    assert len(claims_table(text)) >= 30
    assert problems(text) == []


def test_a_claim_that_loses_its_test_fails():
    """The check itself can fail: a row without a test, a renamed test, an uncited claim."""
    text = DOC.read_text(encoding="utf-8")
    lost = re.sub(r"^\| C4 \| .* \|$", "| C4 | (none) |", text, flags=re.M)
    assert "C4 names no test" in problems(lost)
    renamed = text.replace("test_close_up_frames_are_never_stored", "test_close_ups_gone")
    assert any("has no test_close_ups_gone" in p for p in problems(renamed))
    extra = text + "\nA new promise **[C99]**.\n"
    assert "C99 is claimed in the text but has no row" in problems(extra)
