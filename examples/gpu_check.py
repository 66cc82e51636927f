"""The GPU check, ready for the day a GPU is lent: in under 8 minutes on one GPU it runs

1. the tests of the CuPy path (``pytest -m cupy``: every layer's CuPy == NumPy, double backward,
   gradcheck in float64 on the device, the transfer counts, every command under
   SCRATCHGAN_BACKEND=cupy, a 2-rank mpiexec run);
2. CuPy == NumPy for one step of each default model (mlp, cgan, dcgan recipes): G's and D's
   forward, backward and every parameter gradient, to float32 rounding;
3. a short training of each default model on CuPy (through ``scratchgan train``);
4. ``scratchgan bench`` at batch 64 and 256 on both backends;

and prints one table (Markdown, for docs/performance.md). Exit status 0 when every check passed.

    pip install -e ".[test,mpi]" cupy-cuda12x     # the CuPy wheel matching the machine's CUDA
    python examples/gpu_check.py                  # on the GPU machine (from the repository root)
    python examples/gpu_check.py --tiny           # every part, small (seconds to a minute)
    python examples/gpu_check.py --tiny --standin # no GPU: on the CuPy stand-in (tests/cupy_standin)

CI runs ``--tiny`` on the stand-in (tests/test_cupy_path.py), so the script cannot rot. On the
stand-in the CuPy column times NumPy behind a wrapper: it says nothing about a GPU.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "cupy_standin"
MODELS = ("mlp", "cgan", "dcgan")
FULL = dict(pytest=["-m", "cupy", "-k", "not gpu_check", "tests"], pytest_timeout=330, equality_batch=64, train_steps=300,
            train_timeout=90, bench_batches="64,256", bench_repeats=3, bench_timeout=150)
TINY = dict(pytest=["-m", "cupy", "tests/test_backend.py", "-k", "dense or penalty"], pytest_timeout=300,
            equality_batch=8, train_steps=3, train_timeout=300, bench_batches="8,16", bench_repeats=1,
            bench_timeout=300)
RTOL = 1e-4        # float32 rounding of one step of a whole network (relative to the array's norm)


def run(cmd, timeout, env):
    """(return code, stdout, stderr, seconds) of a child process; rc None when it timed out."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        return done.returncode, done.stdout, done.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        return None, exc.stdout or "", exc.stderr or "", time.perf_counter() - t0


def part_tests(cfg, env, rows):
    rc, out, err, sec = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *cfg["pytest"]],
                            cfg["pytest_timeout"], env)
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", out, re.M)
    where = re.findall(r"^CuPy tests ran on (.*)$", out, re.M)
    text = summary[-1] if summary else ("timed out" if rc is None else (out + err).strip().splitlines()[-1:])
    ok = rc == 0
    rows.append(["tests: pytest " + " ".join(cfg["pytest"]), "", "", "", f"{text} ({sec:.0f} s)", "",
                 "ok" if ok else "FAIL"])
    if not ok:
        print((out + err)[-3000:], file=sys.stderr)
    return ok, where[-1] if where else "?"


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def part_equality(cfg, rows):
    """One G and D step of each default model on both backends."""
    import cupy
    from scratchgan import backend, cli, models
    ok_all = True
    for kind in MODELS:
        recipe = cli.RECIPES[kind]
        backend.use("numpy")
        gan = models.build(kind, **recipe["model_args"], **recipe.get("channels", {}).get(28, {}))
        gan.D.eval()                        # no dropout: its masks come from each backend's own stream
        G_gpu, D_gpu = gan.G.copy().to("cupy"), gan.D.copy().to("cupy")
        n = cfg["equality_batch"]
        rng = np.random.default_rng(0)
        z = rng.standard_normal((n, gan.latent_dim)).astype(np.float32)
        y = rng.integers(0, 10, n) if gan.conditional else None
        dout = np.random.default_rng(1).standard_normal((n, 1)).astype(np.float32)   # dL/dD(G(z))
        t0, results = time.perf_counter(), []
        for G, D, move in ((gan.G, gan.D, np.asarray), (G_gpu, D_gpu, cupy.asarray)):
            yy = None if y is None else move(y)
            fake, g_cache = G.forward(gan.g_input(move(z), yy))
            out, d_cache = D.forward(gan.d_input(fake, yy))
            d_in = D.backward(move(dout), d_cache)
            G.backward(gan.d_input_grad_to_images(d_in, fake.shape), g_cache)
            results.append({"G(z)": backend.to_numpy(fake), "D(G(z))": backend.to_numpy(out),
                            **{f"G.{k} grad": backend.to_numpy(g) for k, _, g in G.named_parameters()},
                            **{f"D.{k} grad": backend.to_numpy(g) for k, _, g in D.named_parameters()}})
        cpu, gpu = results
        worst = max((_relative(gpu[k], cpu[k]), k) for k in cpu)
        ok = worst[0] <= RTOL and cpu.keys() == gpu.keys()
        ok_all &= ok
        rows.append([f"CuPy == NumPy: one step, {len(cpu)} arrays", kind, n, "", f"worst {worst[0]:.1e} ({worst[1]})",
                     f"{time.perf_counter() - t0:.1f} s", "ok" if ok else "FAIL"])
    backend.use("numpy")
    return ok_all


def part_training(cfg, env, rows, tmp):
    ok_all = True
    for kind in MODELS:
        out = tmp / f"train-{kind}"
        steps = cfg["train_steps"]
        argv = [sys.executable, "-m", "scratchgan", "train", "--model", kind, "--steps", str(steps), "--backend",
                "cupy", "--dataset", "mnist-bundled", "--quiet", "--out", str(out), "--log-every",
                str(max(1, steps // 3)), "--sample-every", str(steps)]
        if cfg is TINY:
            argv += ["--batch-size", "8"]
        rc, _, err, sec = run(argv, cfg["train_timeout"], env)
        last = {}
        if (out / "metrics.csv").exists():
            with open(out / "metrics.csv", newline="") as f:
                last = (list(csv.DictReader(f)) or [{}])[-1]
        ok = rc == 0 and last.get("step") == str(steps)
        ok_all &= ok
        note = (f"{steps} steps in {sec:.1f} s, {float(last['samples_per_s']):.0f} samples/s, "
                f"d_loss {float(last['d_loss']):.3f} g_loss {float(last['g_loss']):.3f}") if ok else (
                "timed out" if rc is None else err.strip().splitlines()[-1:])
        rows.append(["train (recipe) on CuPy", kind, "recipe" if cfg is FULL else 8, "", note, "", "ok" if ok else "FAIL"])
        if not ok:
            print(err[-3000:], file=sys.stderr)
    return ok_all


def part_bench(cfg, env, rows):
    results, ok_all = {}, True
    for name in ("numpy", "cupy"):
        rc, out, err, sec = run([sys.executable, "-m", "scratchgan", "bench", "--models", ",".join(MODELS),
                                 "--batch-sizes", cfg["bench_batches"], "--repeats", str(cfg["bench_repeats"]),
                                 "--json", "--backend", name], cfg["bench_timeout"], env)
        ok = rc == 0
        ok_all &= ok
        if ok:
            results[name] = json.loads(out)
        else:
            print(err[-3000:], file=sys.stderr)
            rows.append([f"bench on {name}", "", "", "", "timed out" if rc is None else "failed", "", "FAIL"])
    if len(results) == 2:
        rows.append(["bench: GEMM 2048^3, GFLOP/s", "", "", f"{results['numpy']['gemm_gflops']:.0f}",
                     f"{results['cupy']['gemm_gflops']:.0f}", "", "ok"])
        for a, b in zip(results["numpy"]["models"], results["cupy"]["models"]):
            rows.append(["bench: training step, ms", a["model"], a["batch"], f"{a['ms_median']:.1f}",
                         f"{b['ms_median']:.1f}", f"{a['ms_median'] / b['ms_median']:.1f}x", "ok"])
    return ok_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="every part, small (CI runs this on the stand-in)")
    p.add_argument("--standin", action="store_true", help="use the CuPy stand-in in tests/cupy_standin (no GPU)")
    args = p.parse_args(argv)
    cfg = TINY if args.tiny else FULL
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("SCRATCHGAN_BACKEND", None)
    if args.standin:
        sys.path.insert(0, str(STANDIN))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STANDIN), env.get("PYTHONPATH")]))
        env["SCRATCHGAN_TEST_CUPY"] = "standin"
    try:
        import cupy
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:     # ImportError, or no driver / device
        print(f"gpu_check: CuPy is not usable here ({type(exc).__name__}: {exc}); install the cupy-cudaXXx wheel "
              f"matching the CUDA driver, or try --standin", file=sys.stderr)
        return 2
    if getattr(cupy, "STANDIN", False):
        device = "the CuPy stand-in on NumPy (no GPU: the CuPy column says nothing about a GPU)"
    else:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        device = f"{name} ({devices} visible), CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}"
    print(f"gpu_check{' --tiny' if args.tiny else ''}: {device}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        ok_tests, where = part_tests(cfg, env, rows)
        ok = [ok_tests, part_equality(cfg, rows), part_training(cfg, env, rows, Path(tmp)), part_bench(cfg, env, rows)]
    header = ["part", "model", "batch", "NumPy", "CuPy", "NumPy/CuPy", "check"]
    table = [header, ["---"] * len(header)] + [[str(c) for c in r] for r in rows]
    print("\n".join("| " + " | ".join(r) + " |" for r in table))
    print(f"\nthe tests ran on {where}; {time.perf_counter() - t0:.0f} s in all; "
          + ("all checks passed" if all(ok) else "SOME CHECKS FAILED"))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
