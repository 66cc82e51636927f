"""Every latent walk of a trained run, as PNG grids (one walk per row).

    python examples/latent_walks.py runs/mlp                       # -> runs/mlp/walks/*.png
    python examples/latent_walks.py runs/cgan --dims 0,5,17 --out walks/

Writes slerp.png (great circles between random codes), linear.png (straight lines),
sweep_dimD.png (dimension D varied, the others held) for each --dims, and, for a
conditional model, classes.png (one z per row, the labels 0..9 across: style held,
class changed). The same grids come from `scratchgan interpolate RUN --mode ...`.
"""
import argparse
from pathlib import Path

from scratchgan.generation import latent
from scratchgan.training import load_run

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("run_dir")
p.add_argument("--out", default=None, help="folder for the PNGs (default RUN/walks)")
p.add_argument("--rows", type=int, default=8)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--dims", default="0,1,2", help="latent dimensions to sweep")
p.add_argument("--label", type=int, default=None, help="cgan: one class for all walks (default: row r -> r % 10)")
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

gan, meta = load_run(args.run_dir)
out = Path(args.out or Path(args.run_dir) / "walks")
print(f"{gan.kind} (step {meta['step']}, latent {gan.latent_dim}, {gan.noise} noise) -> {out}")
common = dict(rows=args.rows, seed=args.seed)
jobs = [("slerp.png", dict(mode="slerp", steps=args.steps, label=args.label)),
        ("linear.png", dict(mode="linear", steps=args.steps, label=args.label))]
jobs += [(f"sweep_dim{d}.png", dict(mode="sweep", steps=args.steps, dim=int(d), label=args.label))
         for d in args.dims.split(",") if d.strip()]
if gan.conditional:
    jobs.append(("classes.png", dict(mode="classes")))
for name, kw in jobs:
    path = latent.save_walk(gan, out / name, **common, **kw)
    print(f"  {path}")
