"""What ships and how it is layered: the wheel holds every module of the source tree, and the import contract
(pyproject.toml's [tool.importlinter], run by CI as `lint-imports`) holds on the tree and fails on an upward
import."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from programs import ROOT

PACKAGE = ROOT / "pyro_vae"


def test_the_wheel_holds_every_module(tmp_path):
    # pip builds the wheel with the setuptools already installed (no network); a hand-written package list
    # left the sub-packages out while the editable install hid it
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("pyro_vae-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    source = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")}
    assert source == shipped
    assert {"pyro_vae/models/vae.py", "pyro_vae/inference/ais.py", "pyro_vae/commands/cli.py"} <= shipped


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # the console script beside this interpreter: the venv need not be activated
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent)},
                          capture_output=True, text=True, timeout=120)


def test_the_import_contract_holds_and_fails_on_an_upward_import(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "pyro_vae", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    done = lint_imports(tmp_path)
    assert done.returncode == 0 and "2 kept, 0 broken" in done.stdout, done.stdout + done.stderr
    with open(tmp_path / "pyro_vae" / "models" / "vae.py", "a") as f:
        f.write("\nfrom pyro_vae.runs import report  # upward: models may not know of runs\n")
    with open(tmp_path / "pyro_vae" / "inference" / "iwae.py", "a") as f:
        f.write("\nfrom pyro_vae.models.model import DATA_PLATE  # inference serves any model\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "pyro_vae.models.vae -> pyro_vae.runs.report" in done.stdout, done.stdout
    assert "pyro_vae.inference.iwae -> pyro_vae.models.model" in done.stdout, done.stdout
