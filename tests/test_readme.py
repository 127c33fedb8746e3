"""The README's commands are the ones CI runs, so the quickstart cannot drift from what is tested."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in ('pip install -e ".[dev]"', "python -m pytest"):
        assert command in ci, command
        assert command in readme, command
