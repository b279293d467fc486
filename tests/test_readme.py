"""The README stays true: its configuration table matches Settings, its first lines are the two
setup commands, and CI runs exactly its test command.

``python tests/test_readme.py`` prints the table's first three columns as generated from Settings.
"""

from __future__ import annotations

import re
from pathlib import Path

from raychat.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def env_var(field: str) -> str:
    return "RAYCHAT_" + field.upper()


def render_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path) and not value.is_absolute():
        return f"`./{value}`"
    return f"`{value}`"


def generated_rows() -> dict[str, tuple[str, str]]:
    return {name: (env_var(name), render_default(field.default))
            for name, field in Settings.model_fields.items()}


def readme_table() -> dict[str, tuple[str, str]]:
    """{field: (env var, default)} from the rows of the README's "## Configuration" section."""
    text = README.read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (m := re.fullmatch(r"`(\w+)`", cells[0])):
            rows[m.group(1)] = (cells[1].strip("`"), cells[2])
    return rows


def readme_commands() -> list[str]:
    """The first lines of the README that are commands (inside its opening code block)."""
    lines = README.read_text().splitlines()
    assert lines[0].startswith("```"), "the README must open with the two setup commands"
    end = lines.index("```", 1)
    return lines[1:end]


def test_every_setting_is_in_the_readme_table_with_its_env_var_and_default():
    table = readme_table()
    for name, (env, default) in generated_rows().items():
        assert name in table, f"README configuration table lacks {name} ({env}); see tests/test_readme.py"
        assert table[name] == (env, default), f"README row for {name}: {table[name]} != {(env, default)}"


def test_the_readme_table_lists_no_setting_that_does_not_exist():
    assert set(readme_table()) <= set(Settings.model_fields)


def test_the_readme_opens_with_the_run_and_test_commands():
    run, test = readme_commands()
    for line in (run, test):
        assert line.startswith("python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]' && ")
    assert run.endswith("raychat up")
    assert test.endswith("-m pytest")


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


if __name__ == "__main__":
    print("| setting | environment variable | default |")
    print("|---|---|---|")
    for name, (env, default) in generated_rows().items():
        print(f"| `{name}` | `{env}` | {default} |")
