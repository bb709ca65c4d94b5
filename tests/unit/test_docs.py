"""docs/ builds as a site with MkDocs in strict mode: a broken link or anchor, or a page left
out of the navigation, fails the build (and so the tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(root / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docs_build_without_a_warning(tmp_path: Path) -> None:
    built = build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def build_with(tmp_path: Path, line: str) -> subprocess.CompletedProcess:
    """Build a copy of the docs with `line` appended to one page."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "mkdocs.yml", copy)
    shutil.copytree(REPO / "docs", copy / "docs")
    page = copy / "docs" / "clients.md"
    page.write_text(page.read_text() + f"\n{line}\n")
    return build(copy, tmp_path / "site")


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    built = build_with(tmp_path, "See [the missing page](missing.md#nowhere).")
    assert built.returncode != 0
    assert "missing.md" in built.stderr


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    built = build_with(tmp_path, "See [tokens](access-control.md#no-such-heading).")
    assert built.returncode != 0
    assert "no-such-heading" in built.stderr
