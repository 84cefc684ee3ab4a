"""`.env.example` lists every setting, with its default, and loads."""

from __future__ import annotations

import re
from pathlib import Path

from crm_gateway.config import PROJECT_ROOT, Settings

ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
# `NAME=value`, or `# NAME=` for a setting that is unset (None) by default.
_ENTRY = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def _entries() -> dict[str, tuple[bool, str]]:
    """NAME -> (commented out, value) for every entry of `.env.example`."""
    entries: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENTRY.match(line.strip())
        if match:
            name = match.group(2)
            assert name not in entries, f"{name} is listed twice in .env.example"
            entries[name] = (match.group(1) is not None, match.group(3))
    return entries


def test_every_setting_is_listed_and_nothing_else() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    listed = set(_entries())
    assert not fields - listed, f"settings missing from .env.example: {sorted(fields - listed)}"
    assert not listed - fields, f".env.example lists unknown settings: {sorted(listed - fields)}"


def test_unset_entries_are_exactly_the_none_defaults() -> None:
    for name, (commented, value) in _entries().items():
        default = Settings.model_fields[name.lower()].default
        if commented:
            assert default is None, f"{name} is commented out but defaults to {default!r}"
            assert value == "", f"commented-out {name} should read `# {name}=`"
        else:
            assert default is not None, f"{name} defaults to None: write it as `# {name}=`"


def test_every_entry_has_a_comment_line_above_it() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = _ENTRY.match(line.strip())
        if match:
            above = lines[index - 1].strip() if index else ""
            message = f"{match.group(2)} needs a one-line comment above it"
            assert above.startswith("#"), message
            assert not _ENTRY.match(above), message


def test_env_example_loads_with_the_default_values() -> None:
    assert Path(ENV_EXAMPLE).is_file()
    from_example = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    # Real environment variables win over both, so this compares the file with the defaults.
    for name in Settings.model_fields:
        assert getattr(from_example, name) == getattr(defaults, name), (
            f"{name.upper()} in .env.example differs from the default in config.py"
        )
