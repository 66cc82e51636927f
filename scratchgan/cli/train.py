"""scratchgan train: train a GAN and write a run folder (new, --resume or --overwrite)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..safeio import MAX_IMAGE_PIXELS
from .args import (UsageError, _add_backend, _classes, _int_list, _integer, _note, _number, _path, _rate, _say,
                   _show, _use_backend)
from .errors import _CHECKING, _RANKS, EXIT_OK, _agree

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


# a builder argument a checkpoint leaves out has its default (models record only what differs)
_BUILDER_DEFAULTS = {"spectral_norm": False, "projection": False, "minibatch_std": False, "activation": "relu",
                     "output": "sigmoid", "dropout": 0.0}


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
    from .. import backend
    from ..training import TrainConfig
    from ..training import LOSS_DEFAULTS
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
    from .. import backend
    from ..checkpoint import CheckpointError, check_meta, read_meta
    from ..runfolder import RunFolderError
    from ..safeio import read_bytes
    from ..training import TrainConfig
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


FOLDER = "folder:"   # --dataset folder:PATH, a folder of the user's own images


def _training_data(args, cfg):
    """The run's training data: a named data set, or an image folder (--dataset folder:PATH) decoded
    at the size and channels of the model (from --channels / --image-size, or a resumed run's model)."""
    from .. import data
    # a resumed run's model fixes the geometry (MNIST's 1x28x28 is the one a run does not record)
    shape = cfg.model_args.get("image_shape") or ([1, 28, 28] if args.resume else None)
    if cfg.dataset.startswith(FOLDER):
        path = cfg.dataset[len(FOLDER):]
        if not path:
            raise UsageError("--dataset folder:PATH: give the folder, e.g. --dataset folder:~/pictures")
        channels = shape[0] if shape else (args.channels or 3)
        size = shape[1] if shape else (args.image_size or 32)
        from ..data.folder import BadFilesError
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
    from .. import models
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


# --------------------------------------------------------------------------- the command
def cmd_train(args):
    from .. import backend, data, models
    from ..checkpoint import list_checkpoints
    from ..distributed import from_environment
    from ..runfolder import check_run_folder, check_writable, clear_run, run_files
    from ..training import Trainer
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
        from ..checkpoint import CheckpointError, parameter_bound, read_meta
        from ..init import parameter_budget
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


def add_parser(sub):
    from ..losses import LOSSES
    from ..training import MAX_EPOCHS
    d = TRAIN_DEFAULTS
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
