"""Running the scripts in tests: in this process (fast, monkeypatchable) or as a subprocess (signals,
exit statuses, start-up), with the repository root and a tiny run's flags."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
TINY = ["--epochs", "2", "--z-dim", "2", "--hidden", "16", "--batch-size", "16", "--eval-samples", "20",
        "--no-download", "--no-progress"]
OUTPUTS = ["checkpoint.pt", "metrics.json", "history.csv", "reconstructions.png", "samples.png", "learning_curve.png"]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(name, argv):
    """The script's exit status: main's return value, or argparse's SystemExit code."""
    module = script(name)
    try:
        return module.main(module.run, [str(a) for a in argv])
    except SystemExit as exit:
        return exit.code


def run_subprocess(name, argv, cwd):
    # a fresh user cache: ArviZ shows its once-a-day FutureWarning there, so a leak would show
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(Path(cwd) / ".cache")}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *map(str, argv)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
