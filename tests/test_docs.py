"""Every ```python block in README.md and docs/*.md runs, so the examples cannot rot; the site builds."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(code, id=f"{page.name}:{n}")
    for page in PAGES
    for n, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S), 1)
]


def test_there_are_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS)
def test_example_runs_and_runs_again(code, tmp_path, monkeypatch):
    """Twice in one folder, as a notebook cell runs again: the notebook example's second run refused the folder its
    first run wrote."""
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    for _ in range(2):
        exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_the_documentation_site_builds_clean(tmp_path):
    """mkdocs build --strict (warnings are errors: broken links, unresolvable API entries) puts every name
    of pyro_vae.__all__ on the API page, the README among the pages, and every figure beside its page."""
    import pyro_vae

    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    documented = set(re.findall(r'id="pyro_vae\.(?:\w+\.)*(\w+)"', api)) | set(re.findall(r"<code>(\w+)</code>", api))
    missing = [n for n in pyro_vae.__all__ if n not in documented]
    assert not missing, missing
    assert "annealed importance sampling" in (site / "readme" / "index.html").read_text()  # the README, rendered
    # every page keeps its figures: each figure a page shows is an <img> there that resolves to the PNG
    for page in (ROOT / "docs").glob("*.md"):
        html_page = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        sources = re.findall(r'<img [^>]*src="([^"]+\.png)"', html_page.read_text())
        shown = {(html_page.parent / src).resolve() for src in sources}
        for figure in re.findall(r"\(figures/([\w.-]+\.png)\)", page.read_text()):
            assert (site / "figures" / figure).resolve() in shown, (page.name, figure)
            assert (site / "figures" / figure).stat().st_size > 1000, (page.name, figure)
