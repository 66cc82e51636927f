"""PyTorch's CPU build on the same GANs and the same training step, timed in the same run.

What it measures, per thread count and model (the builders' tutorial defaults, as
`scratchgan bench` uses them: mlp trained at batch 100, dcgan at batch 64):

* train: one step of scratchgan's GANStep.train_step with k = 1 (training/step.py), and the same step
  in torch: fake = G(z); D descends BCE(D(x), 1) + BCE(D(fake.detach()), 0) with Adam
  (lr 2e-4, betas (0.5, 0.999)); then G descends BCE(D(fake), 1) (non-saturating) through the
  updated D, on the same fake batch. float32, both models in train mode.
* sample: G in eval mode on a fixed batch of 256 noise vectors (gan.generate in scratchgan).

The torch models are translated layer by layer from scratchgan's G and D, with its initial
weights, so both sides run the same architecture from the same start. Each figure is the median
of --repeats calls after --warmup calls, torch and scratchgan timed back to back, so the ratio
(scratchgan ms / torch ms) compares the two under the same machine load; the absolute times do not
carry over from one machine, or one moment, to another.

PyTorch is not a dependency of scratchgan. In a separate virtual environment, from the repository root:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch          # a CPU build (e.g. torch==2.13.0+cpu)
    /tmp/torchvenv/bin/pip install numpy scipy matplotlib Pillow tqdm threadpoolctl
    PYTHONPATH=. /tmp/torchvenv/bin/python examples/torch_reference.py
    PYTHONPATH=. /tmp/torchvenv/bin/python examples/torch_reference.py --models dcgan --threads 1 --repeats 21 --json
    PYTHONPATH=. /tmp/torchvenv/bin/python examples/torch_reference.py --layers   # and each layer alone
    PYTHONPATH=. /tmp/torchvenv/bin/python examples/torch_reference.py --models dcgan --image-shape 3x64x64 \
        --d-recipe --layers        # the colour DCGAN that `train --model dcgan --image-size 64` trains

--ranks N adds a row "train Nrk": scratchgan's step as N data-parallel ranks that are threads of this
process (`scratchgan train --ranks N`), each with its rows of the same batch of 64 and threads / N BLAS
threads, against torch's step at those threads, timed again right before.

--image-shape CxHxW builds the dcgan for that shape (`build("dcgan", image_shape=...)`); --d-recipe
gives it the D of the train recipe (spectral norm, no dropout) instead of the builder's (dropout 0.3).
With --layers, G's layers are also timed in eval mode at the sampling batch (forward only, torch
under inference_mode), the per-layer split of sampling.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from scratchgan import backend
from scratchgan.layers import (BatchNorm1d, BatchNorm2d, Conv2D, ConvTranspose2D, Dense, Dropout, Flatten, LeakyReLU,
                               ReLU, Reshape, Sigmoid, SpectralNorm, Tanh, Upsample2D)
from scratchgan.models import build
from scratchgan.training import TrainConfig, Trainer

try:
    import torch
    from torch import nn
    from torch.nn.functional import binary_cross_entropy_with_logits as bce
except ImportError:
    torch = None

TRAIN_BATCH = {"mlp": 100, "dcgan": 64}
SETTLE = 0.3   # s before each per-layer figure (median_ms)
SAMPLE_BATCH = 256

# scratchgan layer type -> the torch.nn module with the same hyper-parameters (same meanings, same weight shapes).
TRANSLATIONS = {
    Dense: lambda m: nn.Linear(m.in_features, m.out_features, bias=m.use_bias),
    Conv2D: lambda m: nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.use_bias),
    ConvTranspose2D: lambda m: nn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                                  m.output_padding, bias=m.use_bias),
    BatchNorm1d: lambda m: nn.BatchNorm1d(m.num_features, m.eps, m.momentum, m.affine),
    BatchNorm2d: lambda m: nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine),
    LeakyReLU: lambda m: nn.LeakyReLU(m.negative_slope),
    ReLU: lambda m: nn.ReLU(),
    Tanh: lambda m: nn.Tanh(),
    Sigmoid: lambda m: nn.Sigmoid(),
    Dropout: lambda m: nn.Dropout(m.p),
    Reshape: lambda m: nn.Unflatten(1, m.shape),
    Flatten: lambda m: nn.Flatten(),
    Upsample2D: lambda m: nn.Upsample(scale_factor=m.scale_factor, mode="nearest"),
}


def to_torch(model) -> "nn.Sequential":
    """scratchgan Sequential -> torch.nn.Sequential with the same layers and current weights.
    A SpectralNorm wrapper becomes torch's spectral_norm parametrisation (one power iteration per
    training forward, as scratchgan's) of the translated inner layer."""
    modules = []
    for layer in model.layers:
        spectral = isinstance(layer, SpectralNorm)
        if spectral:
            layer = layer.layer
        make = TRANSLATIONS.get(type(layer))   # exact type: a wrapper (SpectralNorm, ...) must not pass as its base
        if make is None:
            raise TypeError(f"torch_reference: no torch translation for {layer!r}; "
                            f"translated: {', '.join(t.__name__ for t in TRANSLATIONS)}")
        m = make(layer)
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(torch.from_numpy(np.asarray(layer.params[name])))   # copy_ checks the shapes
            for name, b in m.named_buffers():   # BatchNorm's running statistics
                if name in layer.buffers:
                    b.copy_(torch.as_tensor(np.asarray(layer.buffers[name])))
        if spectral:
            m = torch.nn.utils.parametrizations.spectral_norm(m)
        modules.append(m)
    torch_model = nn.Sequential(*modules)
    n_torch = sum(p.numel() for p in torch_model.parameters())
    n_ours = model.num_parameters()
    assert n_torch == n_ours, f"parameter counts differ: torch {n_torch}, scratchgan {n_ours}"
    return torch_model


def median_ms(fn, repeats, warmup, settle=0.0) -> float:
    """Median ms of fn over repeats calls after warmup calls. settle: seconds to wait first, for the
    other library's idle threads to stop spinning (OpenBLAS's and OpenMP's spin for up to ~0.2 s
    after their last call, on the cores these calls need): short calls timed right after the other
    side's would measure that contention instead."""
    time.sleep(settle)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def build_model(kind, image_shape=None, d_recipe=False):
    """The model as the builder makes it, for image_shape (C, H, W) if given; d_recipe: D as the
    train recipe builds it for the dcgan (spectral norm, no dropout)."""
    kwargs = {} if image_shape is None else {"image_shape": tuple(image_shape)}
    if d_recipe and kind == "dcgan":
        kwargs.update(dropout=0.0, spectral_norm=True)
    return build(kind, **kwargs)


def setup(kind, image_shape=None, d_recipe=False):
    """Both sides of one model: (scratchgan train step, torch train step, scratchgan sample, torch sample)."""
    gan, batch = build_model(kind, image_shape, d_recipe), TRAIN_BATCH[kind]
    G, D = to_torch(gan.G), to_torch(gan.D)   # before the Trainer: both start from the builder's weights
    # The real data as `scratchgan bench` makes it (bench_model): random images in [-1, 1].
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (max(4 * batch, 256),) + tuple(gan.image_shape)).astype(np.float32)
    trainer = Trainer(gan, images, None, TrainConfig(model=kind, batch_size=batch), quiet=True)

    # foreach=True runs _multi_tensor_adam; torch has no foreach kernels for CPU tensors, so its
    # _foreach_* ops loop over the tensors in C++ (the CPU default, foreach=None, would pick the
    # Python for-loop _single_tensor_adam instead; fused=True the fused CPU kernel).
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), foreach=True)
    pool = torch.from_numpy(images)
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def torch_train_step():
        x = pool[torch.randint(len(pool), (batch,))]   # a copied batch and fresh noise, as the Trainer draws them
        z = torch.randn(batch, gan.latent_dim)
        fake = G(z)
        opt_D.zero_grad()
        loss_D = bce(D(x), ones) + bce(D(fake.detach()), zeros)
        loss_D.backward()
        opt_D.step()
        # Through the updated D into G; D's gradients from this pass are cleared before its next step.
        opt_G.zero_grad()
        bce(D(fake), ones).backward()
        opt_G.step()

    z = np.random.default_rng(1).standard_normal((SAMPLE_BATCH, gan.latent_dim), dtype=np.float32)
    z_t = torch.from_numpy(z)

    def torch_sample():
        G.eval()
        with torch.inference_mode():
            G(z_t)
        G.train()

    return trainer.train_step, torch_train_step, lambda: gan.generate(z=z), torch_sample


def ranks_step(kind, ranks, image_shape=None, d_recipe=False):
    """scratchgan's training step as ``ranks`` data-parallel ranks that are threads of this process
    (ThreadRanks: `scratchgan train --ranks N`), each with its rows of the same global batch."""
    from scratchgan.training.distributed import ThreadRanks
    group, batch = ThreadRanks(ranks), TRAIN_BATCH[kind]
    gans = [build_model(kind, image_shape, d_recipe) for _ in range(ranks)]
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (max(4 * batch, 256),) + tuple(gans[0].image_shape)).astype(np.float32)
    trainers = [Trainer(gan, images, None, TrainConfig(model=kind, batch_size=batch), quiet=True, comm=comm)
                for gan, comm in zip(gans, group.comms)]
    return lambda: group.run(lambda comm: trainers[comm.rank].train_step())


def layer_rows(kind, repeats, warmup, image_shape=None, d_recipe=False):
    """Each layer of G and D alone, in train mode at the training batch, both sides from the same
    input: forward, and backward to the parameters and (but for a network's first layer, whose
    input is noise or data) to the input. One row per layer, times in ms; each figure waits SETTLE
    seconds first (median_ms). Then G's layers in eval mode at the sampling batch, forward only
    (rows with "eval": True; torch under inference_mode, scratchgan by ``layer.infer``, the path
    sampling takes; gan.generate also folds each batch norm into the layer before it)."""
    gan, batch = build_model(kind, image_shape, d_recipe), TRAIN_BATCH[kind]
    rng = np.random.default_rng(0)
    first_inputs = {"G": gan.sample_noise(batch, rng),
                    "D": rng.uniform(-1, 1, (batch,) + tuple(gan.d_input_shape)).astype(np.float32)}
    rows = []
    for net_name, net in (("G", gan.G), ("D", gan.D)):
        X = first_inputs[net_name]
        for i, (layer, module) in enumerate(zip(net.layers, to_torch(net))):
            Y, cache = layer.forward(X)
            dY = rng.standard_normal(Y.shape).astype(np.float32)
            X_t = torch.from_numpy(X).requires_grad_(i > 0)
            Y_t, dY_t = module(X_t), torch.from_numpy(dY)
            wrt = ([X_t] if i > 0 else []) + list(module.parameters())
            backward = layer.backward_params if i == 0 else layer.backward
            row = {"model": kind, "layer": f"{net_name}{i} {layer!r}".replace("\n", " "),
                   "torch_fwd": median_ms(lambda: module(X_t), repeats, warmup, SETTLE),
                   "scratchgan_fwd": median_ms(lambda: layer.forward(X), repeats, warmup, SETTLE),
                   "torch_bwd": (median_ms(lambda: torch.autograd.grad(Y_t, wrt, dY_t, retain_graph=True),
                                           repeats, warmup, SETTLE) if wrt else 0.0),
                   "scratchgan_bwd": median_ms(lambda: backward(dY, cache), repeats, warmup, SETTLE) if wrt else 0.0}
            rows.append(row)
            X = Y
    X = gan.sample_noise(SAMPLE_BATCH, rng)
    gan.G.eval()
    for i, (layer, module) in enumerate(zip(gan.G.layers, to_torch(gan.G))):
        module.eval()
        X_t = torch.from_numpy(X)

        def torch_fwd():
            with torch.inference_mode():
                module(X_t)
        rows.append({"model": kind, "eval": True, "layer": f"G{i} {layer!r}".replace("\n", " "),
                     "torch_fwd": median_ms(torch_fwd, repeats, warmup, SETTLE),
                     "scratchgan_fwd": median_ms(lambda: layer.infer(X), repeats, warmup, SETTLE),
                     "torch_bwd": 0.0, "scratchgan_bwd": 0.0})
        X = layer(X)
    gan.G.train()
    return rows


def print_layers(rows, threads):
    print(f"\nper layer, {threads} thread(s), train mode at the training batch; ms forward | backward "
          f"(torch / scratchgan); then G in eval mode at batch {SAMPLE_BATCH}, forward")
    sums = {}
    for i, r in enumerate(rows):
        key = (r["layer"][0], r.get("eval", False))
        t, sg = sums.get(key, (0.0, 0.0))
        sums[key] = (t + r["torch_fwd"] + r["torch_bwd"], sg + r["scratchgan_fwd"] + r["scratchgan_bwd"])
        if r.get("eval") and not rows[i - 1].get("eval"):
            print("  eval mode:")
        ratio = (r["scratchgan_fwd"] + r["scratchgan_bwd"]) / max(r["torch_fwd"] + r["torch_bwd"], 1e-9)
        print(f"  {r['layer'][:44]:<44} {r['torch_fwd']:7.3f} / {r['scratchgan_fwd']:7.3f} | "
              f"{r['torch_bwd']:7.3f} / {r['scratchgan_bwd']:7.3f}   x{ratio:.2f}")
    for (net, ev), (t, sg) in sums.items():
        print(f"  sum {net} {'eval' if ev else 'train'}: torch {t:.2f} ms, scratchgan {sg:.2f} ms, x{sg / t:.2f}")


def int_list(text):
    values = [int(v) for v in text.split(",")]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def model_list(text):
    kinds = text.split(",")
    unknown = [k for k in kinds if k not in TRAIN_BATCH]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0]!r}; choose from {', '.join(TRAIN_BATCH)}")
    return kinds


def image_shape_arg(text):
    dims = text.lower().split("x")
    if len(dims) != 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected CxHxW, e.g. 3x64x64, got {text!r}")
    return tuple(int(d) for d in dims)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=model_list, default=list(TRAIN_BATCH), help="mlp,dcgan (default: both)")
    p.add_argument("--threads", type=int_list, default=[1, 2], help="thread counts, e.g. 1,2 (default)")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per figure (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before them")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--layers", action="store_true",
                   help="also time every layer alone, forward and backward, on both sides")
    p.add_argument("--image-shape", type=image_shape_arg, default=None,
                   help="CxHxW of the models' images, e.g. 3x32x32 (default: the builder's 1x28x28)")
    p.add_argument("--d-recipe", action="store_true",
                   help="the dcgan's D as the train recipe builds it: spectral norm, no dropout")
    p.add_argument("--ranks", type=int, default=1,
                   help="also time scratchgan's step as this many ranks that are threads (train --ranks N), "
                        "each with threads / ranks BLAS threads, at the thread counts that are multiples of it")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.ranks < 1:
        p.error("--repeats and --ranks must be >= 1 and --warmup >= 0")
    if torch is None:
        print("error: this reference needs PyTorch (CPU build): pip install torch", file=sys.stderr)
        return 2

    backend.use("numpy")            # a CPU-against-CPU comparison, whatever SCRATCHGAN_BACKEND says
    backend.tune_host_allocator()   # process-wide: torch's CPU allocator also takes its memory from malloc
    models = {kind: setup(kind, args.image_shape, args.d_recipe) for kind in args.models}
    ranked = {kind: ranks_step(kind, args.ranks, args.image_shape, args.d_recipe)
              for kind in args.models if args.ranks > 1}
    rows, layers = [], {}
    for n in args.threads:
        torch.set_num_threads(n)
        for kind, (sg_train, t_train, sg_sample, t_sample) in models.items():
            jobs = [(f"train b{TRAIN_BATCH[kind]}", t_train, sg_train, n),
                    (f"sample b{SAMPLE_BATCH}", t_sample, sg_sample, n)]
            if kind in ranked and n % args.ranks == 0:    # torch timed again, right before: same-run ratios
                jobs.insert(1, (f"train {args.ranks}rk", t_train, ranked[kind], n // args.ranks))
            for what, t_fn, sg_fn, blas in jobs:
                backend.set_threads(blas)
                t_ms = median_ms(t_fn, args.repeats, args.warmup)
                sg_ms = median_ms(sg_fn, args.repeats, args.warmup)
                rows.append({"threads": n, "model": kind, "what": what, "torch_ms": round(t_ms, 3),
                             "scratchgan_ms": round(sg_ms, 3), "ratio": round(sg_ms / t_ms, 3)})
        backend.set_threads(n)
        if args.layers:
            layers[n] = [r for kind in args.models for r in layer_rows(kind, args.repeats, args.warmup, args.image_shape,
                                                                       args.d_recipe)]
    if args.json:
        print(json.dumps({"steps": rows, "layers": layers, "blas": backend.blas_description()} if args.layers
                         else rows, indent=2))
        return 0
    print(f"torch {torch.__version__}, numpy {np.__version__}; float32; median of {args.repeats} after "
          f"{args.warmup} warm-up; ratio = scratchgan ms / torch ms, same run")
    describe = getattr(backend, "blas_description", lambda: "(a tree from before blas_description)")
    print(f"scratchgan's BLAS: {describe()}; torch: {torch.backends.cpu.get_cpu_capability()} "
          f"kernels, oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    print(f"{'threads':>7} {'model':<6} {'what':<12} {'torch ms':>9} {'scratchgan ms':>13} {'ratio':>6}")
    for r in rows:
        print(f"{r['threads']:>7} {r['model']:<6} {r['what']:<12} {r['torch_ms']:>9.2f} {r['scratchgan_ms']:>13.2f} "
              f"{r['ratio']:>6.2f}")
    for n, layer_table in layers.items():
        print_layers(layer_table, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
