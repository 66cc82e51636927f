"""The command line: a thin layer over the library (each command calls public functions).

    scratchgan train --model dcgan --steps 2000 --out runs/dcgan
    scratchgan sample runs/dcgan
    scratchgan interpolate runs/dcgan --mode slerp
    scratchgan inpaint runs/cgan --mask bottom --data-dir ../shared/data/mnist
    scratchgan evaluate runs/dcgan --data-dir ../shared/data/mnist
    scratchgan judge train --dataset folder:~/pictures --channels 3 --image-size 32
    scratchgan gradcheck
    scratchgan bench

Every value is checked where it is parsed, and every anticipated failure ends in one line on
stderr starting "error:" and an exit code (docs/reliability.md):

    0  done                          1  the work failed (training diverged, a gradient check
    2  usage or input error              failed, a write failed mid-run: disk full, ...)
       (bad flag value, missing or   130 / 143  stopped by Ctrl-C / SIGTERM (train saves first)
       bad file, unwritable output)
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from .files.safeio import MAX_IMAGE_PIXELS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# The ranks of a data-parallel command (train and bench under mpiexec), for the error paths of main().
_RANKS = [None]
# True while a data-parallel train checks its flags, run folder, data and model, before rank 0 changes
# anything: an error then is compared among the ranks (_agree), said once by rank 0, and ends no rank.
_CHECKING = [False]

# Each --model's recipe: builder arguments and training settings for the flags not given (a loss
# family's own recipe, LOSS_DEFAULTS, comes first). The "-tutorial" models are the seed tutorials'
# networks and settings as they were; the plain names are tuned for good samples per CPU minute
# (docs/results.md has the search that chose them).
TUTORIAL = {"mlp": dict(model_args={}, train=dict(steps=10000, batch_size=64)),
            "cgan": dict(model_args={}, train=dict(steps=10000, batch_size=64)),
            "dcgan": dict(model_args={}, train=dict(steps=1000, batch_size=64))}
RECIPES = {**{f"{k}-tutorial": v for k, v in TUTORIAL.items()},
           # G 100-256-512-784 and D 784-512-256-1, LeakyReLU, tanh pixels, dropout and the batch's spread in D
           "mlp": dict(model_args=dict(g_hidden=[256, 512], d_hidden=[512, 256], activation="leaky_relu",
                                       output="tanh", dropout=0.3, minibatch_std=True),
                       train=dict(steps=7500, batch_size=64, lr=1e-3, ema=0.999)),
           # the tutorial's widths with a projection discriminator and no dropout, at a higher rate
           "cgan": dict(model_args=dict(projection=True, dropout=0.0),
                        train=dict(steps=20000, batch_size=64, lr=5e-4, ema=0.999)),
           # narrower networks (many more, cheaper steps), no dropout but spectral norm in D, batch 32,
           # G at 2x D's rate; the widths are for 28x28 images (one count per stage), other sizes keep
           # DCGAN_CHANNELS
           "dcgan": dict(model_args=dict(dropout=0.0, spectral_norm=True),
                         channels={28: dict(g_channels=(128, 64, 32), d_channels=(32, 64))},
                         train=dict(steps=9500, batch_size=32, lr=4e-3, lr_g=8e-3, ema=0.999))}
# Defaults of the train flags. The parser itself defaults them to None, so that --resume can tell
# a flag the user gave (to honour or refuse) from one left out.
TRAIN_DEFAULTS = dict(model="mlp", dataset="mnist", loss="bce", optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999,
                      k=1, lr_decay="none", g_loss="nonsaturating", label_smoothing=0.0, instance_noise=0.0,
                      gp_weight=10.0, clip=None, dtype="float32", seed=0, log_every=50, sample_every=500,
                      checkpoint_every=1000)
# --resume honours these (the change is recorded in config.json's history) ...
RESUMABLE = ("steps", "epochs", "lr", "lr_d", "lr_g", "lr_decay", "beta1", "beta2", "k", "g_loss", "label_smoothing",
             "instance_noise", "gp_weight", "clip", "log_every", "sample_every", "checkpoint_every")
# ... and refuses a change of these: they define the model, the data, the objective or the random streams.
FIXED_ON_RESUME = ("model", "dataset", "classes", "batch_size", "dtype", "seed", "loss", "optimizer", "ema",
                   "latent_dim", "noise", "upsample", "g_hidden", "d_hidden", "d_dropout", "spectral_norm", "projection",
                   "activation", "g_output", "minibatch_std",
                   "channels", "image_size")


_DEVICE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.EFBIG, errno.ENOMEM}


# a builder argument a checkpoint leaves out has its default (models record only what differs)
_BUILDER_DEFAULTS = {"spectral_norm": False, "projection": False, "minibatch_std": False, "activation": "relu",
                     "output": "sigmoid", "dropout": 0.0}


class UsageError(ValueError):
    """A flag's value that does not fit the run or the situation (exit code 2)."""


# --------------------------------------------------------------------------- value parsers
def _integer(lo, hi=None):
    def parse(text):
        what = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


def _number(lo, hi=math.inf, lo_open=False, hi_open=False):
    interval = (f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}" if hi < math.inf
                else f"{'>' if lo_open else '>='} {lo:g}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {'in ' * (hi < math.inf)}{interval}, "
                                             f"got {text!r}") from None
        inside = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
        if not math.isfinite(value) or not inside:
            raise argparse.ArgumentTypeError(f"expected a number {'in ' * (hi < math.inf)}{interval}, got {text!r}")
        return value
    return parse


def _int_list(lo, hi, max_len):
    def parse(text):
        parts = [t.strip() for t in text.split(",")]
        try:
            values = [int(t) for t in parts]
        except ValueError:
            values = None
        if not values or len(values) > max_len or any(v < lo or v > hi for v in values):
            raise argparse.ArgumentTypeError(f"expected 1 to {max_len} comma-separated integers in {lo}..{hi}, "
                                             f"got {text!r}")
        return values
    return parse


def _path(text):
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text


def _classes(text):
    parts = [t.strip() for t in text.split(",")]
    if not all(parts) or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected class labels or names separated by commas, e.g. 2 or 0,1,2; "
                                         f"got {text!r}")
    return [int(c) if c.isdigit() else c for c in parts]


def _image_shapes(text):
    shapes = []
    for part in text.split(","):
        dims = part.strip().lower().split("x")
        if len(dims) != 3 or not all(d.isdigit() for d in dims) or int(dims[0]) not in (1, 3) \
                or dims[1] != dims[2] or int(dims[1]) not in (28, 32, 64):
            raise argparse.ArgumentTypeError(f"expected CxHxW shapes with C 1 or 3 and H = W in 28, 32, 64, "
                                             f"e.g. 3x32x32; got {part!r}")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def _names(choices):
    def parse(text):
        names = [t.strip() for t in text.split(",")]
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}; got {text!r}")
        return names
    return parse


_threads = _integer(1, 1024)   # --threads and $SCRATCHGAN_THREADS


# --------------------------------------------------------------------------- helpers
# Set by the user, these fix the BLAS library's threads before NumPy loads it; scratchgan then leaves them.
_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _use_backend(args, comm=None, heavy=False):
    """The backend (--backend, $SCRATCHGAN_BACKEND) and the BLAS threads: --threads, else
    $SCRATCHGAN_THREADS; under mpiexec the machine's cores shared among its ranks (``comm``), so
    that ranks do not fight over them; else, for the ``heavy`` commands (train, bench, evaluate, inpaint), the cores
    other processes leave idle when it starts (backend.idle_cores; docs/performance.md): BLAS
    threads on a core another process holds wait for it and slow every product several times.
    Where $OPENBLAS_NUM_THREADS (or OMP_, MKL_, BLIS_) is set, that choice stands."""
    from . import backend
    if args.backend:
        backend.use(args.backend)
    else:
        backend.name()  # a bad SCRATCHGAN_BACKEND is reported here, as an error line
    n = getattr(args, "threads", None)
    if n is None and os.environ.get("SCRATCHGAN_THREADS"):
        text = os.environ["SCRATCHGAN_THREADS"]
        try:
            n = _threads(text.strip())        # the range of --threads
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"SCRATCHGAN_THREADS: {exc}") from None
    if n is None and comm is not None and comm.size > 1:
        n = max(1, backend.available_cores() // comm.local_size())
    if n is None and heavy and backend.name() == "numpy" and not any(os.environ.get(v) for v in _BLAS_VARIABLES):
        cores, idle = backend.available_cores(), backend.idle_cores()
        if idle < cores:
            n = idle
            _note(f"{cores - idle} of {cores} cores are busy with other processes: using {idle} thread(s) for "
                  f"matrix products (--threads N to choose)")
    if n is not None:
        backend.set_threads(n)


def _note(msg):
    """A "note: ..." line on stderr (from rank 0 alone in a data-parallel run)."""
    if _RANKS[0] is None or _RANKS[0].rank == 0:
        print(f"note: {msg}", file=sys.stderr, flush=True)


def _say(args, msg):
    if not getattr(args, "quiet", False):
        print(msg, flush=True)


def _output_file(path, flag) -> Path:
    """Check an output file's place before the work that makes it."""
    from .training.runfolder import check_writable
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    check_writable(path.parent, f"{flag} {path}")
    return path


def _check_label(gan, label, flag="--label"):
    if label is None:
        return
    if not gan.conditional:
        raise UsageError(f"{flag} {label}: this run's model ({gan.kind}) is unconditional; {flag} applies to "
                         "conditional (cgan) runs")
    if not 0 <= label < gan.num_classes:
        raise UsageError(f"{flag}: expected a class in 0..{gan.num_classes - 1} for this run, got {label}")


# --------------------------------------------------------------------------- train
def _model_args(args, model) -> dict:
    """Builder arguments from the model flags that were given."""
    given = {}
    if args.latent_dim is not None:
        given["latent_dim"] = args.latent_dim
    if args.noise is not None:
        given["noise"] = args.noise
    if args.spectral_norm is not None:
        given["spectral_norm"] = args.spectral_norm
    if args.projection is not None:
        if not model.startswith("cgan"):
            raise UsageError(f"--{'' if args.projection else 'no-'}projection applies to the cgan models, not {model}")
        given["projection"] = args.projection
    if args.d_dropout is not None:
        given["dropout"] = args.d_dropout
    for flag, value, key in (("--activation", args.activation, "activation"), ("--g-output", args.g_output, "output")):
        if value is not None:
            if not model.startswith("mlp"):
                raise UsageError(f"{flag} applies to the mlp models, not {model}")
            given[key] = value
    if args.minibatch_std is not None:
        if model.startswith("cgan"):
            raise UsageError(f"--[no-]minibatch-std applies to the mlp and dcgan models, not {model}")
        given["minibatch_std"] = args.minibatch_std
    if args.upsample is not None:
        if not model.startswith("dcgan"):
            raise UsageError(f"--upsample applies to --model dcgan only, not {model}")
        given["upsample"] = args.upsample
    for flag, value, mlp_name, conv_name in (("--g-hidden", args.g_hidden, "g_hidden", "g_channels"),
                                             ("--d-hidden", args.d_hidden, "d_hidden", "d_channels")):
        if value is None:
            continue
        if model.startswith("dcgan"):   # one channel count per stage: 3 for 28x28 and 32x32, 4 for 64x64 (models.dcgan checks)
            given[conv_name] = value
        else:
            given[mlp_name] = value
    return given


def _new_config(args):
    from . import backend
    from .training import TrainConfig
    from .training import LOSS_DEFAULTS
    model, loss = args.model or TRAIN_DEFAULTS["model"], args.loss or TRAIN_DEFAULTS["loss"]
    recipe = RECIPES[model]
    # what is not given comes from the loss family's recipe, then the model's, then the defaults
    d = {**TRAIN_DEFAULTS, **recipe["train"], **LOSS_DEFAULTS[loss]}
    if args.lr is not None or "lr" in LOSS_DEFAULTS[loss]:
        # a recipe's two rates are tuned around its own lr: a rate given, or the loss family's, sets both
        d.pop("lr_d", None), d.pop("lr_g", None)
    _check_loss_flags(args, loss, args.optimizer or d["optimizer"])

    def pick(name):
        value = getattr(args, name)
        return d.get(name) if value is None else value

    given = _model_args(args, model)
    model_args = {**recipe["model_args"], **given}
    if loss == "wgan-gp" and "minibatch_std" not in given:
        # the penalty differentiates D twice, per sample; a layer that couples the batch has no such pass
        model_args.pop("minibatch_std", None)
    if loss in ("wgan", "wgan-gp") and "spectral_norm" not in given:
        # these families keep D's slope in check their own way (clipping, the penalty), as in their papers
        model_args.pop("spectral_norm", None)
    ema = None if args.no_ema else pick("ema")
    return TrainConfig(
        model=model, model_args=model_args, dataset=_absolute(pick("dataset")), classes=args.classes,
        steps=pick("steps"), epochs=args.epochs, batch_size=pick("batch_size"),
        loss=loss, optimizer=pick("optimizer"), lr=pick("lr"), lr_d=pick("lr_d"), lr_g=pick("lr_g"),
        lr_decay=pick("lr_decay"), beta1=pick("beta1"), beta2=pick("beta2"), k=pick("k"), g_loss=pick("g_loss"),
        label_smoothing=pick("label_smoothing"), instance_noise=pick("instance_noise"), gp_weight=pick("gp_weight"),
        clip=pick("clip"), ema=ema,
        max_time=args.max_time, seed=pick("seed"), backend=backend.name(), log_every=pick("log_every"),
        sample_every=pick("sample_every"), checkpoint_every=pick("checkpoint_every"), dtype=pick("dtype")).validate()


def _absolute(dataset):
    """folder:PATH with PATH made absolute, as a run records it (so that --resume from another
    directory reads the same folder); other names as given."""
    if dataset and dataset.startswith(FOLDER) and dataset[len(FOLDER):]:
        return FOLDER + os.path.abspath(os.path.expanduser(dataset[len(FOLDER):]))
    return dataset


def _check_loss_flags(args, loss, optimizer):
    """Flags that belong to one loss family or optimiser are refused with another."""
    only = [("--g-loss", args.g_loss, loss == "bce", "--loss bce"),
            ("--label-smoothing", args.label_smoothing, loss == "bce", "--loss bce"),
            ("--gp-weight", args.gp_weight, loss == "wgan-gp", "--loss wgan-gp"),
            ("--beta1", args.beta1, optimizer == "adam", "--optimizer adam"),
            ("--beta2", args.beta2, optimizer == "adam", "--optimizer adam")]
    for flag, value, applies, where in only:
        if value is not None and not applies:
            raise UsageError(f"{flag} applies to {where} only (this run: --loss {loss}, --optimizer {optimizer})")


def _resumed_config(args, out, newest):
    """(config, history) of the run in ``out``: its settings as of the newest checkpoint, with the
    flags given now applied when --resume may change them, and refused when it may not."""
    from . import backend
    from .training.checkpoint import CheckpointError, check_meta, read_meta
    from .training.runfolder import RunFolderError
    from .files.safeio import read_bytes
    from .training import TrainConfig
    meta = check_meta(read_meta(newest), newest)
    try:
        cfg = TrainConfig.from_dict(meta.get("train"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{newest}: its training settings are invalid ({exc})") from None
    model_meta = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    history = []
    config_path = out / "config.json"
    if config_path.exists():
        try:
            history = json.loads(read_bytes(config_path, "run configuration", 16 << 20)).get("history", [])
            if not isinstance(history, list):
                raise ValueError("'history' is not a list")
        except (ValueError, UnicodeDecodeError, AttributeError, OSError) as exc:
            raise RunFolderError(f"{config_path}: not a valid run configuration ({exc}); fix or remove it to "
                                 "resume (the checkpoint holds the run's settings)") from None
    # refused changes
    requested = {"model": args.model, "dataset": _absolute(args.dataset), "classes": args.classes,
                 "batch_size": args.batch_size, "dtype": args.dtype, "seed": args.seed, "loss": args.loss,
                 "optimizer": args.optimizer, "ema": 0.0 if args.no_ema else args.ema}
    current = {"model": cfg.model, "dataset": cfg.dataset, "classes": cfg.classes, "batch_size": cfg.batch_size,
               "dtype": cfg.dtype, "seed": cfg.seed, "loss": cfg.loss, "optimizer": cfg.optimizer,
               "ema": cfg.ema or 0.0}
    _check_loss_flags(args, cfg.loss, cfg.optimizer)
    for name, value in _model_args(args, cfg.model).items():
        requested[name], current[name] = value, model_meta.get(name, _BUILDER_DEFAULTS.get(name))
    shape = model_meta.get("image_shape") or [1, 28, 28]
    requested.update(channels=args.channels, image_size=args.image_size)
    current.update(channels=shape[0], image_size=shape[-1])
    for name, value in requested.items():
        if value is not None and value != current[name]:
            flag = "--" + {"g_channels": "g_hidden", "d_channels": "d_hidden", "dropout": "d_dropout",
                          "output": "g_output"}.get(name, name).replace("_", "-")
            if name == "ema" and args.no_ema:
                flag, value = "--no-ema", "(off)"
            raise UsageError(f"{flag} {_show(value)} differs from the run's {_show(current[name])} and cannot change "
                             f"on --resume (it defines the model, the data or the random streams); start a new run "
                             f"with another --out")
    # honoured changes
    changed = {}
    for name in RESUMABLE:
        value = getattr(args, name)
        if value is not None and value != getattr(cfg, name):
            changed[name] = [getattr(cfg, name), value]
            setattr(cfg, name, value)
    if args.lr is not None:                       # --lr alone sets both networks' rates, as in a new run
        for name in ("lr_d", "lr_g"):
            if getattr(args, name) is None and getattr(cfg, name) is not None:
                changed[name] = [getattr(cfg, name), None]
                setattr(cfg, name, None)
    cfg.max_time = args.max_time                  # a limit for this invocation, not a setting of the run
    if args.steps is not None and args.epochs is None and cfg.epochs is not None:
        changed["epochs"] = [cfg.epochs, None]   # --steps replaces an epoch budget
        cfg.epochs = None
    if backend.name() != cfg.backend:
        changed["backend"] = [cfg.backend, backend.name()]
        cfg.backend = backend.name()
    cfg.validate()
    step = meta.get("step")
    if args.steps is not None and args.epochs is None and isinstance(step, int) and args.steps <= step:
        raise UsageError(f"--steps {args.steps}: the run is already at step {step}; give more steps to continue")
    if changed:
        history = history + [{"step": step, "changed": changed}]
    return cfg, history, changed


def _rate(value):
    """A learning rate as written in papers: 0.0005 -> '5e-4' (2.5e-4 keeps its digits)."""
    short = f"{value:.0e}"
    return (short if float(short) == value else f"{value:g}").replace("e-0", "e-")


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def cmd_train(args):
    from . import backend, data, models
    from .training.checkpoint import list_checkpoints
    from .training.distributed import from_environment
    from .training.runfolder import check_run_folder, check_writable, clear_run, run_files
    from .training import Trainer
    comm = _RANKS[0] = from_environment(required=args.distributed)   # mpiexec: data-parallel (distributed.py)
    _CHECKING[0] = comm.size > 1
    if comm.rank != 0:
        args.quiet = True              # rank 0 speaks for all (errors excepted)
    _use_backend(args, comm, heavy=True)
    out = Path(args.out or f"runs/{args.model or TRAIN_DEFAULTS['model']}")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    check_run_folder(out, files=not args.overwrite)
    checkpoints = list_checkpoints(out / "checkpoints")
    if args.resume:
        if not checkpoints:
            raise UsageError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        cfg, history, changed = _resumed_config(args, out, checkpoints[-1][1])
    else:
        cfg, history, changed = _new_config(args), [], {}
        ours = run_files(out)[0]
        if ours and not args.overwrite:
            what = "a run" if checkpoints else "files of an earlier run (" + ", ".join(
                sorted(p.name for p in ours)[:3]) + ")"
            raise UsageError(f"{out} already holds {what}: continue it with --resume, choose another --out, "
                             f"or replace it with --overwrite")
    check_writable(out, f"--out {out}")
    backend.set_default_dtype(cfg.dtype)  # a resumed run keeps the dtype it was started with
    ds = _training_data(args, cfg)
    _fit_model_to_data(cfg, ds, resumed=args.resume)
    if args.resume:   # the model a checkpoint describes is built no larger than the arrays it carries
        from .training.checkpoint import CheckpointError, parameter_bound, read_meta
        from .init import parameter_budget
        newest = checkpoints[-1][1]
        try:
            with parameter_budget(parameter_bound(newest, read_meta(newest)), "the model its metadata describes"):
                gan = models.build(cfg.model, seed=cfg.seed, **cfg.model_args)
        except ValueError as exc:
            raise CheckpointError(f"{newest}: {exc}") from None
    else:
        gan = models.build(cfg.model, seed=cfg.seed, **cfg.model_args)
    scale = "tanh" if gan.output == "tanh" else "sigmoid"
    trainer = Trainer(gan, ds.as_float(scale=scale, dtype=backend.default_dtype()), ds.labels, cfg, run_dir=out,
                      quiet=args.quiet, data_note=ds.source, class_names=ds.classes if gan.conditional else None,
                      comm=comm)
    trainer.history = history
    if _CHECKING[0]:    # every rank has checked the run folder (and all else) before rank 0 changes it
        _agree(comm)
    if args.overwrite and comm.rank == 0:  # only now, when everything else has been checked: the old run goes
        kept = clear_run(out)
        if kept:
            print(f"note: --overwrite kept {len(kept)} file(s) that scratchgan did not write: "
                  + ", ".join(str(p.relative_to(out)) for p in kept[:5]) + (" ..." if len(kept) > 5 else ""),
                  file=sys.stderr)
    if not args.quiet:
        print(f"data: {ds.name} ({ds.split}), {len(ds):,} image{'s' * (len(ds) != 1)} from {ds.source}")
        print(f"model: {cfg.model} on {backend.name()}  ->  {out}"
              + (f"  ({comm.size} ranks, {cfg.batch_size // comm.size} items each per batch)" if comm.size > 1 else ""))
        gan.G.summary((gan.latent_dim + gan.num_classes,))
        gan.D.summary(gan.d_input_shape)
    if args.resume:
        trainer.resume()
        if changed:
            _say(args, "changed on resume: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in changed.items()))
    last = trainer.train()
    if trainer.stop_signal:
        return 128 + trainer.stop_signal
    if not args.quiet:
        print(f"done: step {trainer.step}; open {out / 'report.html'} (samples, monitor grid, losses, progress), "
              f"checkpoints in {out / 'checkpoints'}")
        if last:
            print("last: " + ", ".join(f"{k}={v}" for k, v in last.items()))
    return EXIT_OK


FOLDER = "folder:"   # --dataset folder:PATH, a folder of the user's own images


def _training_data(args, cfg):
    """The run's training data: a named data set, or an image folder (--dataset folder:PATH) decoded
    at the size and channels of the model (from --channels / --image-size, or a resumed run's model)."""
    from . import data
    # a resumed run's model fixes the geometry (MNIST's 1x28x28 is the one a run does not record)
    shape = cfg.model_args.get("image_shape") or ([1, 28, 28] if args.resume else None)
    if cfg.dataset.startswith(FOLDER):
        path = cfg.dataset[len(FOLDER):]
        if not path:
            raise UsageError("--dataset folder:PATH: give the folder, e.g. --dataset folder:~/pictures")
        channels = shape[0] if shape else (args.channels or 3)
        size = shape[1] if shape else (args.image_size or 32)
        from .data.folder import BadFilesError
        try:
            ds = data.image_folder(Path(path).expanduser(), channels=channels, image_size=size,
                                   skip_bad=args.skip_bad, progress=not args.quiet, max_pixels=args.max_image_pixels)
        except BadFilesError as exc:
            raise exc.with_skip("--skip-bad") from None
        if ds.note:
            _note(ds.note)
        if args.resume and cfg.data_contents and ds.contents != cfg.data_contents:
            _note(f"{path} has changed since the run started: it held {cfg.data_contents}, now {ds.contents}; "
                  "training goes on with what it holds now")
        cfg.data_contents = ds.contents
        return ds.filter_classes(cfg.classes) if cfg.classes is not None else ds
    for flag, value, only in (("--channels", args.channels, 1), ("--image-size", args.image_size, 28)):
        if value is not None and value != only:
            raise UsageError(f"{flag} {value}: {cfg.dataset} images are 1x28x28; {flag} applies to --dataset {FOLDER}PATH")
    if args.skip_bad or args.max_image_pixels != MAX_IMAGE_PIXELS:
        raise UsageError(f"{'--skip-bad' if args.skip_bad else '--max-image-pixels'} applies to --dataset {FOLDER}PATH")
    import warnings
    with warnings.catch_warnings():  # the note below says it plainly, without a warning's source line
        warnings.simplefilter("ignore", UserWarning)
        ds = data.load_dataset(cfg.dataset, split="train", data_dir=args.data_dir, download=args.download,
                               classes=cfg.classes, progress=not args.quiet)
    if ds.is_bundled:  # said even with --quiet
        _note(f"training on the {ds.source}; for the full data set use --data-dir DIR, $SCRATCHGAN_DATA or --download")
    return ds


def _fit_model_to_data(cfg, ds, resumed):
    """A new run's model takes the data's image shape and, conditional, its number of classes (both
    recorded in model_args only when they differ from MNIST's); a resumed run's must already fit."""
    from . import models
    shape, classes = tuple(ds.image_shape), len(ds.classes)
    want = {"image_shape": list(shape)} if shape != (1, 28, 28) else {}
    if cfg.model.startswith("cgan"):
        if classes < 2:
            raise UsageError(f"--model cgan needs labelled data (one subfolder per class for an image folder); "
                             f"{ds.name} has {classes} class")
        if classes != 10:
            want["num_classes"] = classes
    for key, value in want.items() if not resumed else ():
        cfg.model_args[key] = value
    # a recipe's channel counts are per image size (one count per stage); flags given win
    for key, value in RECIPES[cfg.model].get("channels", {}).get(shape[1], {}).items() if not resumed else ():
        cfg.model_args.setdefault(key, list(value))
    if cfg.model.startswith("dcgan") and shape[1] in models.DCGAN_CHANNELS:   # one channel count per stage of this size
        for flag, key, default in zip(("--g-hidden", "--d-hidden"), ("g_channels", "d_channels"),
                                      models.DCGAN_CHANNELS[shape[1]]):
            given = cfg.model_args.get(key)
            if given is not None and len(given) != len(default):
                raise UsageError(f"{flag}: the dcgan for {shape[1]}x{shape[2]} images takes {len(default)} channel "
                                 f"counts, one per stage (default {','.join(map(str, default))}), got {len(given)}")
    have = (tuple(cfg.model_args.get("image_shape", (1, 28, 28))), cfg.model_args.get("num_classes", 10))
    need = (shape, classes if cfg.model.startswith("cgan") else have[1])
    if have != need:
        raise UsageError(f"the data's images are {'x'.join(map(str, shape))} with {classes} classes, but the run's "
                         f"model takes {'x'.join(map(str, have[0]))} with {have[1]}: resume with the data it was "
                         "trained on")


def _class_label(gan, meta, label, flag="--label"):
    """--label as a class index: an integer, or a class name of the run (e.g. A for EMNIST letters)."""
    if label is None:
        return None
    if not gan.conditional:
        _check_label(gan, label, flag)     # refused as unconditional, whatever the label (a name too)
    names = meta.get("class_names") if isinstance(meta.get("class_names"), list) else None
    if names and not label.lstrip("-").isdigit():
        folded = [str(n).lower() for n in names]
        if label.lower() in folded:
            index = folded.index(label.lower())
            _check_label(gan, index, flag)
            return index
    try:
        index = int(label)
    except ValueError:
        known = f"; its classes: {', '.join(map(str, names))}" if names else ""
        raise UsageError(f"{flag} {label!r}: not a class of this run{known}") from None
    _check_label(gan, index, flag)
    return index


# --------------------------------------------------------------------------- using a trained run
def cmd_sample(args):
    from . import backend
    from .files.images import save_grid
    from .training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    args.label = _class_label(gan, meta, args.label)
    out = _output_file(args.out or Path(args.run_dir) / f"sample_seed{args.seed}.png", "--out")
    labels = None
    if gan.conditional:
        if args.label is not None:
            labels = np.full(args.n, args.label)
        else:
            labels = np.repeat(np.arange(gan.num_classes), max(1, args.n // gan.num_classes))
    n = len(labels) if labels is not None else args.n
    images = gan.generate(n, seed=args.seed, labels=None if labels is None else backend.asarray(labels))
    nrow = max(1, args.n // gan.num_classes) if gan.conditional and args.label is None else int(np.ceil(np.sqrt(n)))
    save_grid(images, out, nrow=nrow, output=gan.output)
    print(f"wrote {out} ({n} samples, step {meta['step']})")
    return EXIT_OK


def cmd_interpolate(args):
    from .generation import latent
    from .training import load_run
    _use_backend(args)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    args.label = _class_label(gan, meta, args.label)
    if args.dim >= gan.latent_dim:
        raise UsageError(f"--dim: expected a latent dimension in 0..{gan.latent_dim - 1} for this run, got {args.dim}")
    if args.mode == "classes" and not gan.conditional:
        raise UsageError(f"--mode classes needs a conditional (cgan) run; this run's model is {gan.kind}")
    out = _output_file(args.out or Path(args.run_dir) / f"interpolate_{args.mode}.png", "--out")
    latent.save_walk(gan, out, mode=args.mode, steps=args.steps, rows=args.rows, seed=args.seed,
                     dim=args.dim, label=args.label)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_evaluate(args):
    from .evaluation import metrics
    _use_backend(args, heavy=True)
    # progress goes to stderr, so that stdout holds only the report (or only the JSON)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = metrics.evaluate_run(args.run_dir, n=args.n, seed=args.seed, batch=args.batch, data_dir=args.data_dir,
                                  n_real=args.n_real, progress=progress, use_ema=not args.no_ema,
                                  dataset=args.dataset)
    from .training.report import write_report
    write_report(args.run_dir)      # report.html gains the evaluation numbers
    print(json.dumps(result, indent=2) if args.json else metrics.format_report(result))
    return EXIT_OK


def cmd_judge(args):
    """judge train: train (or find in the cache) the judge of a data set, as evaluate would."""
    from .evaluation.dataset_judge import describe, judge_for_dataset
    _use_backend(args, heavy=True)
    if args.dataset.startswith(FOLDER):
        from . import data
        path = args.dataset[len(FOLDER):]
        if not path:
            raise UsageError("--dataset folder:PATH: give the folder, e.g. --dataset folder:~/pictures")
        ds = data.image_folder(Path(path).expanduser(), channels=args.channels, image_size=args.image_size,
                               skip_bad=True, progress=not args.quiet)
    else:
        from . import data
        ds = data.load_dataset(args.dataset, split="train", data_dir=args.data_dir, progress=not args.quiet)
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    command = (f"scratchgan judge train --dataset {args.dataset} --channels {args.channels} "
               f"--image-size {args.image_size}")
    judge, _ = judge_for_dataset(ds, seed=args.seed, progress=progress, bar=not args.quiet, command=command,
                                 retrain=args.retrain)
    print(json.dumps(describe(judge), indent=2))
    return EXIT_OK


def _read_images(path: Path, channels: int = 1, size: int = 28):
    """Images to complete from a .npy array or an image file -> (N, C, H, W) floats in [0, 1].

    Grey runs: .npy (H, W), (N, H, W) or (N, 1, H, W); RGB runs: .npy (3, H, W) or (N, 3, H, W)
    (the library's NCHW). An image file (PNG, JPEG) is decoded as an image folder's pictures are
    for training: converted to grey or RGB, centre-cropped and resized to ``size``."""
    from .files.safeio import UnsafeFileError, read_npy
    if not path.exists():
        raise UsageError(f"--images {path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            raw = read_npy(path, "--images")
        except UnsafeFileError as exc:
            raise UsageError(f"--images {path}: not a plain NumPy array file ({exc.reason})") from None
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--images {path}: not a plain NumPy array file ({exc})") from None
        if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "biuf":
            raise UsageError(f"--images {path}: expected a numeric array, got dtype {getattr(raw, 'dtype', None)}")
    else:
        from .data import DataError
        from .data.folder import read_picture
        try:
            raw = read_picture(path, channels, size)     # (1, C, size, size) uint8
        except DataError as exc:
            raise UsageError(f"--images {exc}") from None
    if channels == 1:
        ok = raw.ndim in (2, 3) or (raw.ndim == 4 and raw.shape[1] == 1)
        want = "(H, W), (N, H, W) or (N, 1, H, W)"
    else:
        ok = (raw.ndim == 3 and raw.shape[0] == 3) or (raw.ndim == 4 and raw.shape[1] == 3)
        want = "(3, H, W) or (N, 3, H, W)"
    if not ok or raw.size == 0:
        raise UsageError(f"--images {path}: expected {want} images for this run, got shape {raw.shape}")
    raw = raw.reshape((-1, channels) + raw.shape[-2:])
    unit = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32)
    if not np.isfinite(unit).all():
        raise UsageError(f"--images {path}: holds NaN or inf values")
    return unit


def cmd_inpaint(args):
    """Complete the missing part of images with a trained GAN (a thin layer over scratchgan.inpaint)."""
    from . import backend, data
    from .generation import inpaint
    from .files.images import save_grid
    from .training import load_run
    _use_backend(args, heavy=True)
    gan, meta = load_run(args.run_dir, use_ema=not args.no_ema)
    out = _output_file(args.out or Path(args.run_dir) / f"inpaint_{Path(str(args.mask)).stem}.png", "--out")
    labels = None
    if args.images:                       # your own images: .npy (N, 28, 28) or (N, 1, 28, 28), or one PNG
        unit = _read_images(Path(args.images), gan.image_shape[0], gan.image_shape[-1])
        images = unit * 2.0 - 1.0 if gan.output == "tanh" else unit
        source = str(args.images)
    elif tuple(gan.image_shape) != (1, 28, 28):
        raise UsageError(f"this run's images are {'x'.join(map(str, gan.image_shape))}: give the images to "
                         "complete with --images (the MNIST test set only fits 1x28x28 runs)")
    else:                                 # held-out digits: the MNIST test set, never trained on
        try:
            ds = data.load_dataset("mnist", split="test", data_dir=args.data_dir, progress=False)
        except data.DataNotFound:
            raise UsageError("the MNIST test set was not found: give --data-dir DIR (a folder with "
                             "t10k-images-idx3-ubyte.gz) or your own images with --images") from None
        if args.start >= len(ds):
            raise UsageError(f"--start {args.start}: the test set has {len(ds)} digits (0..{len(ds) - 1})")
        images = ds.as_float(scale=gan.output)[args.start:args.start + args.n]
        if gan.conditional and args.use_labels:
            labels = ds.labels[args.start:args.start + args.n]
        source = f"MNIST test digits {args.start}..{args.start + len(images) - 1}"
    mask = inpaint.make_mask(args.mask, shape=images.shape[2:], seed=args.seed, fraction=args.fraction)
    res = inpaint.inpaint(gan, images, mask, steps=args.steps, lr=args.lr, lam=args.lam, restarts=args.restarts,
                          perceptual=args.perceptual, weighted=not args.unweighted, labels=labels, seed=args.seed,
                          progress=True, halving=not args.no_halving)
    completed = backend.to_numpy(res.completed)
    unit = 0.5 if gan.output == "tanh" else 1.0            # errors in [0, 1] pixel units
    err = inpaint.completion_error(completed, images, mask) * unit
    base = None
    if tuple(gan.image_shape) == (1, 28, 28):               # the baseline: fill with the mean training digit
        train = data.load_dataset("mnist-bundled").as_float(scale=gan.output)
        base = inpaint.completion_error(inpaint.mean_image_fill(train, images, mask), images, mask) * unit
    masked = inpaint.masked_images(images, mask, fill=-1.0 if gan.output == "tanh" else 0.0)
    per_row = 4                                             # digits per row: original | masked | completed
    grid = np.stack([images, masked, completed], axis=1).reshape((-1,) + images.shape[1:])
    save_grid(grid, out, nrow=3 * min(per_row, len(images)), output=gan.output)
    if args.save_npy:
        from .files.atomic import atomic_write_bytes
        import io
        buf = io.BytesIO()
        np.save(buf, completed)
        atomic_write_bytes(out.with_suffix(".npy"), buf.getvalue())
    print(f"wrote {out} ({len(images)} image{'s' * (len(images) != 1)} from {source}; original | masked | completed; "
          f"{1 - float(mask.mean()):.0%} of the pixels missing)")
    if base is None:
        print(f"mean |error| on the missing pixels: GAN {err:.4f}")
    else:
        print(f"mean |error| on the missing pixels: GAN {err:.4f}, mean-image fill {base:.4f} "
              f"(ratio {err / max(base, 1e-12):.2f})")
    if res.labels is not None:
        print("labels used: " + " ".join(str(int(v)) for v in backend.to_numpy(res.labels)))
    return EXIT_OK


def cmd_gradcheck(args):
    from .gradcheck_suite import run_suite
    _use_backend(args)
    ok = run_suite(verbose=True)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_bench(args):
    from .evaluation.bench import main as bench_main
    from .training.distributed import from_environment
    comm = _RANKS[0] = from_environment(required=args.distributed)
    _use_backend(args, comm, heavy=not args.contention)   # --contention chooses with and without the busy core
    return bench_main(args, comm)


# --------------------------------------------------------------------------- the parser
class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: "error: argument --steps: expected ...". """

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see: {self.prog} --help)\n")


def _add_backend(p):
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None,
                   help="array backend (default: $SCRATCHGAN_BACKEND, else numpy)")
    p.add_argument("--threads", type=_threads, default=None,
                   help="threads for the CPU's matrix products (default: $SCRATCHGAN_THREADS; else train, bench, "
                        "evaluate and inpaint use the cores other processes leave idle, the other commands the "
                        "BLAS library's choice; under mpiexec the machine's cores divided among its ranks)")


def build_parser():
    from . import __version__
    from .losses import LOSSES
    from .generation.inpaint import MASK_KINDS
    from .training import MAX_EPOCHS
    d = TRAIN_DEFAULTS
    p = _Parser(prog="scratchgan", description=__doc__.split("\n")[0],
                epilog="exit codes: 0 done, 1 the work failed, 2 usage or input error, 130/143 stopped by "
                       "Ctrl-C/SIGTERM (docs/reliability.md)")
    p.add_argument("--version", action="version", version=f"scratchgan {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a GAN and write a run folder")
    t.add_argument("--model", choices=list(RECIPES), default=None,
                   help="mlp, cgan, dcgan: recipes tuned for good samples per CPU minute; mlp-tutorial, "
                        f"cgan-tutorial, dcgan-tutorial: the seed tutorials' models and settings (default: {d['model']})")
    t.add_argument("--dataset", default=None, type=_path,
                   help=f"mnist, mnist-bundled, fashion-mnist, emnist-letters, or folder:PATH, a folder of your own "
                        f"PNG/JPEG/.npy images, one subfolder per class for labels (default: {d['dataset']})")
    t.add_argument("--channels", type=int, choices=[1, 3], default=None,
                   help="folder:PATH: grey (1) or RGB (3) (default: 3)")
    t.add_argument("--image-size", type=int, choices=[28, 32, 64], default=None,
                   help="folder:PATH: images are centre-cropped and resized to this (default: 32)")
    t.add_argument("--skip-bad", action="store_true",
                   help="folder:PATH: skip unreadable files (counted) instead of refusing the folder")
    t.add_argument("--max-image-pixels", type=_integer(1), default=MAX_IMAGE_PIXELS,
                   help=f"folder:PATH: a picture whose header claims more pixels is a bad file, refused before "
                        f"decoding (default: {MAX_IMAGE_PIXELS:,}, e.g. 8192x4096)")
    t.add_argument("--data-dir", default=None, type=_path,
                   help="folder holding the data set's IDX files (default: $SCRATCHGAN_DATA, the cache, "
                        "then the bundled sample)")
    t.add_argument("--download", action="store_true", help="download the data set if it is not found")
    t.add_argument("--classes", default=None, type=_classes,
                   help="keep only these classes, e.g. 2 or 0,1,2 (default: all)")
    t.add_argument("--steps", type=_integer(1), default=None,
                   help="generator steps (default: the model's recipe: " + ", ".join(
                       f"{k} {v['train']['steps']}" for k, v in RECIPES.items()) + ")")
    t.add_argument("--max-time", type=_number(0, lo_open=True), default=None,
                   help="stop after this many seconds of training, save, and exit 0 (default: off)")
    t.add_argument("--epochs", type=_number(0, MAX_EPOCHS, lo_open=True), default=None,
                   help=f"train for this many passes over the data, at most {MAX_EPOCHS:,.0f}, instead of --steps "
                        "(default: off)")
    t.add_argument("--batch-size", type=_integer(1, 65536), default=None, help="(default: the model's recipe, 64 "
                   "for the tutorials)")
    t.add_argument("--lr", type=_number(0, lo_open=True), default=None,
                   help="learning rate of both networks; replaces a recipe's --lr-g (default: the model's recipe: "
                        + ", ".join(f"{k} {_rate(v['train'].get('lr', d['lr']))}" + (
                            f" (G {_rate(v['train']['lr_g'])})" if "lr_g" in v["train"] else "")
                            for k, v in RECIPES.items()) + "; 5e-5 for wgan, 1e-4 for wgan-gp)")
    t.add_argument("--lr-d", type=_number(0, lo_open=True), default=None,
                   help="D's learning rate, if not --lr (two time-scale updates) (default: --lr)")
    t.add_argument("--lr-g", type=_number(0, lo_open=True), default=None,
                   help="G's learning rate, if not --lr (default: the model's recipe, else --lr)")
    t.add_argument("--lr-decay", choices=["none", "linear"], default=None,
                   help="'linear': both learning rates fall in a straight line to 0 at the last step "
                        "(default: the model's recipe)")
    t.add_argument("--ema", type=_number(0, 1, hi_open=True), default=None,
                   help="sample and evaluate from an exponential moving average of G's weights with this decay "
                        "(default: the model's recipe; off for the tutorials)")
    t.add_argument("--no-ema", action="store_true", help="no moving average of G")
    t.add_argument("--beta1", type=_number(0, 1, hi_open=True), default=None,
                   help=f"Adam's beta1 (default: {d['beta1']})")
    t.add_argument("--k", type=_integer(1, 100), default=None,
                   help=f"discriminator (critic) steps per generator step, n_critic (default: {d['k']}; 5 for "
                        "wgan and wgan-gp)")
    t.add_argument("--loss", choices=list(LOSSES), default=None,
                   help="the GAN objective: bce (Goodfellow et al.), wgan (weight clipping, RMSprop), wgan-gp "
                        "(gradient penalty), hinge, lsgan; each brings its paper's lr, k, optimiser and clip or "
                        "penalty unless given (docs/losses.md) (default: bce)")
    t.add_argument("--g-loss", choices=["nonsaturating", "minimax"], default=None,
                   help=f"--loss bce: the generator's loss (default: {d['g_loss']})")
    t.add_argument("--label-smoothing", type=_number(0, 1, hi_open=True), default=None,
                   help=f"--loss bce, one-sided: real target = 1 - this (default: {d['label_smoothing']})")
    t.add_argument("--instance-noise", type=_number(0), default=None, metavar="SIGMA",
                   help="add Gaussian noise of this std to every image D sees, real and fake, falling linearly to "
                        f"0 at the last step (docs/training.md) (default: {d['instance_noise']}, off)")
    t.add_argument("--gp-weight", type=_number(0, lo_open=True), default=None,
                   help="--loss wgan-gp: lambda of the gradient penalty (default: 10)")
    t.add_argument("--clip", type=_number(0, lo_open=True), default=None,
                   help="clip D's weights to [-clip, clip] after each step (default: 0.01 for wgan, else off)")
    t.add_argument("--optimizer", choices=["adam", "rmsprop"], default=None,
                   help="(default: rmsprop for wgan, else adam)")
    t.add_argument("--beta2", type=_number(0, 1, hi_open=True), default=None,
                   help=f"Adam's beta2 (default: 0.9 for wgan-gp, else {d['beta2']})")
    t.add_argument("--d-dropout", type=_number(0, 1, hi_open=True), default=None,
                   help="dropout rate in D (default: the model's recipe; 0 for mlp-tutorial, 0.3 for the others)")
    t.add_argument("--activation", choices=["relu", "leaky_relu"], default=None,
                   help="mlp: the hidden activation of G and D (default: the model's recipe; relu for mlp-tutorial)")
    t.add_argument("--g-output", choices=["sigmoid", "tanh"], default=None,
                   help="mlp: G's output activation (default: the model's recipe; sigmoid for mlp-tutorial)")
    t.add_argument("--minibatch-std", action=argparse.BooleanOptionalAction, default=None,
                   help="mlp, dcgan: D sees the batch's spread (Karras et al. 2018), against mode collapse "
                        "(default: the model's recipe; off for mlp-tutorial)")
    t.add_argument("--projection", action=argparse.BooleanOptionalAction, default=None,
                   help="cgan: a projection discriminator (Miyato & Koyama 2018) instead of a concatenated label "
                        "(default: the model's recipe; off for cgan-tutorial)")
    t.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="spectral normalisation of every Dense/Conv2D layer of D (Miyato et al. 2018) (default: "
                        "the model's recipe, on for dcgan unless --loss wgan or wgan-gp constrains D its own way)")
    t.add_argument("--latent-dim", type=_integer(1, 8192), default=None,
                   help="size of z (default: 100 for mlp and dcgan, 128 for cgan)")
    t.add_argument("--noise", choices=["normal", "uniform"], default=None, help="distribution of z (default: normal)")
    t.add_argument("--upsample", choices=["transposed", "nearest"], default=None,
                   help="dcgan only: how G doubles the size (default: transposed)")
    t.add_argument("--g-hidden", type=_int_list(1, 4096, 8), default=None,
                   help="generator widths, e.g. 200,500 (mlp/cgan; default: 256 and 256,512), or the dcgan's "
                        "3 channel counts (default: 256,128,64)")
    t.add_argument("--d-hidden", type=_int_list(1, 4096, 8), default=None,
                   help="discriminator widths, e.g. 500,200 (mlp/cgan; default: 256 and 512,256), or the "
                        "dcgan's 2 channel counts (default: 64,128)")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None, help=f"(default: {d['dtype']})")
    t.add_argument("--seed", type=_integer(0, 2**32 - 1), default=None, help=f"(default: {d['seed']})")
    t.add_argument("--out", default=None, type=_path, help="run folder (default: runs/MODEL)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint; "
                        + ", ".join("--" + n.replace("_", "-") for n in RESUMABLE[:4])
                        + " ... may change (recorded in config.json), the model and data may not")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (deletes only the files scratchgan wrote there)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks (docs/distributed.md); implied when mpiexec starts more "
                        "than one rank: mpiexec -n 2 scratchgan train ... (needs pip install 'scratchgan[mpi]')")
    t.add_argument("--log-every", type=_integer(1), default=None,
                   help=f"steps between rows of metrics.csv (default: {d['log_every']})")
    t.add_argument("--sample-every", type=_integer(1), default=None,
                   help=f"steps between sample grids (default: {d['sample_every']})")
    t.add_argument("--checkpoint-every", type=_integer(1), default=None,
                   help=f"steps between checkpoints (default: {d['checkpoint_every']})")
    t.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    _add_backend(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="a grid of new samples from a trained run")
    s.add_argument("run_dir", type=_path)
    s.add_argument("--n", type=_integer(1, 10000), default=64, help="samples (default: 64)")
    s.add_argument("--label", type=_path, default=None,
                   help="cgan: the class to draw, by index or name, e.g. 7 or A (default: every class)")
    s.add_argument("--seed", type=_integer(0, 2**32 - 1), default=1, help="(default: 1)")
    s.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/sample_seedSEED.png)")
    s.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(s)
    s.set_defaults(func=cmd_sample)

    i = sub.add_parser("interpolate", help="latent walks: line/slerp between two z, or a sweep of one dimension")
    i.add_argument("run_dir", type=_path)
    i.add_argument("--mode", choices=["linear", "slerp", "sweep", "classes"], default="slerp",
                   help="(default: slerp)")
    i.add_argument("--steps", type=_integer(2, 100), default=10, help="images per row (default: 10)")
    i.add_argument("--rows", type=_integer(1, 100), default=8, help="(default: 8)")
    i.add_argument("--dim", type=_integer(0), default=0, help="sweep: the latent dimension to vary (default: 0)")
    i.add_argument("--label", type=_path, default=None,
                   help="cgan: the class for linear/slerp/sweep, by index or name (default: a different class per row)")
    i.add_argument("--seed", type=_integer(0, 2**32 - 1), default=1, help="(default: 1)")
    i.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/interpolate_MODE.png)")
    i.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(i)
    i.set_defaults(func=cmd_interpolate)

    n = sub.add_parser("inpaint", help="complete the missing part of images with a trained GAN (Yeh et al. 2017)")
    n.add_argument("run_dir", type=_path)
    n.add_argument("--mask", default="center", type=_path,
                   help=f"{', '.join(MASK_KINDS)}, or a .png/.npy file (white/1 = known) (default: center)")
    n.add_argument("--fraction", type=_number(0, 1), default=None,
                   help="fraction of MISSING pixels (default: center 0.25, sides 0.5, random 0.8)")
    n.add_argument("--images", default=None, type=_path,
                   help="images to complete: a .npy array (N, C, H, W) of the run's size, or a PNG/JPEG file, "
                        "cropped and resized as an image folder is for training (default: MNIST test digits)")
    n.add_argument("--data-dir", default=None, type=_path,
                   help="folder holding the MNIST test files, t10k-* (default: $SCRATCHGAN_DATA or the cache)")
    n.add_argument("--n", type=_integer(1, 10000), default=16, help="test digits to complete (default: 16)")
    n.add_argument("--start", type=_integer(0), default=0, help="index of the first test digit (default: 0)")
    n.add_argument("--steps", type=_integer(1, 100000), default=500, help="Adam steps on z (default: 500)")
    n.add_argument("--lr", type=_number(0, lo_open=True), default=0.03, help="(default: 0.03)")
    n.add_argument("--restarts", type=_integer(1, 256), default=8,
                   help="random starting codes per image; the best is kept (default: 8)")
    n.add_argument("--lam", type=_number(0), default=0.1,
                   help="weight of the perceptual (discriminator) loss (default: 0.1)")
    n.add_argument("--perceptual", choices=["nonsaturating", "minimax"], default="nonsaturating",
                   help="(default: nonsaturating)")
    n.add_argument("--unweighted", action="store_true", help="plain L1 on the known pixels (no 7x7 weights)")
    n.add_argument("--no-halving", action="store_true",
                   help="run every restart to the end (default: after 1/8, 1/4 and 1/2 of the steps each image "
                        "keeps the better half of its restarts, about 3x less work for 8)")
    n.add_argument("--use-labels", action="store_true",
                   help="cgan: condition on the test digits' true labels (default: try every class)")
    n.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    n.add_argument("--out", default=None, type=_path, help="PNG to write (default: RUN/inpaint_MASK.png)")
    n.add_argument("--save-npy", action="store_true", help="also save the completed images next to the PNG")
    n.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    _add_backend(n)
    n.set_defaults(func=cmd_inpaint)

    g = sub.add_parser("gradcheck", help="check every layer's backward pass by central differences")
    _add_backend(g)
    g.set_defaults(func=cmd_gradcheck)

    b = sub.add_parser("bench", help="time training iterations and layers")
    b.add_argument("--models", type=_names(["mlp", "cgan", "dcgan"]), default=["mlp", "dcgan"],
                   help="(default: mlp,dcgan)")
    b.add_argument("--batch-sizes", type=_int_list(1, 4096, 16), default=[16, 64, 256], help="(default: 16,64,256)")
    b.add_argument("--repeats", type=_integer(1, 1000), default=5, help="timed iterations per row (default: 5)")
    b.add_argument("--image-shapes", type=_image_shapes, default=None,
                   help="comma-separated CxHxW, e.g. 1x28x28,3x32x32,3x64x64 (default: 1x28x28)")
    b.add_argument("--layers", action="store_true", help="per-layer forward/backward times (DCGAN sizes)")
    b.add_argument("--image-shape", type=lambda t: _image_shapes(t)[0], default=None,
                   help="with --layers: every layer of the dcgan for this CxHxW (recipe D: spectral norm, no "
                        "dropout), train mode and G's eval-mode sampler, e.g. 3x64x64 (default: the 28x28 shapes)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.add_argument("--contention", action="store_true",
                   help="time the training steps again with a busy process pinned to one core, at the threads "
                        "scratchgan picks then (docs/performance.md)")
    b.add_argument("--distributed", action="store_true",
                   help="under mpiexec: time data-parallel steps over the ranks, split into compute and "
                        "all-reduce, with the bytes reduced per step (docs/distributed.md)")
    _add_backend(b)
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("evaluate", help="score a run with a judge (shipped for MNIST/Fashion-MNIST, else trained on "
                                        "the run's data and cached): FID, KID, precision/recall, density/coverage, "
                                        "memorisation, with error bars, next to real data and noise")
    e.add_argument("run_dir", type=_path)
    e.add_argument("--n", type=_integer(10, 100000), default=10000,
                   help="generated samples (cgan: n/10 per class) (default: 10000)")
    e.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    e.add_argument("--batch", type=_integer(1, 10000), default=500, help="judge batch size (default: 500)")
    e.add_argument("--data-dir", default=None, type=_path,
                   help="folder holding the official test set, t10k-*-ubyte.gz (default: $SCRATCHGAN_DATA or the cache)")
    e.add_argument("--n-real", type=_integer(10), default=None,
                   help="use only the first N real test/train images (default: all)")
    e.add_argument("--json", action="store_true", help="print the whole result as JSON (progress goes to stderr)")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    e.add_argument("--no-ema", action="store_true",
                   help="use G's last weights, not their moving average (when the run kept one)")
    e.add_argument("--dataset", default=None, type=_path,
                   help="the run's training data, when it is not where the run recorded it (e.g. folder:PATH "
                        "after the folder moved) (default: the run's)")
    _add_backend(e)
    e.set_defaults(func=cmd_evaluate)

    j = sub.add_parser("judge", help="the judge of a data set: a small net trained on it, cached by its checksum")
    jsub = j.add_subparsers(dest="judge_command", required=True, parser_class=_Parser)
    jt = jsub.add_parser("train", help="train the judge evaluate uses for a data set (or find it in the cache)")
    jt.add_argument("--dataset", required=True, type=_path,
                    help="folder:PATH (a subfolder per class: a classifier; none: a rotation predictor) or a "
                         "data set name")
    jt.add_argument("--channels", type=int, choices=[1, 3], default=3,
                    help="folder:PATH: grey (1) or RGB (3) (default: 3)")
    jt.add_argument("--image-size", type=int, choices=[28, 32, 64], default=32,
                    help="folder:PATH: the run's image size (default: 32)")
    jt.add_argument("--data-dir", default=None, type=_path, help="a named data set's folder (as for train)")
    jt.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0, help="(default: 0)")
    jt.add_argument("--retrain", action="store_true", help="train again even when the cache holds this judge")
    jt.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    _add_backend(jt)
    jt.set_defaults(func=cmd_judge)
    return p


# --------------------------------------------------------------------------- main
def _error(message) -> None:
    """One line on stderr: "error: ..." (a multi-line message is joined)."""
    text = " ".join(str(message).split("\n")).strip()
    print(f"error: {text}", file=sys.stderr, flush=True)


class ChecksFailed(Exception):
    """Some ranks of a data-parallel train failed their checks: rank 0 says ``lines``, every rank exits with ``code``."""

    def __init__(self, code, lines):
        super().__init__("; ".join(lines))
        self.code, self.lines = code, lines


def _agree(comm, failure=None) -> None:
    """The ranks compare the outcome of their checks before training: one allgather of each rank's
    (exit code, message), or None where its checks passed. Raises ChecksFailed when any failed: a
    failure every rank met alike is one line, else one line per failed rank, naming it."""
    _CHECKING[0] = False
    everyone = comm.allgather(failure)
    failed = [(rank, f) for rank, f in enumerate(everyone) if f is not None]
    if not failed:
        return
    if len(failed) == comm.size and len({message for _, (_, message) in failed}) == 1:
        lines = [failed[0][1][1]]
    else:
        lines = [f"rank {rank} of {comm.size}: {message}" for rank, (_, message) in failed]
    raise ChecksFailed(max(code for _, (code, _) in failed), lines)


def _failed(exc, code, message=None) -> int:
    """Report an error and return the exit code. In a data-parallel run an error every rank meets
    at the same point (a usage error, the divergence guard, ...) is said once, by rank 0, and so is
    any error while the ranks check their flags, run folder and data (they compare, _agree); any
    other is said by the rank it happened on, which then ends all ranks (MPI abort), so none is
    left waiting in a collective."""
    from .training.distributed import DistributedError, ReplicaDriftError
    from .training import DivergenceError
    comm = _RANKS[0]
    if comm is None or comm.size == 1:
        _error(message or exc)
        return code
    if _CHECKING[0]:
        try:
            _agree(comm, (code, " ".join(str(message or exc).split("\n")).strip()))
        except ChecksFailed as agreed:
            exc, code = agreed, agreed.code
    if isinstance(exc, ChecksFailed):
        for line in exc.lines if comm.rank == 0 else ():
            _error(line)
        return exc.code
    if isinstance(exc, (UsageError, DivergenceError, ReplicaDriftError, DistributedError)):
        if comm.rank == 0:
            _error(message or exc)
        return code
    _error(f"rank {comm.rank} of {comm.size}: {message or exc}; ending all ranks")
    comm.abort(code)
    return code


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2) return their code
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    from .backend import BackendError, set_default_dtype, tune_host_allocator
    tune_host_allocator()  # the command owns its process: reuse freed host memory (docs/performance.md)
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")   # a path that is not UTF-8 prints as its own bytes
    from .training.checkpoint import CheckpointError
    from .data import DataError
    from .training.distributed import DistributedError, ReplicaDriftError
    from .evaluation.judge import JudgeError
    from .evaluation.metrics import EvaluationDataMissing
    from .training.runfolder import RunFolderError
    from .training import DivergenceError
    from .layers.base import DoubleBackwardError
    _RANKS[0], _CHECKING[0] = None, False
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:  # train: a second Ctrl-C (a save in progress is never interrupted)
        return _failed(exc, 128 + 2, "interrupted" + ("; the newest complete checkpoint is kept"
                                                      if args.command == "train" else ""))
    except (BackendError, CheckpointError, DataError, JudgeError, EvaluationDataMissing, RunFolderError,
            DoubleBackwardError, DistributedError, ValueError) as exc:   # DoubleBackwardError: a WGAN-GP critic it cannot penalise
        return _failed(exc, EXIT_USAGE)
    except (DivergenceError, ReplicaDriftError) as exc:
        return _failed(exc, EXIT_FAILED)
    except ChecksFailed as exc:
        return _failed(exc, exc.code)
    except MemoryError as exc:
        return _failed(exc, EXIT_FAILED, "not enough memory for this model, batch or sample count; choose smaller ones")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        # The device failed under the work (disk full, I/O error, read-only remount): 1.
        # A path given that is missing, unreadable, too long or not writable: an input error, 2.
        return _failed(exc, EXIT_FAILED if exc.errno in _DEVICE_ERRORS else EXIT_USAGE, f"{where}{exc.strerror or exc}")
    except Exception as exc:
        if _RANKS[0] is None or _RANKS[0].size == 1:
            raise                      # a bug: the traceback says where
        import traceback
        traceback.print_exc()
        return _failed(exc, EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        set_default_dtype(np.float32)  # in-process callers (tests, notebooks) get the default back


if __name__ == "__main__":
    sys.exit(main())
