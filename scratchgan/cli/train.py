"""scratchgan train: train a GAN and write a run folder (new, --resume or --overwrite)."""
from __future__ import annotations

import argparse
import copy

from ..files.safeio import MAX_IMAGE_PIXELS
from ..training.recipes import RECIPES, RESUMABLE, TRAIN_DEFAULTS
from .args import _add_backend, _classes, _int_list, _integer, _number, _path, _rate, _use_backend
from .errors import _CHECKING, _RANKS, EXIT_OK, UsageError, _agree, guarded

# The train flags that are TrainConfig settings, and those that are model options (recipes.py). The
# parser defaults them to None, so that a flag left out takes the recipe's value, and --resume can
# tell a flag given (to honour or refuse) from one left out.
_SETTINGS = ("dataset", "classes", "steps", "epochs", "batch_size", "lr", "lr_d", "lr_g", "lr_decay", "beta1", "beta2",
             "k", "g_loss", "label_smoothing", "instance_noise", "gp_weight", "clip", "optimizer", "seed", "dtype",
             "ema", "max_time", "log_every", "sample_every", "checkpoint_every")
_MODEL_OPTIONS = ("latent_dim", "noise", "spectral_norm", "projection", "d_dropout", "activation", "g_output",
                  "minibatch_std", "upsample", "g_hidden", "d_hidden")


def _flag(name: str) -> str:
    """How the library's errors name a setting here: as its flag (g_loss -> --g-loss)."""
    return "--" + name.replace("_", "-")


def cmd_train(args):
    """Parse, look up the recipe, train: recipes.train does the rest, with the errors of the flags."""
    from ..training.distributed import ThreadRanks, from_environment, launched_size
    if args.ranks > 1:                 # data-parallel ranks as threads of this process (distributed.py)
        if args.distributed or launched_size() > 1:
            raise UsageError("--ranks makes the ranks threads of one process; under mpiexec (--distributed) the "
                             "processes are the ranks: leave --ranks out")
        ranks = ThreadRanks(args.ranks)
        _use_backend(args, ranks.comms[0], heavy=True)   # once, for the process: each rank's share of the cores
        try:
            codes = ranks.run(lambda comm: guarded(args, lambda: _train(copy.copy(args), comm), reset_dtype=False))
        except SystemExit as exc:        # a rank that failed alone ended them all (errors._failed): it said why
            return exc.code
        finally:
            _RANKS[0], _CHECKING[0] = None, False    # (rank 0 ran in this thread)
        failed = [code for code in codes if code not in (EXIT_OK, None)]   # None: ended by another rank
        return failed[0] if failed else EXIT_OK
    comm = from_environment(required=args.distributed)   # mpiexec: data-parallel (distributed.py)
    _use_backend(args, comm, heavy=True)
    return _train(args, comm)


def _train(args, comm):
    """One rank's part of cmd_train (the only one in one process)."""
    from ..training.recipes import train
    _RANKS[0] = comm
    _CHECKING[0] = comm.size > 1
    if comm.rank != 0:
        args.quiet = True              # rank 0 speaks for all (errors excepted)
    settings = {name: getattr(args, name) for name in _SETTINGS if getattr(args, name) is not None}
    if args.no_ema:
        settings["ema"] = None
    trainer = train(args.model, args.out, loss=args.loss, model_args={k: getattr(args, k) for k in _MODEL_OPTIONS},
                    resume=args.resume, overwrite=args.overwrite, data_dir=args.data_dir, download=args.download,
                    channels=args.channels, image_size=args.image_size, skip_bad=args.skip_bad,
                    max_image_pixels=args.max_image_pixels, quiet=args.quiet, comm=comm, flag=_flag,
                    checked=(lambda: _agree(comm)) if _CHECKING[0] else None, **settings)
    return 128 + trainer.stop_signal if trainer.stop_signal else EXIT_OK


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
    t.add_argument("--ranks", type=_integer(1, 256), default=1,
                   help="data-parallel over N ranks that are threads of this process, no MPI needed: each takes "
                        "1/N of every batch and of the cores; faster for the colour DCGANs, slower for the small "
                        "MNIST recipes (docs/distributed.md) (default: 1)")
    t.add_argument("--log-every", type=_integer(1), default=None,
                   help=f"steps between rows of metrics.csv (default: {d['log_every']})")
    t.add_argument("--sample-every", type=_integer(1), default=None,
                   help=f"steps between sample grids (default: {d['sample_every']})")
    t.add_argument("--checkpoint-every", type=_integer(1), default=None,
                   help=f"steps between checkpoints (default: {d['checkpoint_every']})")
    t.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    _add_backend(t)
    t.set_defaults(func=cmd_train)
