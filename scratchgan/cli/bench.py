"""scratchgan bench: time training iterations and layers (a thin layer over scratchgan.bench)."""
from __future__ import annotations

from .args import _add_backend, _image_shape, _image_shapes, _int_list, _integer, _names, _use_backend
from .errors import _RANKS, UsageError


def cmd_bench(args):
    from ..evaluation.bench import main as bench_main
    from ..training.distributed import from_environment
    comm = _RANKS[0] = from_environment(required=args.distributed)
    if args.image_shape is not None and not args.layers:
        raise UsageError("--image-shape applies to --layers (the training steps take --image-shapes)")
    if args.ranks > 1 and (args.distributed or args.contention or args.layers or comm.size > 1):
        raise UsageError("--ranks times the training steps of one process against ranks that are its threads; "
                         "leave out --distributed, --contention and --layers (and mpiexec)")
    _use_backend(args, comm, heavy=not args.contention)   # --contention chooses with and without the busy core
    return bench_main(args, comm)


def add_parser(sub):
    b = sub.add_parser("bench", help="time training iterations and layers")
    b.add_argument("--models", type=_names(["mlp", "cgan", "dcgan"]), default=["mlp", "dcgan"],
                   help="(default: mlp,dcgan)")
    b.add_argument("--batch-sizes", type=_int_list(1, 4096, 16), default=[16, 64, 256], help="(default: 16,64,256)")
    b.add_argument("--repeats", type=_integer(1, 1000), default=5, help="timed iterations per row (default: 5)")
    b.add_argument("--image-shapes", type=_image_shapes, default=None,
                   help="comma-separated CxHxW, e.g. 1x28x28,3x32x32,3x64x64 (default: 1x28x28)")
    b.add_argument("--layers", action="store_true", help="per-layer forward/backward times (DCGAN sizes)")
    b.add_argument("--image-shape", type=_image_shape, default=None,
                   help="with --layers: every layer of the dcgan for this CxHxW (recipe D: spectral norm, no "
                        "dropout), train mode and G's eval-mode sampler, e.g. 3x64x64 (default: the 28x28 shapes)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.add_argument("--contention", action="store_true",
                   help="time the training steps again with a busy process pinned to one core, at the threads "
                        "scratchgan picks then (docs/performance.md)")
    b.add_argument("--ranks", type=_integer(1, 256), default=1,
                   help="time the training steps as N ranks that are threads (train --ranks N) against one "
                        "process, each rank with 1/N of the threads (docs/distributed.md) (default: 1)")
    b.add_argument("--distributed", action="store_true",
                   help="under mpiexec: time data-parallel steps over the ranks, split into compute and "
                        "all-reduce, with the bytes reduced per step (docs/distributed.md)")
    _add_backend(b)
    b.set_defaults(func=cmd_bench)
