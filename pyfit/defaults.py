"""pyfit's defaults, in one table: ``fit``, ``Regressor``, the callbacks and the ``pyfit``
command read them here, and the command's ``--help`` prints them from here.

This module imports nothing, so that ``pyfit --help`` stays free of torch.
"""

MODEL = "linear"
LOSS = "mse"
OPTIMIZER = "sgd"
LR = "auto"  # fit chooses the rate from the data (learning_rate.py)
# what an optimizer given by name starts from when fit is told lr=None; pyfit.SGD itself
# keeps torch.optim.SGD's own default (1e-3), as a drop-in for it must
LR_WHEN_NONE = 0.01
# caps on epochs (a fit stops earlier once its loss stops improving, see TOL): an epoch of
# least-squares SGD costs one read of the data, an autograd epoch many times that
EPOCHS_LEAST_SQUARES = 10_000
EPOCHS = 1_000
# a fit has converged when its loss improved by less than TOL (relative to its best) for
# N_ITER_NO_CHANGE epochs in a row
TOL = 1e-5
N_ITER_NO_CHANGE = 5
# pyfit compare: an optimizer reaches the goal when all but this share of the gap from
# the starting loss to the best loss is closed
COMPARE_TOL = 1e-3
COMPARE_EPOCHS = 100
COMPARE_OPTIMIZERS = ("sgd", "adam")
# pyfit demo: y = 3x + 0.8 on 50 points, full-batch SGD
DEMO_EPOCHS = 3000
DEMO_LR = 0.1
DEMO_SEED = 0
# a fit on a data file (pyfit.open_rows, pyfit fit FILE) holds at most about this many MB of
# its rows at once: rows beyond it are read again a chunk of this size at a time every epoch
CHUNK_MB = 256.0
