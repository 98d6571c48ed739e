"""The documentation keeps up with the code."""

from __future__ import annotations

from pathlib import Path

from klasblik.server.settings import SETTINGS

ROOT = Path(__file__).parents[1]


def test_every_setting_is_documented():
    """docs/configuration.md has a row for every setting, with its environment variable."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` | `{s.env}` |" not in doc]
    assert missing == []


def test_readme_starts_with_the_two_commands():
    """The README's first commands are the run and test scripts, and .ci/run calls the test one."""
    readme = (ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "scripts/run" in head and "scripts/test" in head
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
