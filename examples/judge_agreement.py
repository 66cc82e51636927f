"""Does a judge trained on the user's own folder rank runs as the shipped judges do, and do its
numbers make sense on colour photographs? The measurements of docs/results.md ("A judge for any
data set"); every number there comes from these commands.

    # 1. folders: Fashion-MNIST and MNIST as PNGs with class subfolders, colour crops of photographs
    python examples/judge_agreement.py prepare --out /tmp/m30 --fashion 20000 \\
        --photos sk_photos.npy --crops 12500
    # 2. GAN runs with checkpoints along the way: one run trained in stages with --resume (exact),
    #    each stage's checkpoint copied to RUN/kept/ (the trainer keeps only the newest three):
    #    for s in 150 300 ... 1500: scratchgan train --model dcgan --dataset fashion-mnist --steps $s \
    #        --out RUN [--resume] --threads 1; cp RUN/checkpoints/step_$s* RUN/kept/
    # 3. scores of >= 8 generators by each judge, and the Spearman rank agreement
    python examples/judge_agreement.py agree --data mnist --run RUN --folder /tmp/m30/mnist
    python examples/judge_agreement.py photos --run RUN --folder /tmp/m30/photos

The generators: every checkpoint of one run (its EMA weights where kept), a mode-collapsed
generator (the last checkpoint fed only 8 distinct latent vectors, each repeated), uniform noise,
and real images that neither judge's reference holds. Each is scored by FID and KID in each
judge's features against that judge's reference (the shipped judges: the first half of the
official test set; the folder judges: their held-out 20%), n samples each.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np


def _png(a: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def prepare(args):
    from scratchgan.data import load_dataset
    out = Path(args.out)
    sets = [("fashion", "fashion-mnist", args.fashion, None), ("mnist", "mnist-bundled", 10000, args.mnist_dir)]
    for name, dataset, n, data_dir in sets:
        folder = out / name
        if folder.exists():
            print(f"{folder}: exists, kept")
            continue
        ds = load_dataset(dataset, split="train", data_dir=data_dir, progress=False)
        for i in range(min(n, len(ds))):
            sub = folder / ds.classes[int(ds.labels[i])].replace("/", "-")
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{i:05d}.png").write_bytes(_png(ds.images[i]))
        print(f"{folder}: {min(n, len(ds))} PNGs of {dataset}, one subfolder per class")
    if args.photos:
        folder = out / "photos"
        if folder.exists():
            print(f"{folder}: exists, kept")
            return
        from PIL import Image
        photos = np.load(args.photos, allow_pickle=False)          # (P, H, W, 3) uint8
        rng = np.random.default_rng(0)
        folder.mkdir(parents=True)
        for i in range(args.crops):
            p = photos[i % len(photos)]
            side = int(rng.integers(48, 161))
            y, x = int(rng.integers(0, p.shape[0] - side)), int(rng.integers(0, p.shape[1] - side))
            crop = Image.fromarray(p[y:y + side, x:x + side]).resize((64, 64), Image.BILINEAR)
            (folder / f"{i:05d}.png").write_bytes(_png(np.asarray(crop)))
        print(f"{folder}: {args.crops} random square crops (48..160 px, resized to 64) of {args.photos}, no classes")


# --------------------------------------------------------------------------- generators

def _checkpoints(run: Path):
    """The run's checkpoints, oldest first: RUN/kept/ when the run was trained in stages that kept
    each one (the trainer itself keeps only its newest three), else RUN/checkpoints/."""
    from scratchgan.training.checkpoint import list_checkpoints
    folder = run / "kept" if (run / "kept").is_dir() else run / "checkpoints"
    return [Path(p) for _, p in list_checkpoints(folder)]


def generators(run: Path, n: int, real01: np.ndarray):
    """[(name, images in [0, 1] (n, C, H, W))]: checkpoints, collapsed, noise, real."""
    from scratchgan import backend
    from scratchgan.evaluation.judge import to_judge_range
    from scratchgan.training import load_run
    out = []
    paths = _checkpoints(run)
    for p in paths:
        gan, meta = load_run(run, p)
        out.append((f"step {meta['step']}", backend.to_numpy(to_judge_range(gan.generate(n, seed=1), gan.output))))
    gan, meta = load_run(run, paths[-1])
    z = gan.sample_noise(8, backend.random_generator(backend.xp(), 7, 0))
    z = backend.xp().tile(z, (n // 8 + 1, 1))[:n]
    out.append((f"collapsed (step {meta['step']}, 8 latents)",
                backend.to_numpy(to_judge_range(gan.generate(z=z), gan.output))))
    out.append(("noise U[0,1]", np.random.default_rng(3).random((n,) + real01.shape[1:], dtype=np.float32)))
    out.append(("real (unseen)", real01[:n]))
    return out


def _scores(judge, ref_feats, images, seed=0):
    from scratchgan.evaluation import metrics
    f = judge.features(images)
    return metrics.fid(f, ref_feats), metrics.kid(f, ref_feats, seed=seed)[0]


def _folder_judge(folder: Path, channels: int, size: int, labels: str, log):
    from scratchgan.data import image_folder
    from scratchgan.evaluation.dataset_judge import judge_for_dataset
    ds = image_folder(folder, channels=channels, image_size=size, labels=labels)
    t0 = time.perf_counter()
    judge, split = judge_for_dataset(ds, progress=log, command=f"examples/judge_agreement.py ({labels})")
    imgs = ds.images if ds.images.ndim == 4 else ds.images[:, None]
    return judge, imgs[split["held_out"]], time.perf_counter() - t0


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(a, b).correlation)


def agree(args):
    from scratchgan.data import load_dataset
    from scratchgan.evaluation.judge import build_judge, load_judge
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    name = args.data
    test = load_dataset(name, split="test", data_dir=args.data_dir, progress=False)
    t = test.as_float("sigmoid")
    half = len(t) // 2
    ref_shipped, real_unseen = t[:half], t[half:]
    shipped = load_judge(name)
    judges = {"shipped": (shipped, shipped.features(ref_shipped))}
    for labels in ("auto", "none"):
        j, held, secs = _folder_judge(Path(args.folder), 1, 28, labels, log)
        judges[f"folder {j.task}"] = (j, j.features(held))
        log(f"folder judge ({j.task}): held-out accuracy {j.info.get('held_out_accuracy')}, {secs:.0f} s")
    rnd = build_judge(0)   # untrained: the baseline every trained judge must beat
    judges["untrained"] = (rnd, rnd.features(ref_shipped))
    gens = generators(Path(args.run), args.n, real_unseen)
    table = {g: {} for g, _ in gens}
    for gname, imgs in gens:
        for jname, (j, ref) in judges.items():
            table[gname][jname] = _scores(j, ref, imgs)
        log(f"{gname}: " + ", ".join(f"{k} FID {v[0]:.2f} KID {v[1]:.4f}" for k, v in table[gname].items()))
    report = {"data": name, "run": args.run, "n": args.n, "generators": list(table), "scores": table,
              "judges": {k: dict(task=v[0].task, info={i: v[0].info.get(i) for i in
                                                        ("held_out_accuracy", "train_seconds", "n_images")})
                         for k, v in judges.items()}, "spearman": {}}
    for jname in judges:
        if jname == "shipped":
            continue
        for m, idx in (("fid", 0), ("kid", 1)):
            report["spearman"][f"{jname} {m}"] = spearman([table[g]["shipped"][idx] for g in table],
                                                          [table[g][jname][idx] for g in table])
    _print(report)


def photos(args):
    """FID/KID/precision/recall/density/coverage of every generator of a colour run, by the rotation
    judge of the photo folder, against its held-out images."""
    from scratchgan.evaluation import metrics
    from scratchgan.data import image_folder
    from scratchgan.evaluation.dataset_judge import judge_for_dataset
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    ds = image_folder(Path(args.folder), channels=3, image_size=args.size)
    t0 = time.perf_counter()
    judge, split = judge_for_dataset(ds, progress=log, command="examples/judge_agreement.py photos")
    train_s = time.perf_counter() - t0
    ref01 = ds.images[split["held_out"]].astype(np.float32) / 255
    train01 = ds.images[split["train"]].astype(np.float32) / 255
    f_ref = judge.features(ref01)
    real_stats = metrics.gaussian_stats(f_ref)
    rows = {}
    gens = generators(Path(args.run), args.n, train01[:len(ref01)])
    for gname, imgs in gens:
        f = judge.features(imgs)
        fid_v, fid_s = metrics.fid_bootstrap(f, real_stats)
        pr = metrics.precision_recall_knn(f_ref, f)
        dc = metrics.density_coverage(f_ref, f)
        rows[gname] = dict(fid=fid_v, fid_std=fid_s, kid=metrics.kid(f, f_ref), precision=pr["precision"],
                           recall=pr["recall"], density=dc["density"], coverage=dc["coverage"])
        log(f"{gname}: {rows[gname]}")
    _print({"folder": args.folder, "run": args.run, "n": args.n, "judge_task": judge.task,
            "held_out_accuracy": judge.info.get("held_out_accuracy"), "judge_seconds": round(train_s, 1),
            "n_images": len(ds), "scores": rows})


def _print(report):
    print(json.dumps(report, indent=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--out", required=True)
    a.add_argument("--fashion", type=int, default=20000, help="Fashion-MNIST training images written")
    a.add_argument("--mnist-dir", default=None, help="folder of MNIST's train10k files (default: bundled sample)")
    a.add_argument("--photos", default=None, help=".npy (P, H, W, 3) uint8 photographs to crop")
    a.add_argument("--crops", type=int, default=12500)
    a.set_defaults(func=prepare)
    g = sub.add_parser("agree")
    g.add_argument("--data", choices=["mnist", "fashion-mnist"], required=True)
    g.add_argument("--data-dir", default=None)
    g.add_argument("--run", required=True)
    g.add_argument("--folder", required=True)
    g.add_argument("--n", type=int, default=5000)
    g.set_defaults(func=agree)
    h = sub.add_parser("photos")
    h.add_argument("--run", required=True)
    h.add_argument("--folder", required=True)
    h.add_argument("--size", type=int, default=32)
    h.add_argument("--n", type=int, default=5000)
    h.set_defaults(func=photos)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
