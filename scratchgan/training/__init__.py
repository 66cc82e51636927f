"""Training: Algorithm 1 and everything around it.

    step.py        GANStep: G, D, optimisers, loss, the seeded streams and train_step()  (read this first)
    loop.py        fit(step, total, callbacks): runs steps, calls the hooks, agrees a stop across ranks
    callbacks.py   StopOnSignal, ReplicaCheck, MetricsLog, ProgressBar, Checkpoints
    guard.py       the divergence guard (DivergenceError) and its callback
    artefacts.py   sample and monitor grids, loss plot, progress.gif, report.html (callback)
    trainer.py     Trainer: a GANStep with a run folder and those callbacks (what `scratchgan train` runs)
    recipes.py     the tuned recipes: recipe("dcgan") and train("dcgan", out=...)
    config.py      TrainConfig and each loss family's defaults
    runfolder.py   what a run folder holds: RunFolder, load_run, --overwrite's and pruning's rules
    checkpoint.py  the checkpoint format (.npz + .json, never pickle)
    report.py      the monitor grid, progress.gif and report.html
    ema.py         G's moving average;  distributed.py: data-parallel ranks (MPI)
"""
from .checkpoint import CheckpointError
from .config import LOSS_DEFAULTS, MAX_EPOCHS, TrainConfig
from .guard import MAX_LOSS, MAX_NORM, DivergenceError
from .loop import Callback, fit
from .runfolder import METRIC_FIELDS, RunFolder, load_run
from .step import GANStep
from .trainer import Trainer

__all__ = ["TrainConfig", "GANStep", "Trainer", "fit", "Callback", "RunFolder", "load_run", "DivergenceError",
           "CheckpointError", "MAX_LOSS", "MAX_NORM", "LOSS_DEFAULTS", "MAX_EPOCHS", "METRIC_FIELDS"]
