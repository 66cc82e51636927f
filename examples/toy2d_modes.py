"""The 2-D mode-collapse benchmark: train the toy MLP GAN on the 8-Gaussian ring and the
25-Gaussian grid over several seeds, with one or more loss families, and report modes covered
and the high-quality fraction.

    python examples/toy2d_modes.py --datasets ring,grid --seeds 0,1,2 --steps 3000 --out runs/toy2d
    python examples/toy2d_modes.py --losses bce,wgan,wgan-gp,hinge,lsgan --seeds 0,1,2,3,4 --steps 5000

Each loss runs with its toy recipe (scratchgan.evaluation.toy2d.TOY_RECIPES; --lr overrides it). Prints a
table (mean over seeds and each seed), writes OUT/toy2d.json and OUT/toy2d_LOSS.png (the 2,500
evaluated samples of each run over the true modes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from scratchgan.evaluation import toy2d


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = sorted({r["dataset"] for r in results}, key=["ring", "grid"].index)
    seeds = sorted({r["seed"] for r in results})
    fig, axes = plt.subplots(len(datasets), len(seeds), figsize=(2.6 * len(seeds), 2.6 * len(datasets)),
                             squeeze=False)
    for r in results:
        ax = axes[datasets.index(r["dataset"])][seeds.index(r["seed"])]
        modes, _ = toy2d.DATASETS[r["dataset"]]
        s = r["samples"]
        ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.3)
        ax.scatter(modes[:, 0], modes[:, 1], s=12, c="red", marker="x")
        lim = 1.5 if r["dataset"] == "ring" else 5.5
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{r['loss']} {r['dataset']} seed {r['seed']}: {r['modes_covered']}/{r['n_modes']}, "
                     f"HQ {r['hq_fraction']:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="ring,grid")
    p.add_argument("--losses", default="bce", help="comma-separated: bce, wgan, wgan-gp, hinge, lsgan")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="(default: the loss's toy recipe)")
    p.add_argument("--spectral-norm", action="store_true", help="spectral normalisation of D's Dense layers")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--n-eval", type=int, default=2500)
    p.add_argument("--out", default="runs/toy2d")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    overrides = {} if args.lr is None else {"lr": args.lr}
    for loss in args.losses.split(","):
        for name in args.datasets.split(","):
            for seed in seeds:
                r = toy2d.train_toy_gan(name, steps=args.steps, batch_size=args.batch_size, loss=loss,
                                        latent_dim=args.latent_dim, hidden=args.hidden, seed=seed,
                                        n_eval=args.n_eval, spectral_norm=args.spectral_norm, **overrides)
                print(f"{loss} {name} seed {seed}: modes covered {r['modes_covered']}/{r['n_modes']}, "
                      f"high-quality {r['hq_fraction']:.3f}  ({r['seconds']:.0f} s)", flush=True)
                results.append(r)
    print(f"\nsettings: steps {args.steps}, batch {args.batch_size}, z ~ N(0, I_{args.latent_dim}), hidden "
          f"{args.hidden}, {args.n_eval} samples scored, seeds {seeds}; recipes: "
          + "; ".join(f"{loss} {toy2d.TOY_RECIPES[loss]}" for loss in args.losses.split(",")))
    print(f"{'loss':<8} {'data set':<9} {'modes covered: mean (min-max)':<32} high-quality fraction: mean (min-max)")
    summary = {}
    for loss in args.losses.split(","):
        for name in args.datasets.split(","):
            rs = [r for r in results if r["dataset"] == name and r["loss"] == loss]
            cov = [r["modes_covered"] for r in rs]
            hq = [r["hq_fraction"] for r in rs]
            summary[f"{loss} {name}"] = dict(n_modes=rs[0]["n_modes"], modes_covered_mean=float(np.mean(cov)),
                                             modes_covered=cov, hq_fraction_mean=float(np.mean(hq)), hq_fraction=hq,
                                             seconds_mean=float(np.mean([r["seconds"] for r in rs])))
            cov_text = f"{np.mean(cov):5.2f} / {rs[0]['n_modes']}  ({min(cov)}-{max(cov)})"
            print(f"{loss:<8} {name:<9} {cov_text:<32} {np.mean(hq):.3f} ({min(hq):.3f}-{max(hq):.3f})")
        plot([r for r in results if r["loss"] == loss], out / f"toy2d_{loss}.png")
    (out / "toy2d.json").write_text(json.dumps(
        {"settings": vars(args), "summary": summary,
         "runs": [{k: v for k, v in r.items() if k != "samples"} for r in results]}, indent=2) + "\n")
    print(f"wrote {out / 'toy2d.json'} and {out}/toy2d_LOSS.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
