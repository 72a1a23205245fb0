"""Every example in pyfit's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil
import warnings

import pytest

import pyfit

MODULES = sorted(info.name for info in pkgutil.walk_packages(pyfit.__path__, "pyfit.")
                 if not info.name.endswith(("._C", ".__main__")))  # __main__ runs the command


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an example may step a scheduler on its own, as torch then warns
        failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failed == 0, f"{failed} docstring example(s) of {name} failed; run python -m doctest -v on it"
