"""pyfit: fit models to data with PyTorch in a few lines, with a fused C++/CUDA hot loop.

>>> import torch, pyfit
>>> x = torch.rand(50); y = 3 * x + 0.8
>>> result = pyfit.fit("linear", x, y, lr=0.1, epochs=3000, seed=0)
>>> round(result.model.weight.item(), 2)
3.0
"""

from ._version import __version__
from . import ops
from .callbacks import BestParameters
from .callbacks import Callback
from .callbacks import Convergence
from .callbacks import EarlyStopping
from .callbacks import FitState
from .callbacks import LRScheduling
from .checkpoint import Checkpoint
from .checkpoint import load_checkpoint
from .checkpoint import save_checkpoint
from .compare import Comparison
from .compare import compare
from .data import Dataset
from .data import load_data
from .errors import CheckpointError
from .errors import DataError
from .errors import InputError
from .errors import PluginError
from .errors import UnknownNameError
from .fit import fit
from .learning_rate import LRFinder
from .learning_rate import find_lr
from .losses import LossFunction
from .losses import build_loss
from .models import MLP
from .models import Linear
from .models import Polynomial
from .models import build_model
from .optimizers import SGD
from .optimizers import build_optimizer
from .plot import plot_fit
from .plot import plot_loss
from .plot import plot_losses
from .plot import plot_predictions
from .predict import predict
from .registry import LOSSES
from .registry import MODELS
from .registry import OPTIMIZERS
from .registry import SCHEDULERS
from .registry import Registry
from .result import FitResult
from .schedulers import build_scheduler


def __getattr__(name: str):
    # Regressor needs scikit-learn, an optional extra: import it on first use only,
    # so that `import pyfit` never imports sklearn
    if name == "Regressor":
        from .estimator import Regressor

        return Regressor
    raise AttributeError(f"module 'pyfit' has no attribute {name!r}")


__all__ = [
    "BestParameters",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "Comparison",
    "Convergence",
    "DataError",
    "Dataset",
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
    "SCHEDULERS",
    "SGD",
    "UnknownNameError",
    "__version__",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "compare",
    "find_lr",
    "fit",
    "load_checkpoint",
    "load_data",
    "ops",
    "plot_fit",
    "plot_loss",
    "plot_losses",
    "plot_predictions",
    "predict",
    "save_checkpoint",
]
