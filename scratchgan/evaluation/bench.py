"""`scratchgan bench`: time training iterations and layers, count their FLOPs and compare
the achieved rate with the matrix-product (GEMM) rate of the same backend, measured in
the same run (ratios are robust on a shared, noisy machine; absolute times are not).

FLOPs count 2 per multiply-add over the Dense, Conv2D and ConvTranspose2D layers only,
always im2col's count: where a transposed convolution takes the Fourier path, which does
fewer (docs/layers/fourier.md), the rate is an effective one, comparable across versions.
`--layers` says which path each convolution's forward and backward take.
For one training iteration with k = 1 (the trainer reuses the D step's fake batch for
the G step, so G runs forward once):

    G: forward F_G + backward 2 F_G without the first layer's input gradient  = 3 F_G - F_G1
    D: forward on real, fake, fake again (3 F_D); the D step's two backwards (4 F_D) without
       the first layer's input gradient; the G step's backward to the images, input
       gradients only (F_D: D's weights do not move in the G step)            = 8 F_D - 2 F_D1
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from .. import backend
from ..layers import Conv2D, ConvTranspose2D, Dense, Sequential

__all__ = ["layer_flops", "model_flops", "iteration_flops", "gemm_rate", "bench_model", "bench_distributed",
           "bench_contention", "busy_core", "bench_layers", "main"]


def layer_flops(layer, x_shape, y_shape) -> int:
    """Forward FLOPs of one layer for the given input/output shapes (batch included)."""
    if isinstance(layer, Dense):
        return 2 * x_shape[0] * layer.in_features * layer.out_features
    if isinstance(layer, Conv2D):
        kh, kw = layer.kernel_size
        return 2 * int(np.prod(y_shape)) * layer.in_channels * kh * kw
    if isinstance(layer, ConvTranspose2D):
        kh, kw = layer.kernel_size
        return 2 * int(np.prod(x_shape)) * layer.out_channels * kh * kw
    return 0


def model_flops(model: Sequential, input_shape, batch: int) -> tuple[int, int]:
    """(forward FLOPs of the model, forward FLOPs of its first FLOP-counting layer)."""
    xp = backend.array_module(*(p for _, p, _ in model.named_parameters()))
    X = xp.zeros((1,) + tuple(input_shape), dtype=model.dtype)
    mode = model.training
    model.eval()
    total, first = 0, None
    try:
        for layer in model.layers:
            Y = layer(X)
            f = layer_flops(layer, (batch,) + X.shape[1:], (batch,) + Y.shape[1:])
            if f and first is None:
                first = f
            total += f
            X = Y
    finally:
        model.train(mode)
    return total, first or 0


def iteration_flops(gan, batch: int) -> int:
    """FLOPs of one trainer iteration (k = 1), from the layers' geometry."""
    g_in = (gan.latent_dim + gan.num_classes,)
    d_in = gan.d_input_shape
    FG, FG1 = model_flops(gan.G, g_in, batch)
    FD, FD1 = model_flops(gan.D, d_in, batch)
    return 3 * FG - FG1 + 8 * FD - 2 * FD1


def _time(fn, repeats, warmup=2):
    xp = backend.xp()
    for _ in range(warmup):
        fn()
    backend.synchronize(xp)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        backend.synchronize(xp)
        times.append(time.perf_counter() - t0)
    return times


def gemm_rate(n=2048, repeats=5, dtype=np.float32) -> float:
    """GFLOP/s of an n x n x n matrix product on the selected backend (median)."""
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = backend.asarray(rng.standard_normal((n, n)).astype(dtype))
    times = _time(lambda: a @ b, repeats)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def bench_model(kind: str, batch: int, repeats=5, warmup=2, seed=0, image_shape=None) -> dict:
    """Time trainer iterations of a model at a batch size on random data (timing only).

    ``image_shape`` (C, H, W): the model sized for such images (its default widths); None:
    the builder's default, 1x28x28."""
    gan, trainer = _trainer(kind, batch, seed, image_shape)
    times = _time(trainer.train_step, repeats, warmup)
    peak = None
    if backend.xp() is np:
        tracemalloc.start()
        trainer.train_step()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    flops = iteration_flops(gan, batch)
    med = statistics.median(times)
    return {"model": kind, "batch": batch, "image_shape": list(gan.image_shape), "ms_median": med * 1e3,
            "ms_min": min(times) * 1e3, "ms_max": max(times) * 1e3, "samples_per_s": batch / med, "gflop_per_iter": flops / 1e9,
            "gflops": flops / med / 1e9, "peak_mem_mb": None if peak is None else peak / 2**20}


def _trainer(kind, batch, seed, image_shape=None, comm=None):
    """(gan, trainer) of a model at a batch size on random images (timing only)."""
    from ..models import build
    from ..training import TrainConfig, Trainer
    gan = build(kind, seed=seed) if image_shape is None else build(kind, seed=seed, image_shape=tuple(image_shape))
    n = max(4 * batch, 256)
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n,) + tuple(gan.image_shape)).astype(backend.default_dtype())
    labels = rng.integers(0, max(gan.num_classes, 1), n)
    config = TrainConfig(model=kind, batch_size=batch, seed=seed)
    return gan, Trainer(gan, images, labels, config, quiet=True, comm=comm)


def bench_distributed(kind: str, batch: int, comm, repeats=5, warmup=2, seed=0, image_shape=None) -> dict:
    """Time data-parallel trainer iterations over the ranks of ``comm`` at a global batch of
    ``batch`` (batch / ranks items each), split into the time inside all-reduces and the rest
    (compute). The all-reduce time includes waiting for the slowest rank. Returns the median
    step's figures (every rank computes them; rank 0 reports). ``image_shape``: as bench_model's."""
    gan, trainer = _trainer(kind, batch, seed, image_shape, comm=comm)
    for _ in range(warmup):
        trainer.train_step()
    steps = []
    for _ in range(repeats):
        comm.barrier()                         # every rank starts the step together
        seconds, nbytes, calls = comm.reduce_seconds, comm.reduce_bytes, comm.reduce_calls
        t0 = time.perf_counter()
        trainer.train_step()
        backend.synchronize()
        steps.append((time.perf_counter() - t0, comm.reduce_seconds - seconds, comm.reduce_bytes - nbytes,
                      comm.reduce_calls - calls))
    total, reduce, nbytes, calls = sorted(steps)[len(steps) // 2]
    row = {"model": kind, "image_shape": list(gan.image_shape), "batch": batch, "ranks": comm.size,
           "per_rank_batch": batch // comm.size,
           "ms_median": total * 1e3, "allreduce_ms": reduce * 1e3, "compute_ms": (total - reduce) * 1e3,
           "bytes_per_step": nbytes, "allreduce_calls": calls, "gflop_per_iter": iteration_flops(gan, batch) / 1e9}
    row["predicted"] = [predict_step(row["compute_ms"], nbytes, calls, ranks, gbit)
                        for ranks in (8, 64) for gbit in (10, 100)]
    return row


def bench_ranks(kind: str, batch: int, ranks: int, repeats=5, warmup=2, seed=0, image_shape=None) -> dict:
    """The training step of one process, and the same step as ``ranks`` ranks that are threads of
    it (ThreadRanks, `train --ranks N`), each with its rows of the batch: the one process with the
    BLAS threads set now, each rank with 1/ranks of them (at least one). Median ms of both."""
    from ..training.distributed import ThreadRanks
    threads = backend.threads() or 1
    one = statistics.median(_time(_trainer(kind, batch, seed, image_shape)[1].train_step, repeats, warmup))
    group = ThreadRanks(ranks)
    trainers = [_trainer(kind, batch, seed, image_shape, comm=comm)[1] for comm in group.comms]
    per_rank = max(1, threads // ranks)
    backend.set_threads(per_rank)
    try:
        split = statistics.median(_time(lambda: group.run(lambda comm: trainers[comm.rank].train_step()),
                                        repeats, warmup))
    finally:
        backend.set_threads(threads)
    return {"model": kind, "batch": batch, "image_shape": list(trainers[0].gan.image_shape), "threads": threads,
            "ranks": ranks, "threads_per_rank": per_rank, "ms_one_process": one * 1e3, "ms_ranks": split * 1e3,
            "ranks_over_one": split / one}


def _main_ranks(args) -> int:
    """`scratchgan bench --ranks N`: one process against N ranks that are threads, row by row."""
    shapes = getattr(args, "image_shapes", None) or [None]
    rows = [bench_ranks(kind, b, args.ranks, repeats=args.repeats, image_shape=shape)
            for kind in args.models for shape in shapes for b in args.batch_sizes]
    blas = backend.blas_description(threads=False)
    if args.json:
        print(json.dumps({"backend": backend.name(), "blas": blas, "models": rows}, indent=2))
        return 0
    print(f"backend {backend.name()}; BLAS: {blas}; training step of one process against {args.ranks} ranks that "
          f"are threads of it (train --ranks {args.ranks}), same batch")
    names, w = _row_names(rows, shapes)
    print(f"{'model':<{w}} {'batch':>5} {'one process ms':>14} {'threads':>7} {'ranks ms':>9} {'threads each':>12} "
          f"{'ranks/one':>9}")
    for name, r in zip(names, rows):
        print(f"{name:<{w}} {r['batch']:>5} {r['ms_one_process']:>14.1f} {r['threads']:>7} {r['ms_ranks']:>9.1f} "
              f"{r['threads_per_rank']:>12} {r['ranks_over_one']:>9.2f}")
    return 0


LATENCY_US = 20.0    # one small message between machines over Ethernet/TCP (a few us on InfiniBand)


def predict_step(compute_ms, nbytes, calls, ranks, gbit_per_s, latency_us=LATENCY_US) -> dict:
    """The scaling model of docs/performance.md: a step on ``ranks`` machines, each with the
    measured per-rank batch and compute time, joined by links of ``gbit_per_s``. A ring all-reduce
    sends and receives 2 (N - 1) / N of the buffer per rank; each of the step's ``calls`` also
    pays about 2 log2(N) message latencies (the small ones are latency-bound):

        t_N = t_compute + 2 (N - 1) / N * bytes / bandwidth + calls * 2 log2(N) * latency

    Returns the step time, the all-reduce share and the efficiency t_compute / t_N (the fraction
    of N times one rank's throughput that N ranks reach)."""
    transfer = 2 * (ranks - 1) / ranks * nbytes * 8 / (gbit_per_s * 1e9)
    latency = calls * 2 * math.log2(ranks) * latency_us * 1e-6
    t = compute_ms / 1e3 + transfer + latency
    return {"ranks": ranks, "gbit_per_s": gbit_per_s, "ms_per_step": t * 1e3,
            "allreduce_ms": (transfer + latency) * 1e3, "efficiency": compute_ms / 1e3 / t}


def _main_distributed(args, comm) -> int:
    """`scratchgan bench --distributed`, under mpiexec: rank 0 prints."""
    result = {"backend": backend.name(), "dtype": str(backend.default_dtype()), "ranks": comm.size,
              "blas_threads": backend.threads(), "blas": backend.blas_description(), "models": []}
    shapes = getattr(args, "image_shapes", None) or [None]
    for kind in args.models:
        for shape in shapes:
            for b in args.batch_sizes:
                result["models"].append(bench_distributed(kind, b, comm, repeats=args.repeats, image_shape=shape))
    if comm.rank != 0:
        return 0
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"backend {result['backend']}, {result['dtype']}; {comm.size} ranks x {result['blas_threads']} BLAS "
          f"thread(s); batch = global batch, split over the ranks; BLAS: {result['blas']}")
    names, w = _row_names(result["models"], shapes)
    print(f"{'model':<{w}} {'batch':>5} {'per rank':>8} {'ms/step':>8} {'compute':>8} {'allreduce':>9} "
          f"{'MB reduced':>10} {'calls':>5}")
    for name, r in zip(names, result["models"]):
        print(f"{name:<{w}} {r['batch']:>5} {r['per_rank_batch']:>8} {r['ms_median']:>8.1f} "
              f"{r['compute_ms']:>8.1f} {r['allreduce_ms']:>9.2f} {r['bytes_per_step'] / 1e6:>10.2f} "
              f"{r['allreduce_calls']:>5}")
    print(f"\npredicted on N machines, each with this per-rank batch and compute time "
          f"(ring all-reduce, {LATENCY_US:g} us per message; docs/performance.md):")
    print(f"{'model':<{w}} {'N':>3} {'link':>8} {'ms/step':>8} {'allreduce':>9} {'efficiency':>10}")
    for name, r in zip(names, result["models"]):
        for p in r["predicted"]:
            print(f"{name:<{w}} {p['ranks']:>3} {p['gbit_per_s']:>4} Gb/s {p['ms_per_step']:>8.1f} "
                  f"{p['allreduce_ms']:>9.2f} {100 * p['efficiency']:>9.0f}%")
    return 0


@contextlib.contextmanager
def busy_core(cpu: int):
    """Another process spinning on core ``cpu`` for the duration: a laptop's background job."""
    loop = f"import os\nos.sched_setaffinity(0, {{{int(cpu)}}})\nwhile True:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", loop])
    try:
        time.sleep(0.3)                        # started and pinned before anything is timed
        yield
    finally:
        proc.kill()
        proc.wait()


def bench_contention(kind: str, batch: int, repeats=5, threads=None, image_shape=None) -> dict:
    """A model's training step on an idle machine and with a busy process pinned to one core,
    each at the thread count scratchgan picks then (``threads``: fixed instead): all idle cores,
    i.e. one fewer when a core is busy (backend.idle_cores). ``image_shape``: as bench_model's."""
    def timed():
        n = threads or backend.idle_cores()
        backend.set_threads(n)
        return n, bench_model(kind, batch, repeats=repeats, image_shape=image_shape)["ms_median"]
    n_idle, idle = timed()
    with busy_core(max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0):
        n_busy, busy = timed()
    return {"model": kind, "image_shape": None if image_shape is None else list(image_shape), "batch": batch,
            "threads_idle": n_idle, "ms_idle": idle, "threads_busy": n_busy,
            "ms_busy": busy, "busy_over_idle": busy / idle}


def _main_contention(args) -> int:
    shapes = getattr(args, "image_shapes", None) or [None]
    blas = backend.blas_description(threads=False)    # (the thread count varies below)
    rows = [bench_contention(kind, b, repeats=args.repeats, threads=args.threads, image_shape=shape)
            for kind in args.models for shape in shapes for b in args.batch_sizes]
    if args.json:
        print(json.dumps({"backend": backend.name(), "cores": backend.available_cores(), "blas": blas,
                          "models": rows}, indent=2))
        return 0
    print(f"backend {backend.name()}, {backend.available_cores()} cores; busy: another process spinning on one core; "
          f"threads: {'--threads' if args.threads else 'as scratchgan picks them (the idle cores)'}; BLAS: {blas}")
    names, w = _row_names(rows, shapes)
    print(f"{'model':<{w}} {'batch':>5} {'idle ms':>8} {'threads':>7} {'busy ms':>8} {'threads':>7} {'busy/idle':>9}")
    for name, r in zip(names, rows):
        print(f"{name:<{w}} {r['batch']:>5} {r['ms_idle']:>8.1f} {r['threads_idle']:>7} {r['ms_busy']:>8.1f} "
              f"{r['threads_busy']:>7} {r['busy_over_idle']:>9.2f}")
    return 0


def dcgan_layers():
    """The DCGAN's conv layers (and a few others) at their batch-64 input shapes."""
    from ..layers import BatchNorm2d, Dropout, LeakyReLU
    return [
        ("G Dense 100->12544", Dense(100, 12544, bias=False), (64, 100)),
        ("G ConvT 256->128 5x5 s1 (7x7)", ConvTranspose2D(256, 128, 5, 1, 2, bias=False), (64, 256, 7, 7)),
        ("G ConvT 128->64 5x5 s2 (7->14)", ConvTranspose2D(128, 64, 5, 2, 2, 1, bias=False), (64, 128, 7, 7)),
        ("G ConvT 64->1 5x5 s2 (14->28)", ConvTranspose2D(64, 1, 5, 2, 2, 1), (64, 64, 14, 14)),
        ("G BatchNorm2d 128 (7x7)", BatchNorm2d(128), (64, 128, 7, 7)),
        ("D Conv 1->64 5x5 s2 (28->14)", Conv2D(1, 64, 5, 2, 2), (64, 1, 28, 28)),
        ("D Conv 64->128 5x5 s2 (14->7)", Conv2D(64, 128, 5, 2, 2), (64, 64, 14, 14)),
        ("D LeakyReLU (64x14x14)", LeakyReLU(0.2), (64, 64, 14, 14)),
        ("D Dropout 0.3 (64x14x14)", Dropout(0.3), (64, 64, 14, 14)),
        ("D Dense 6272->1", Dense(6272, 1), (64, 6272)),
    ]


def model_layers(image_shape, batch=64, sample_batch=256):
    """Every layer of the DCGAN that `train --model dcgan` trains for image_shape (C, H, W): the
    builder's G and the recipe's D (spectral norm, no dropout), with its input, as the network feeds
    it: (name, layer, X, mode), train mode at ``batch``; then G's layers as sampling runs them (eval
    mode, batch norms folded: layers.fused_for_eval) at ``sample_batch``, mode "eval"."""
    from ..layers import fused_for_eval
    from ..models import build
    gan = build("dcgan", image_shape=tuple(image_shape), dropout=0.0, spectral_norm=True)
    xp = backend.array_module(*(p for _, p, _ in gan.G.named_parameters()))
    rng = backend.random_generator(xp, 0, 0)
    rows = []
    for net_name, net, X in (("G", gan.G, gan.sample_noise(batch, rng)),
                             ("D", gan.D, rng.uniform(-1, 1, (batch,) + tuple(gan.image_shape)).astype(gan.G.dtype))):
        for i, layer in enumerate(net.layers):
            rows.append((f"{net_name}{i} {_short(layer, X)}", layer, X, "train"))
            X = layer(X)
    gan.G.eval()
    X = gan.sample_noise(sample_batch, rng)
    for i, layer in enumerate(fused_for_eval(gan.G).layers):
        rows.append((f"G{i} {_short(layer, X)}", layer, X, "eval"))
        X = layer.infer(X)
    return rows


def _short(layer, X) -> str:
    """A layer's name in a table row: type, channels and map size, e.g. "ConvT 64->3 s2 (16x16)"."""
    sn = "SN " if hasattr(layer, "layer") else ""
    inner = getattr(layer, "layer", layer)
    kind = type(inner).__name__.replace("ConvTranspose2D", "ConvT").replace("Conv2D", "Conv")
    if isinstance(inner, (Conv2D, ConvTranspose2D)):
        return f"{sn}{kind} {inner.in_channels}->{inner.out_channels} s{inner.stride[0]} ({X.shape[2]}x{X.shape[3]})"
    if isinstance(inner, Dense):
        return f"{sn}{kind} {inner.in_features}->{inner.out_features}"
    return f"{kind} {'x'.join(map(str, X.shape[1:]))}"


def bench_layers(repeats=10, image_shape=None) -> list[dict]:
    """Forward and backward ms of each layer: the fixed DCGAN shapes (dcgan_layers), or with
    image_shape every layer of that size's DCGAN (model_layers): train mode forward and backward
    (to the parameters only for a network's first layer), and the eval-mode sampler's ``infer``."""
    if image_shape is not None:
        return _bench_model_layers(image_shape, repeats)
    rows = []
    rng = np.random.default_rng(0)
    for name, layer, shape in dcgan_layers():
        X = backend.asarray(rng.standard_normal(shape).astype(backend.default_dtype()))
        Y, cache = layer.forward(X)
        dY = backend.asarray(rng.standard_normal(Y.shape).astype(Y.dtype))
        fwd = statistics.median(_time(lambda: layer.forward(X), repeats))
        bwd = statistics.median(_time(lambda: layer.backward(dY, cache), repeats))
        f = layer_flops(layer, X.shape, Y.shape)
        rows.append({"layer": name, "forward_ms": fwd * 1e3, "backward_ms": bwd * 1e3,
                     "gflops_fwd_bwd": (3 * f / (fwd + bwd) / 1e9) if f else None,
                     "algorithms": _algorithms(layer, X.shape)})
    return rows


def _bench_model_layers(image_shape, repeats):
    rows = []
    rng = np.random.default_rng(0)
    first = None
    for name, layer, X, mode in model_layers(image_shape):
        if mode == "eval":
            fwd = statistics.median(_time(lambda: layer.infer(X.copy()), repeats))
            bwd = 0.0
        else:
            layer.train()
            Y, cache = layer.forward(X)
            dY = backend.asarray(rng.standard_normal(Y.shape).astype(Y.dtype))
            backward = layer.backward_params if name[0] != first else layer.backward
            first = name[0]
            fwd = statistics.median(_time(lambda: layer.forward(X), repeats))
            bwd = statistics.median(_time(lambda: backward(dY, cache), repeats)) if layer.num_parameters() or \
                backward == layer.backward else 0.0
        inner = getattr(layer, "layer", layer)   # SpectralNorm's
        Y = layer.infer(X.copy()) if mode == "eval" else layer(X)
        f = layer_flops(inner, X.shape, Y.shape)
        rows.append({"layer": f"{name} [{mode}, batch {len(X)}]", "forward_ms": fwd * 1e3, "backward_ms": bwd * 1e3,
                     "gflops_fwd_bwd": ((f if mode == "eval" else 3 * f) / (fwd + bwd) / 1e9) if f else None,
                     "algorithms": _algorithms(inner, X.shape)})
        if mode == "train":
            layer.zero_grad()
    return rows


def _algorithms(layer, x_shape) -> str:
    """Which path a convolution's forward and backward take ("" for other layers)."""
    path = {True: "fourier", False: "im2col"}
    if isinstance(layer, ConvTranspose2D):
        return f"{path[layer.uses_fourier(x_shape)]} / {path[layer.uses_fourier(x_shape, 'backward')]}"
    if isinstance(layer, Conv2D):
        return "im2col / im2col" + (", dX fourier" if layer.input_grad_uses_fourier(x_shape) else "")
    return ""


def _row_names(rows, shapes) -> tuple[list, int]:
    """The table rows' model names, with the image shape when the run asked for shapes, and the
    width of their column."""
    names = [r["model"] if shapes == [None] else f"{r['model']} {'x'.join(map(str, r['image_shape']))}" for r in rows]
    return names, max([6] + [len(n) for n in names])


def main(args, comm=None) -> int:
    """The bench command; data-parallel steps over ``comm``'s ranks with --distributed or under
    mpiexec with more than one rank."""
    if getattr(args, "distributed", False) or (comm is not None and comm.size > 1):
        return _main_distributed(args, comm)
    if getattr(args, "contention", False):
        return _main_contention(args)
    if getattr(args, "ranks", 1) > 1:
        return _main_ranks(args)
    models, batches = args.models, args.batch_sizes   # lists, parsed and checked by the CLI
    shapes = getattr(args, "image_shapes", None) or [None]   # (C, H, W) tuples; None: 1x28x28
    gemm = gemm_rate()
    result = {"backend": backend.name(), "dtype": str(backend.default_dtype()), "gemm_gflops": gemm,
              "blas": backend.blas_description(), "models": []}
    for kind in models:
        for shape in shapes:
            for b in batches:
                row = bench_model(kind, b, repeats=args.repeats, image_shape=shape)
                row["fraction_of_gemm"] = row["gflops"] / gemm
                result["models"].append(row)
    if args.layers:
        result["layers"] = bench_layers(image_shape=getattr(args, "image_shape", None))
    result["gemm_gflops_after"] = gemm_rate()  # the machine may have been busy: bracket the run
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"backend {result['backend']}, {result['dtype']}; GEMM 2048^3: {gemm:.1f} GFLOP/s "
          f"(before), {result['gemm_gflops_after']:.1f} (after); BLAS: {result['blas']}")
    names, w = _row_names(result["models"], shapes)
    print(f"{'model':<{w}} {'batch':>5} {'ms/iter med':>11} {'min':>7} {'max':>7} {'samples/s':>10} "
          f"{'GFLOP/iter':>10} {'GFLOP/s':>8} {'of GEMM':>7} {'peak MB':>8}")
    for name, r in zip(names, result["models"]):
        peak = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        print(f"{name:<{w}} {r['batch']:>5} {r['ms_median']:>11.1f} {r['ms_min']:>7.1f} {r['ms_max']:>7.1f} "
              f"{r['samples_per_s']:>10.0f} {r['gflop_per_iter']:>10.2f} {r['gflops']:>8.1f} "
              f"{100 * r['fraction_of_gemm']:>6.0f}% {peak:>8}")
    if args.layers:
        w = max(34, *(len(r["layer"]) for r in result["layers"]))
        print(f"\n{'layer (batch 64)':<{w}} {'forward ms':>10} {'backward ms':>11} {'GFLOP/s':>8}  algorithms")
        for r in result["layers"]:
            g = "-" if r["gflops_fwd_bwd"] is None else f"{r['gflops_fwd_bwd']:.1f}"
            print(f"{r['layer']:<{w}} {r['forward_ms']:>10.2f} {r['backward_ms']:>11.2f} {g:>8}  {r['algorithms']}")
    return 0
