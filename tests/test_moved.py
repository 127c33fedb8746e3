"""0.1.0's flat module paths still import in 0.2.0, as the very modules at their new paths, with a
DeprecationWarning naming the new path (CHANGELOG.md)."""

import importlib
import sys

import pytest

from pyro_vae._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_module_path_is_the_new_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, f"pyro_vae.{old}", raising=False)  # import it afresh, so that it warns
    with pytest.warns(DeprecationWarning, match=f"pyro_vae.{old} moved to pyro_vae.{new}"):
        module = importlib.import_module(f"pyro_vae.{old}")
    assert module is importlib.import_module(f"pyro_vae.{new}")


def test_the_old_data_and_evaluation_modules_answer_from_their_packages():
    from pyro_vae.data.datasets import load_dataset
    from pyro_vae.evaluation.bounds import evaluate_bounds

    with pytest.warns(DeprecationWarning, match="pyro_vae.data.datasets.load_dataset"):
        from pyro_vae.data import load_dataset as old_load
    with pytest.warns(DeprecationWarning, match="pyro_vae.evaluation.bounds.evaluate_bounds"):
        from pyro_vae.evaluation import evaluate_bounds as old_evaluate
    assert old_load is load_dataset and old_evaluate is evaluate_bounds
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        importlib.import_module("pyro_vae.data").nonsense  # noqa: B018
