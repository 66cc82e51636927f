"""The tuned recipes, for Python and the command line alike: `scratchgan train --model dcgan` is
``train("dcgan")``, with the same defaults, the same checks and the same errors.

    import scratchgan as sg
    cfg = sg.recipe("dcgan", steps=2000)                 # the TrainConfig the CLI would use
    trainer = sg.train("dcgan", out="runs/dcgan", steps=2000)
    trainer = sg.train(out="runs/dcgan", resume=True, steps=4000)   # continue it

What a setting is when not given comes from the loss family's recipe (config.LOSS_DEFAULTS), then
the model's (RECIPES), then TRAIN_DEFAULTS. Model options (``model_args``) use the names of the
train flags: latent_dim, noise, g_hidden / d_hidden (widths, or a dcgan's channels per stage),
d_dropout, spectral_norm, projection, activation, g_output, minibatch_std, upsample.

Errors name a setting through ``flag`` (default: its name; the CLI passes one that gives its flags).
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import fields
from pathlib import Path

from .. import backend, data, models
from ..files.safeio import MAX_IMAGE_PIXELS
from ..init import parameter_budget
from .checkpoint import CheckpointError, check_meta, list_checkpoints, parameter_bound, read_meta
from .config import LOSS_DEFAULTS, TrainConfig
from .distributed import Communicator
from .runfolder import RunFolderError, check_run_folder, check_writable, clear_run, run_files
from .trainer import Trainer

__all__ = ["RECIPES", "TUTORIAL", "TRAIN_DEFAULTS", "RESUMABLE", "FIXED_ON_RESUME", "FOLDER", "recipe", "train",
           "resumed_recipe", "training_data", "fit_model_to_data", "builder_args"]

# Each model's recipe: builder arguments and training settings for those not given (a loss family's
# own recipe, LOSS_DEFAULTS, comes first). The "-tutorial" models are the seed tutorials' networks
# and settings as they were; the plain names are tuned for good samples per CPU minute
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
# The defaults of the settings no recipe sets.
TRAIN_DEFAULTS = dict(model="mlp", dataset="mnist", loss="bce", optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999,
                      k=1, lr_decay="none", g_loss="nonsaturating", label_smoothing=0.0, instance_noise=0.0,
                      gp_weight=10.0, clip=None, dtype="float32", seed=0, log_every=50, sample_every=500,
                      checkpoint_every=1000)
# A resumed run honours a change of these (recorded in config.json's history) ...
RESUMABLE = ("steps", "epochs", "lr", "lr_d", "lr_g", "lr_decay", "beta1", "beta2", "k", "g_loss", "label_smoothing",
             "instance_noise", "gp_weight", "clip", "log_every", "sample_every", "checkpoint_every")
# ... and refuses a change of these: they define the model, the data, the objective or the random streams.
FIXED_ON_RESUME = ("model", "dataset", "classes", "batch_size", "dtype", "seed", "loss", "optimizer", "ema",
                   "latent_dim", "noise", "upsample", "g_hidden", "d_hidden", "d_dropout", "spectral_norm", "projection",
                   "activation", "g_output", "minibatch_std",
                   "channels", "image_size")
FOLDER = "folder:"   # dataset "folder:PATH": a folder of the user's own images

# Ranks that are threads (train --ranks) load their data one at a time: loading silences warnings with
# warnings.catch_warnings, which saves and restores process-wide state.
_LOADING = threading.Lock()

# a builder argument a checkpoint leaves out has its default (models record only what differs)
_BUILDER_DEFAULTS = {"spectral_norm": False, "projection": False, "minibatch_std": False, "activation": "relu",
                     "output": "sigmoid", "dropout": 0.0}
_SETTINGS = {f.name for f in fields(TrainConfig)} - {"model", "model_args", "loss", "backend", "data_contents"}


def _setting(name: str) -> str:
    return name


def builder_args(model: str, options: dict, flag=_setting) -> dict:
    """Builder arguments from the model options given (``model_args``: the train flags' names)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(options) - {"latent_dim", "noise", "spectral_norm", "projection", "d_dropout", "activation",
                              "g_output", "minibatch_std", "upsample", "g_hidden", "d_hidden"}
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}")
    given = {k: options[k] for k in ("latent_dim", "noise", "spectral_norm") if k in options}
    if "projection" in options:
        if not model.startswith("cgan"):
            raise ValueError(f"{flag('projection') if options['projection'] else flag('no_projection')} applies to "
                             f"the cgan models, not {model}")
        given["projection"] = options["projection"]
    if "d_dropout" in options:
        given["dropout"] = options["d_dropout"]
    for name, key in (("activation", "activation"), ("g_output", "output")):
        if name in options:
            if not model.startswith("mlp"):
                raise ValueError(f"{flag(name)} applies to the mlp models, not {model}")
            given[key] = options[name]
    if "minibatch_std" in options:
        if model.startswith("cgan"):
            raise ValueError(f"{flag('[no_]minibatch_std')} applies to the mlp and dcgan models, not {model}")
        given["minibatch_std"] = options["minibatch_std"]
    if "upsample" in options:
        if not model.startswith("dcgan"):
            raise ValueError(f"{flag('upsample')} applies to {flag('model')} dcgan only, not {model}")
        given["upsample"] = options["upsample"]
    for name, mlp_name, conv_name in (("g_hidden", "g_hidden", "g_channels"), ("d_hidden", "d_hidden", "d_channels")):
        if name in options:   # a dcgan: one channel count per stage (models.dcgan checks)
            given[conv_name if model.startswith("dcgan") else mlp_name] = options[name]
    return given


def _check_loss_settings(given: dict, loss: str, optimizer: str, flag=_setting):
    """Settings that belong to one loss family or optimiser are refused with another."""
    only = [("g_loss", loss == "bce", f"{flag('loss')} bce"), ("label_smoothing", loss == "bce", f"{flag('loss')} bce"),
            ("gp_weight", loss == "wgan-gp", f"{flag('loss')} wgan-gp"),
            ("beta1", optimizer == "adam", f"{flag('optimizer')} adam"),
            ("beta2", optimizer == "adam", f"{flag('optimizer')} adam")]
    for name, applies, where in only:
        if given.get(name) is not None and not applies:
            raise ValueError(f"{flag(name)} applies to {where} only (this run: {flag('loss')} {loss}, "
                             f"{flag('optimizer')} {optimizer})")


def absolute(dataset):
    """folder:PATH with PATH made absolute, as a run records it (so that a resume from another
    directory reads the same folder); other names as given."""
    if dataset and dataset.startswith(FOLDER) and dataset[len(FOLDER):]:
        return FOLDER + os.path.abspath(os.path.expanduser(dataset[len(FOLDER):]))
    return dataset


def recipe(model: str | None = None, loss: str | None = None, *, model_args: dict | None = None, flag=_setting,
           **settings) -> TrainConfig:
    """The TrainConfig of a new run of recipe ``model`` (RECIPES; default mlp) with loss family
    ``loss`` (default bce): ``settings`` (TrainConfig fields: steps, lr, ema=None for no average,
    ...) and ``model_args`` (model options, see above) given win over the recipe's."""
    model, loss = model or TRAIN_DEFAULTS["model"], loss or TRAIN_DEFAULTS["loss"]
    if model not in RECIPES:
        raise ValueError(f"{flag('model')} must be one of {', '.join(RECIPES)}, got {model!r}")
    if loss not in LOSS_DEFAULTS:
        raise ValueError(f"{flag('loss')} must be one of {', '.join(LOSS_DEFAULTS)}, got {loss!r}")
    unknown = set(settings) - _SETTINGS
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {', '.join(sorted(_SETTINGS))}")
    chosen = RECIPES[model]
    # what is not given comes from the loss family's recipe, then the model's, then the defaults
    d = {**TRAIN_DEFAULTS, **chosen["train"], **LOSS_DEFAULTS[loss]}
    if settings.get("lr") is not None or "lr" in LOSS_DEFAULTS[loss]:
        # a recipe's two rates are tuned around its own lr: a rate given, or the loss family's, sets both
        d.pop("lr_d", None), d.pop("lr_g", None)
    _check_loss_settings(settings, loss, settings.get("optimizer") or d["optimizer"], flag)
    given = builder_args(model, model_args, flag)
    args = {**chosen["model_args"], **given}
    if loss == "wgan-gp" and "minibatch_std" not in given:
        # the penalty differentiates D twice, per sample; a layer that couples the batch has no such pass
        args.pop("minibatch_std", None)
    if loss in ("wgan", "wgan-gp") and "spectral_norm" not in given:
        # these families keep D's slope in check their own way (clipping, the penalty), as in their papers
        args.pop("spectral_norm", None)
    values = {**d, **{k: v for k, v in settings.items() if v is not None or k == "ema"}}
    values["dataset"] = absolute(values["dataset"])
    return TrainConfig(model=model, model_args=args, loss=loss, backend=backend.name(),
                       **{k: v for k, v in values.items() if k in _SETTINGS}).validate()


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def resumed_recipe(out, newest, model_args=None, channels=None, image_size=None, flag=_setting, **settings):
    """(config, history, changed) of the run in ``out`` from its ``newest`` checkpoint: its settings,
    with those given now applied where a resumed run may change them (RESUMABLE) and refused where
    it may not (FIXED_ON_RESUME)."""
    import json
    from ..files.safeio import read_bytes
    meta = check_meta(read_meta(newest), newest)
    try:
        cfg = TrainConfig.from_dict(meta.get("train"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{newest}: its training settings are invalid ({exc})") from None
    unknown = set(settings) - _SETTINGS - {"model", "loss"}
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {', '.join(sorted(_SETTINGS))}")
    model_meta = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    history = []
    config_path = Path(out) / "config.json"
    if config_path.exists():
        try:
            history = json.loads(read_bytes(config_path, "run configuration", 16 << 20)).get("history", [])
            if not isinstance(history, list):
                raise ValueError("'history' is not a list")
        except (ValueError, UnicodeDecodeError, AttributeError, OSError) as exc:
            raise RunFolderError(f"{config_path}: not a valid run configuration ({exc}); fix or remove it to "
                                 "resume (the checkpoint holds the run's settings)") from None
    # refused changes
    no_ema = "ema" in settings and settings["ema"] is None
    requested = {name: settings.get(name) for name in ("model", "classes", "batch_size", "dtype", "seed", "loss",
                                                       "optimizer")}
    requested.update(dataset=absolute(settings.get("dataset")), ema=0.0 if no_ema else settings.get("ema"))
    current = {"model": cfg.model, "dataset": cfg.dataset, "classes": cfg.classes, "batch_size": cfg.batch_size,
               "dtype": cfg.dtype, "seed": cfg.seed, "loss": cfg.loss, "optimizer": cfg.optimizer,
               "ema": cfg.ema or 0.0}
    _check_loss_settings(settings, cfg.loss, cfg.optimizer, flag)
    for name, value in builder_args(cfg.model, model_args, flag).items():
        requested[name], current[name] = value, model_meta.get(name, _BUILDER_DEFAULTS.get(name))
    shape = model_meta.get("image_shape") or [1, 28, 28]
    requested.update(channels=channels, image_size=image_size)
    current.update(channels=shape[0], image_size=shape[-1])
    for name, value in requested.items():
        if value is not None and value != current[name]:
            setting = flag({"g_channels": "g_hidden", "d_channels": "d_hidden", "dropout": "d_dropout",
                            "output": "g_output"}.get(name, name))
            if name == "ema" and no_ema:
                setting, value = flag("no_ema"), "(off)"
            raise ValueError(f"{setting} {_show(value)} differs from the run's {_show(current[name])} and cannot "
                             f"change on {flag('resume')} (it defines the model, the data or the random streams); "
                             f"start a new run with another {flag('out')}")
    # honoured changes
    changed = {}
    for name in RESUMABLE:
        value = settings.get(name)
        if value is not None and value != getattr(cfg, name):
            changed[name] = [getattr(cfg, name), value]
            setattr(cfg, name, value)
    if settings.get("lr") is not None:            # lr alone sets both networks' rates, as in a new run
        for name in ("lr_d", "lr_g"):
            if settings.get(name) is None and getattr(cfg, name) is not None:
                changed[name] = [getattr(cfg, name), None]
                setattr(cfg, name, None)
    cfg.max_time = settings.get("max_time")       # a limit for this invocation, not a setting of the run
    steps, epochs = settings.get("steps"), settings.get("epochs")
    if steps is not None and epochs is None and cfg.epochs is not None:
        changed["epochs"] = [cfg.epochs, None]   # steps replace an epoch budget
        cfg.epochs = None
    if backend.name() != cfg.backend:
        changed["backend"] = [cfg.backend, backend.name()]
        cfg.backend = backend.name()
    cfg.validate()
    step = meta.get("step")
    if steps is not None and epochs is None and isinstance(step, int) and steps <= step:
        raise ValueError(f"{flag('steps')} {steps}: the run is already at step {step}; give more steps to continue")
    if changed:
        history = history + [{"step": step, "changed": changed}]
    return cfg, history, changed


def _note(msg, comm):
    """A "note: ..." line on stderr (from rank 0 alone in a data-parallel run)."""
    if comm is None or comm.rank == 0:
        print(f"note: {msg}", file=sys.stderr, flush=True)


def training_data(cfg: TrainConfig, resumed=False, *, data_dir=None, download=False, channels=None, image_size=None,
                  skip_bad=False, max_image_pixels=MAX_IMAGE_PIXELS, quiet=False, comm=None, flag=_setting):
    """The run's training data (a data.Dataset): a named data set, or an image folder (dataset
    "folder:PATH") decoded at the size and channels of the model (``channels`` / ``image_size``, or a
    resumed run's model). Records an image folder's contents in ``cfg.data_contents``."""
    # a resumed run's model fixes the geometry (MNIST's 1x28x28 is the one a run does not record)
    shape = cfg.model_args.get("image_shape") or ([1, 28, 28] if resumed else None)
    if cfg.dataset.startswith(FOLDER):
        path = cfg.dataset[len(FOLDER):]
        if not path:
            raise ValueError(f"{flag('dataset')} folder:PATH: give the folder, e.g. {flag('dataset')} folder:~/pictures")
        from ..data.folder import BadFilesError
        try:
            ds = data.image_folder(Path(path).expanduser(), channels=shape[0] if shape else (channels or 3),
                                   image_size=shape[1] if shape else (image_size or 32), skip_bad=skip_bad,
                                   progress=not quiet, max_pixels=max_image_pixels)
        except BadFilesError as exc:
            raise exc.with_skip(flag("skip_bad")) from None
        if ds.note:
            _note(ds.note, comm)
        if resumed and cfg.data_contents and ds.contents != cfg.data_contents:
            _note(f"{path} has changed since the run started: it held {cfg.data_contents}, now {ds.contents}; "
                  "training goes on with what it holds now", comm)
        cfg.data_contents = ds.contents
        return ds.filter_classes(cfg.classes) if cfg.classes is not None else ds
    for name, value, only in (("channels", channels, 1), ("image_size", image_size, 28)):
        if value is not None and value != only:
            raise ValueError(f"{flag(name)} {value}: {cfg.dataset} images are 1x28x28; {flag(name)} applies to "
                             f"{flag('dataset')} {FOLDER}PATH")
    if skip_bad or max_image_pixels != MAX_IMAGE_PIXELS:
        raise ValueError(f"{flag('skip_bad') if skip_bad else flag('max_image_pixels')} applies to "
                         f"{flag('dataset')} {FOLDER}PATH")
    with warnings.catch_warnings():  # the note below says it plainly, without a warning's source line
        warnings.simplefilter("ignore", UserWarning)
        ds = data.load_dataset(cfg.dataset, split="train", data_dir=data_dir, download=download,
                               classes=cfg.classes, progress=not quiet)
    if ds.is_bundled:  # said even when quiet
        _note(f"training on the {ds.source}; for the full data set use --data-dir DIR, $SCRATCHGAN_DATA or --download",
              comm)
    return ds


def fit_model_to_data(cfg: TrainConfig, ds, resumed=False, flag=_setting) -> None:
    """A new run's model takes the data's image shape and, conditional, its number of classes (both
    recorded in model_args only when they differ from MNIST's); a resumed run's must already fit."""
    shape, classes = tuple(ds.image_shape), len(ds.classes)
    want = {"image_shape": list(shape)} if shape != (1, 28, 28) else {}
    if cfg.model.startswith("cgan"):
        if classes < 2:
            raise ValueError(f"{flag('model')} cgan needs labelled data (one subfolder per class for an image "
                             f"folder); {ds.name} has {classes} class")
        if classes != 10:
            want["num_classes"] = classes
    for key, value in want.items() if not resumed else ():
        cfg.model_args[key] = value
    # a recipe's channel counts are per image size (one count per stage); those given win
    for key, value in RECIPES[cfg.model].get("channels", {}).get(shape[1], {}).items() if not resumed else ():
        cfg.model_args.setdefault(key, list(value))
    if cfg.model.startswith("dcgan") and shape[1] in models.DCGAN_CHANNELS:   # one channel count per stage of this size
        for name, key, default in zip(("g_hidden", "d_hidden"), ("g_channels", "d_channels"),
                                      models.DCGAN_CHANNELS[shape[1]]):
            given = cfg.model_args.get(key)
            if given is not None and len(given) != len(default):
                raise ValueError(f"{flag(name)}: the dcgan for {shape[1]}x{shape[2]} images takes {len(default)} "
                                 f"channel counts, one per stage (default {','.join(map(str, default))}), "
                                 f"got {len(given)}")
    have = (tuple(cfg.model_args.get("image_shape", (1, 28, 28))), cfg.model_args.get("num_classes", 10))
    need = (shape, classes if cfg.model.startswith("cgan") else have[1])
    if have != need:
        raise ValueError(f"the data's images are {'x'.join(map(str, shape))} with {classes} classes, but the run's "
                         f"model takes {'x'.join(map(str, have[0]))} with {have[1]}: resume with the data it was "
                         "trained on")


def train(model: str | None = None, out=None, *, loss: str | None = None, model_args: dict | None = None,
          resume: bool = False, overwrite: bool = False, data_dir=None, download: bool = False, channels=None,
          image_size=None, skip_bad: bool = False, max_image_pixels: int = MAX_IMAGE_PIXELS, quiet: bool = False,
          comm: Communicator | None = None, checked=None, flag=_setting, **settings) -> Trainer:
    """Train recipe ``model`` into the run folder ``out`` (default runs/MODEL) and return the
    Trainer; what `scratchgan train` does. ``settings`` and ``model_args``: as for recipe().
    ``resume``: continue the run in ``out`` (the settings given change it where RESUMABLE);
    ``overwrite``: replace the run there (only files scratchgan wrote are removed). A folder run
    (dataset="folder:PATH") decodes its images at ``channels`` x ``image_size``^2 (default 3, 32).
    ``comm``: a data-parallel run's ranks; ``checked``: called on every rank once everything is
    checked, before rank 0 changes anything."""
    comm = comm if comm is not None else Communicator()
    quiet = quiet or comm.rank != 0
    out = Path(out or f"runs/{model or TRAIN_DEFAULTS['model']}")
    if resume and overwrite:
        raise ValueError(f"{flag('resume')} continues the run in {flag('out')} and {flag('overwrite')} replaces it: "
                         "give one of them")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag('out')} {out}: exists and is not a folder")
    check_run_folder(out, files=not overwrite)
    checkpoints = list_checkpoints(out / "checkpoints")
    if resume:
        if not checkpoints:
            raise ValueError(f"{flag('resume')}: no checkpoint in {out / 'checkpoints'}")
        cfg, history, changed = resumed_recipe(out, checkpoints[-1][1], model_args, channels, image_size, flag,
                                               **dict(settings, model=model, loss=loss))
    else:
        cfg, history, changed = recipe(model, loss, model_args=model_args, flag=flag, **settings), [], {}
        ours = run_files(out)[0]
        if ours and not overwrite:
            what = "a run" if checkpoints else "files of an earlier run (" + ", ".join(
                sorted(p.name for p in ours)[:3]) + ")"
            raise ValueError(f"{out} already holds {what}: continue it with {flag('resume')}, choose another "
                             f"{flag('out')}, or replace it with {flag('overwrite')}")
    check_writable(out, f"{flag('out')} {out}")
    dtype = backend.default_dtype()
    backend.set_default_dtype(cfg.dtype)  # a resumed run keeps the dtype it was started with
    try:
        with _LOADING:
            ds = training_data(cfg, resume, data_dir=data_dir, download=download, channels=channels,
                               image_size=image_size, skip_bad=skip_bad, max_image_pixels=max_image_pixels,
                               quiet=quiet, comm=comm, flag=flag)
        fit_model_to_data(cfg, ds, resumed=resume, flag=flag)
        if resume:   # the model a checkpoint describes is built no larger than the arrays it carries
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
                          quiet=quiet, data_note=ds.source, class_names=ds.classes if gan.conditional else None,
                          comm=comm)
        trainer.history = history
        if checked is not None:   # every rank has checked the run folder (and all else) before rank 0 changes it
            checked()
        if overwrite and comm.rank == 0:  # only now, when everything else has been checked: the old run goes
            kept = clear_run(out)
            if kept:
                _note(f"{flag('overwrite')} kept {len(kept)} file(s) that scratchgan did not write: "
                      + ", ".join(str(p.relative_to(out)) for p in kept[:5]) + (" ..." if len(kept) > 5 else ""), comm)
        if not quiet:
            print(f"data: {ds.name} ({ds.split}), {len(ds):,} image{'s' * (len(ds) != 1)} from {ds.source}")
            print(f"model: {cfg.model} on {backend.name()}  ->  {out}"
                  + (f"  ({comm.size} ranks, {cfg.batch_size // comm.size} items each per batch)"
                     if comm.size > 1 else ""))
            gan.G.summary((gan.latent_dim + gan.num_classes,))
            gan.D.summary(gan.d_input_shape)
        if resume:
            trainer.resume()
            if changed and not quiet:
                print("changed on resume: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in changed.items()),
                      flush=True)
        last = trainer.train()
        comm.barrier()   # ranks that are threads share the default dtype: none gives it back while another trains
    finally:
        backend.set_default_dtype(dtype)
    if not quiet and not trainer.stop_signal:
        print(f"done: step {trainer.step}; open {out / 'report.html'} (samples, monitor grid, losses, progress), "
              f"checkpoints in {out / 'checkpoints'}")
        if last:
            print("last: " + ", ".join(f"{k}={v}" for k, v in last.items()))
    return trainer
