"""A recipe search you can rerun: train a grid of settings for one model at EQUAL wall-clock
budgets and score each with the project's judge, writing a table.

    python examples/recipe_search.py --model dcgan --budget 600 --data-dir ../shared/data/mnist --out runs/search-dcgan
    python examples/recipe_search.py --model mlp --budget 120 --trials tutorial,ema --parallel 2 ...

Each trial is `scratchgan train --steps 10000000 --model ... FLAGS --max-time BUDGET` in its own
process with one BLAS thread (OPENBLAS_NUM_THREADS=1), up to --parallel at a time (one per core: with
two cores, two trials share the machine evenly). When all have trained, each is scored in this process
with `metrics.evaluate_run` (10,000 samples against the official test set; the real-data reference is
computed once). Writes OUT/search.json and OUT/search.md (a Markdown table, best classifier score
first) and prints the table. TRIALS below holds the grids that chose the default recipes
(docs/results.md); --trials picks some by name, --extra NAME=FLAGS adds one.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEEP_MLP = ("--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh --d-dropout 0.3 --minibatch-std "
            "--g-hidden 256,512 --d-hidden 512,256")
SMALL_DCGAN = "--model dcgan-tutorial --ema 0.999 --g-hidden 128,64,32 --d-hidden 32,64 --d-dropout 0 --lr 5e-4"
# Each model's trials, by name. The search behind docs/results.md ran them in the rounds listed there
# (--trials NAME,...); the later rounds refined the best of the earlier ones.
TRIALS = {
    "mlp": {
        "tutorial": "--model mlp-tutorial",
        "ema": "--model mlp-tutorial --ema 0.999",
        "ema-lr5e-4": "--model mlp-tutorial --ema 0.999 --lr 5e-4",
        "ema-wide": "--model mlp-tutorial --ema 0.999 --g-hidden 256,512 --d-hidden 512,256",
        "ema-b32": "--model mlp-tutorial --ema 0.999 --batch-size 32",
        "ema-ttur": "--model mlp-tutorial --ema 0.999 --lr-d 4e-4 --lr-g 1e-4",
        "ema-smooth": "--model mlp-tutorial --ema 0.999 --label-smoothing 0.1",
        "ema-512": "--model mlp-tutorial --ema 0.999 --g-hidden 512 --d-hidden 512",
        "leaky-tanh-drop": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh --d-dropout 0.3",
        "leaky-tanh-drop-mbstd": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh "
                                 "--d-dropout 0.3 --minibatch-std",
        "leaky-tanh-mbstd": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh --minibatch-std",
        "leaky-tanh-drop-mbstd-b32": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh "
                                     "--d-dropout 0.3 --minibatch-std --batch-size 32",
        "leaky-tanh-drop-mbstd-deep": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh "
                                      "--d-dropout 0.3 --minibatch-std --g-hidden 256,512 --d-hidden 512,256",
        "relu-mbstd": "--model mlp-tutorial --ema 0.999 --minibatch-std",
        "deep-lr5e-4": DEEP_MLP + " --lr 5e-4",
        "deep-ttur-g": DEEP_MLP + " --lr-g 4e-4 --lr-d 2e-4",
        "gdeep": "--model mlp-tutorial --ema 0.999 --activation leaky_relu --g-output tanh --d-dropout 0.3 "
                 "--minibatch-std --g-hidden 256,512 --d-hidden 256",
        "deep-lr5e-4-decay": DEEP_MLP + " --lr 5e-4 --lr-decay linear --steps 7000",
        "deep-lr1e-3": DEEP_MLP + " --lr 1e-3",
    },
    "cgan": {
        "tutorial": "--model cgan-tutorial",
        "ema": "--model cgan-tutorial --ema 0.999",
        "ema-nodrop": "--model cgan-tutorial --ema 0.999 --d-dropout 0",
        "ema-lr5e-4": "--model cgan-tutorial --ema 0.999 --lr 5e-4",
        "ema-b32": "--model cgan-tutorial --ema 0.999 --batch-size 32",
        "ema-narrow-d": "--model cgan-tutorial --ema 0.999 --d-hidden 256,128",
        "ema-proj": "--model cgan-tutorial --ema 0.999 --projection",
        "ema-nodrop-lr5e-4": "--model cgan-tutorial --ema 0.999 --d-dropout 0 --lr 5e-4",
        "ema-proj-nodrop": "--model cgan-tutorial --ema 0.999 --projection --d-dropout 0",
        "ema-proj-nodrop-lr5e-4": "--model cgan-tutorial --ema 0.999 --projection --d-dropout 0 --lr 5e-4",
        "ema-nodrop-narrow-d-lr5e-4": "--model cgan-tutorial --ema 0.999 --d-dropout 0 --d-hidden 256,128 --lr 5e-4",
        "ema-proj-nodrop-narrow-d": "--model cgan-tutorial --ema 0.999 --projection --d-dropout 0 --d-hidden 256,128",
    },
    "dcgan": {
        "tutorial": "--model dcgan-tutorial",
        "ema": "--model dcgan-tutorial --ema 0.999",
        "ema-g128-nodrop-lr5e-4": "--model dcgan-tutorial --ema 0.999 --g-hidden 128,64,32 --d-dropout 0 --lr 5e-4",
        "ema-d32-b32": "--model dcgan-tutorial --ema 0.999 --d-hidden 32,64 --batch-size 32",
        "ema-small-b32-lr5e-4": "--model dcgan-tutorial --ema 0.999 --g-hidden 128,64,32 --d-hidden 32,64 "
                                "--batch-size 32 --d-dropout 0 --lr 5e-4",
        "ema-small-b32-lr2e-4": "--model dcgan-tutorial --ema 0.999 --g-hidden 128,64,32 --d-hidden 32,64 "
                                "--batch-size 32 --d-dropout 0 --lr 2e-4",
        "ema-small-b32-lr5e-4-decay": SMALL_DCGAN + " --batch-size 32 --lr-decay linear --steps 7000",
        "ema-small-b64-lr5e-4": SMALL_DCGAN + " --batch-size 64",
        "ema-small-b32-lr1e-3": SMALL_DCGAN + " --batch-size 32 --lr 1e-3",
        "ema-small-b32-lrg1e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 1e-3 --lr-d 5e-4",
        "ema9995-small-b32-lr5e-4": SMALL_DCGAN + " --batch-size 32 --ema 0.9995",
        "ema-small-b32-smooth": SMALL_DCGAN + " --batch-size 32 --label-smoothing 0.1",
        "ema-small-b32-lrg2e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4",
        "ema-small-b32-lrg1e-3-hinge": SMALL_DCGAN + " --batch-size 32 --lr-g 1e-3 --lr-d 5e-4 --loss hinge",
        "ema-small-b32-lrg4e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 4e-3 --lr-d 5e-4",
        "ema-small-b32-lrg2e-3-hinge": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --loss hinge",
        "ema-small-b32-lrg2e-3-mbstd": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --minibatch-std",
        "ema-small-b32-lrg2e-3-drop": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --d-dropout 0.2",
        "ema-small-b32-lrg2e-3-drop0.1": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --d-dropout 0.1",
        "ema-small-b32-lrg2e-3-d48": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --d-hidden 48,96",
        "ema-small-b32-lrg2e-3-sn": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --spectral-norm",
        "ema-small-b32-lr2e-3-sn": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 2e-3 --spectral-norm",
        "ema-small-b32-lrg2e-3-sn-lrd1e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 1e-3 --spectral-norm",
        "ema-small-b32-lrg4e-3-sn-lrd2e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 4e-3 --lr-d 2e-3 --spectral-norm",
        "ema-small-b32-lrg8e-3-sn-lrd4e-3": SMALL_DCGAN + " --batch-size 32 --lr-g 8e-3 --lr-d 4e-3 --spectral-norm",
        "ema-small-b32-lrg8e-3-sn-lrd4e-3-g256": SMALL_DCGAN + " --batch-size 32 --lr-g 8e-3 --lr-d 4e-3 --spectral-norm "
                                                 "--g-hidden 256,64,32",
        "ema-small-b32-lrg2e-3-in0.1": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --instance-noise 0.1 --steps 8000",
        "ema-small-b32-lrg2e-3-in0.3": SMALL_DCGAN + " --batch-size 32 --lr-g 2e-3 --lr-d 5e-4 --instance-noise 0.3 --steps 8000",
    },
}


def command(flags, args, run):
    """The trial's training command. A trial's own --steps (for a --lr-decay schedule) comes after
    the search's and wins; --max-time bounds it all the same."""
    return [sys.executable, "-m", "scratchgan", "train", "--steps", "10000000", *shlex.split(flags),
            "--max-time", str(args.budget), "--seed", str(args.seed), "--out", str(run), "--overwrite", "--quiet",
            "--dataset", "mnist-bundled", "--checkpoint-every", "100000000", "--sample-every", "100000000"]


def select(model, trials=None, extra=()):
    """{name: flags}: all of TRIALS[model], or those named in the comma-separated ``trials`` ("" for
    none), plus each NAME=FLAGS of ``extra``."""
    grid = dict(TRIALS[model])
    if trials is not None:
        grid = {k: grid[k] for k in trials.split(",") if k}
    for item in extra:
        name, _, flags = item.partition("=")
        grid[name] = flags
    return grid


def train(name, flags, args, out):
    run = out / name
    cmd = command(flags, args, run)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    print(f"trained {name} in {wall:.0f} s (exit {proc.returncode})", flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return name, flags, run, wall, proc.returncode


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(TRIALS), required=True)
    p.add_argument("--budget", type=float, required=True, help="seconds of training per trial")
    p.add_argument("--trials", default=None, help="comma-separated names from TRIALS (default: all)")
    p.add_argument("--extra", action="append", default=[], help="NAME=FLAGS, another trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--data-dir", required=True, help="folder with the MNIST test set (t10k-*)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out = Path(args.out or f"runs/search-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    grid = select(args.model, args.trials, args.extra)
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        trained = list(pool.map(lambda kv: train(kv[0], kv[1], args, out), grid.items()))

    from scratchgan.evaluation import metrics
    rows = []
    for name, flags, run, wall, rc in trained:
        if rc != 0:
            rows.append(dict(name=name, flags=flags, error=f"exit {rc}"))
            continue
        r = metrics.evaluate_run(run, data_dir=args.data_dir)
        g, ref = r["generated"], r["real"]
        cs, ceiling = g["classifier_score"][0], ref["classifier_score"][0]
        rows.append(dict(name=name, flags=flags, steps=r["step"], wall_s=round(wall), fid=g["fid"],
                         classifier_score=cs, fraction_of_ceiling=cs / ceiling, noise_fid=r["noise"]["fid"],
                         smallest_class=g["class_histogram"]["min_share"],
                         label_accuracy=(g.get("label_accuracy") or {}).get("overall"),
                         precision=g["precision"], recall=g["recall"],
                         nn_ratio=r["memorisation"]["pixel_ratio"], weights=r.get("weights")))
        print(f"scored {name}: classifier score {cs:.2f} ({cs / ceiling:.0%}), FID {g['fid']:.1f}", flush=True)
    rows.sort(key=lambda r: -r.get("classifier_score", -1))
    (out / "search.json").write_text(json.dumps({"model": args.model, "budget_s": args.budget, "seed": args.seed,
                                                 "rows": rows}, indent=2) + "\n")
    lines = [f"| trial | flags | steps | FID | classifier score (of ceiling) | smallest class | label acc. | "
             f"precision / recall | NN ratio |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | `{r['flags']}` | {r['error']} | | | | | | |")
            continue
        acc = "-" if r["label_accuracy"] is None else f"{r['label_accuracy']:.3f}"
        lines.append(f"| {r['name']} | `{r['flags']}` | {r['steps']:,} | {r['fid']:.1f} | {r['classifier_score']:.2f} "
                     f"({r['fraction_of_ceiling']:.0%}) | {r['smallest_class']:.3f} | {acc} | "
                     f"{r['precision']:.3f} / {r['recall']:.3f} | {r['nn_ratio']:.2f} |")
    table = "\n".join(lines)
    (out / "search.md").write_text(f"{args.model}, {args.budget:g} s per trial, seed {args.seed}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
