"""A linear fit on several processes, streamed from a file larger than the chunk it reads at a time.

    torchrun --nproc-per-node 2 examples/distributed_fit.py    # two processes (gloo on one machine)
    python examples/distributed_fit.py                         # one process: the same parameters

Rank 0 writes y = X w + b + noise to a .npy file; every process opens it with
`pyfit.open_rows` and calls the same `pyfit.fit`. Each rank reads only its own
rows, CHUNK_MB at a time, the ranks add their gradients before every step, and
all of them end with the same model. Rank 0 alone prints it and writes the
checkpoint. On several machines, put the file where every machine reads it.
"""

import os

import numpy as np

import pyfit

# settings
SEED = 0
ROWS = 100_000
TRUE_W, TRUE_B = [1.5, -2.0, 0.5, 3.0], 0.7
NOISE = 0.1
CHUNK_MB = 0.5  # rows read at a time; the file (1.9 MB of float32) is larger, so the fit streams it
EPOCHS = 100
OUT = os.environ.get("PYFIT_EXAMPLES_OUT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "output"))
DATA = os.path.join(OUT, "distributed_fit.npy")
CHECKPOINT = os.path.join(OUT, "distributed_fit.pt")

world = pyfit.distributed.init()  # joins torchrun's processes; None when this process runs alone
first = world is None or world.rank == 0
if first:
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((ROWS, len(TRUE_W)))
    y = X @ TRUE_W + TRUE_B + NOISE * rng.standard_normal(ROWS)  # (N, 4) @ (4,) -> (N,)
    np.save(DATA, np.column_stack([X, y]).astype(np.float32))  # columns "0".."3": features, "4": target
if world is not None:
    world.agree(None, "the data file")  # the other ranks wait here until rank 0 has written it

rows = pyfit.open_rows(DATA, target=str(len(TRUE_W)))
result = pyfit.fit("linear", rows, None, epochs=EPOCHS, seed=SEED, chunk_mb=CHUNK_MB, checkpoint=CHECKPOINT)

if first:
    w = result.model.weight.detach().flatten().tolist()
    b = result.model.bias.item()
    processes = 1 if world is None else world.size
    print(f"fit on {processes} process{'es' if processes > 1 else ''}: {rows.rows} rows of {DATA}, "
          f"read {CHUNK_MB} MB at a time")
    print(f"w = [{', '.join(f'{v:.9g}' for v in w)}], b = {b:.9g}   (true: w = {TRUE_W}, b = {TRUE_B})")
    print(f"final loss = {result.final_loss:.9g}, r2 = {result.scores['r2']:.6f}")
    print(f"lr = {result.lr_chosen:.6g} ({result.lr_reason})")
    print(f"backend = {result.backend}, {result.epochs} epochs, {result.seconds:.2f} s")
    print(f"checkpoint = {CHECKPOINT}")
