"""pyfit: fit models to data with PyTorch in a few lines, with a fused C++/CUDA hot loop.

>>> import torch, pyfit
>>> x = torch.rand(50); y = 3 * x + 0.8
>>> result = pyfit.fit("linear", x, y, lr=0.1, epochs=3000, seed=0)
>>> round(result.model.weight.item(), 2)
3.0

The public names below are imported on their first use (PEP 562), not by
``import pyfit``: the ``pyfit`` command imports this package before its parser,
and ``pyfit --help`` or a usage error must not wait seconds for torch.
"""

import importlib
import sys
import types
from typing import Any, List

from ._version import __version__

# each public name -> the module that defines it; the first use of any of them imports
# them all, in this order, as `import pyfit` once did: the registries then hold every built-in
_HOMES = {
    "ops": "ops",
    "distributed": "distributed",
    "BestParameters": "callbacks",
    "Callback": "callbacks",
    "Convergence": "callbacks",
    "EarlyStopping": "callbacks",
    "FitState": "callbacks",
    "LRScheduling": "callbacks",
    "Checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Comparison": "compare",
    "compare": "compare",
    "Dataset": "data",
    "load_data": "data",
    "CheckpointError": "errors",
    "DataError": "errors",
    "DistributedError": "errors",
    "InputError": "errors",
    "PluginError": "errors",
    "UnknownNameError": "errors",
    "fit": "fit",
    "LRFinder": "learning_rate",
    "find_lr": "learning_rate",
    "LossFunction": "losses",
    "build_loss": "losses",
    "MLP": "models",
    "Linear": "models",
    "Polynomial": "models",
    "build_model": "models",
    "SGD": "optimizers",
    "build_optimizer": "optimizers",
    "plot_fit": "plot",
    "plot_loss": "plot",
    "plot_losses": "plot",
    "plot_predictions": "plot",
    "predict": "predict",
    "LOSSES": "registry",
    "MODELS": "registry",
    "OPTIMIZERS": "registry",
    "SCHEDULERS": "registry",
    "Registry": "registry",
    "FitResult": "result",
    "RowFile": "row_files",
    "open_rows": "row_files",
    "build_scheduler": "schedulers",
}


# public names that are modules themselves
_SUBPACKAGES = ("ops", "distributed")


def _import_public_names() -> None:
    for name, home in _HOMES.items():
        module = importlib.import_module(f"{__name__}.{home}")
        globals()[name] = module if name in _SUBPACKAGES else getattr(module, name)


def __getattr__(name: str) -> Any:
    # Regressor needs scikit-learn, an optional extra: import it on first use only,
    # so that using pyfit never imports sklearn
    if name == "Regressor":
        _import_public_names()
        from .estimator import Regressor

        globals()[name] = Regressor
        return Regressor
    if name not in _HOMES:
        raise AttributeError(f"module 'pyfit' has no attribute {name!r}")
    if name in _SUBPACKAGES:  # the module alone: pyfit's own modules `from . import ops` while they load
        return importlib.import_module(f"{__name__}.{name}")
    _import_public_names()
    return globals()[name]


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """pyfit itself. Importing a submodule binds it to the package's attribute of the
    same name; ``pyfit.fit``, ``pyfit.compare`` and ``pyfit.predict`` must stay the
    functions, whichever of their modules is imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == name and name not in _SUBPACKAGES:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "BestParameters",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "Comparison",
    "Convergence",
    "DataError",
    "Dataset",
    "DistributedError",
    "EarlyStopping",
    "FitResult",
    "FitState",
    "InputError",
    "LOSSES",
    "LRFinder",
    "LRScheduling",
    "Linear",
    "LossFunction",
    "MLP",
    "MODELS",
    "OPTIMIZERS",
    "PluginError",
    "Polynomial",
    "Registry",
    "Regressor",
    "RowFile",
    "SCHEDULERS",
    "SGD",
    "UnknownNameError",
    "__version__",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "compare",
    "distributed",
    "find_lr",
    "fit",
    "load_checkpoint",
    "load_data",
    "open_rows",
    "ops",
    "plot_fit",
    "plot_loss",
    "plot_losses",
    "plot_predictions",
    "predict",
    "save_checkpoint",
]
