"""The README a new user follows points only at what a clone has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_points_at_nothing_outside_the_clone() -> None:
    """Issue 15: the README sent readers to `../shared/…`, which a clone does not have."""
    assert "../shared" not in README and "shared folder" not in README


def test_every_file_the_readme_names_exists() -> None:
    """Paths in backticks and relative links (`docs/…`, `deploy/nginx.conf`, …) exist in the clone."""
    named = set(re.findall(r"`((?:docs|deploy|gusher|tests|bench|reliability)/[\w./-]+)`", README))
    named |= set(re.findall(r"\]\(((?:docs|deploy)/[\w./-]+)\)", README))
    named |= {
        name for name in re.findall(r"`([\w.-]+\.(?:py|yaml|md|conf|example))`", README) if "/" not in name
    }
    assert named, "the check found no paths at all"
    missing = [name for name in sorted(named) if not (ROOT / name).exists() and not list(ROOT.rglob(name))]
    assert missing == []
