"""MkDocs hook: the README becomes the page readme.md, and links between it and docs/ are rewritten to
work inside the site (on GitHub they point across the folder, ../README.md and docs/...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[1] / "README.md"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "readme.md", abs_src_path=str(README)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri == "readme.md":
        return markdown.replace("](docs/", "](")
    return markdown.replace("](../README.md", "](readme.md")
