"""Regenerate the figures of docs/ (run from anywhere):

    python docs/figures/make_figures.py                 # writes next to this script
    python docs/figures/make_figures.py --out /tmp/figs

g_loss_gradients.png: the two generator losses and their gradients with respect to the
discriminator's logit l, against D(G(z)) = sigma(l) (docs/gan-objective.md).
"""
import argparse
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def g_loss_gradients(path):
    d = np.linspace(1e-3, 1 - 1e-3, 999)          # D(G(z)) = sigma(l)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))

    ax1.plot(d, np.log(1 - d), lw=2, label=r"minimax: $\log(1 - D(G(z)))$")
    ax1.plot(d, -np.log(d), lw=2, label=r"non-saturating: $-\log D(G(z))$")
    ax1.set_xlabel(r"$D(G(z))$")
    ax1.set_ylabel("generator loss (minimised)")
    ax1.set_ylim(-5, 5)
    ax1.set_title("the two generator losses")

    # d/dl of each loss, as a function of D = sigma(l): -sigma(l) = -D and sigma(l) - 1 = D - 1.
    ax2.plot(d, -d, lw=2, label=r"minimax: $-\sigma(l) = -D$")
    ax2.plot(d, d - 1, lw=2, label=r"non-saturating: $\sigma(l) - 1 = D - 1$")
    ax2.axvspan(0, 0.1, color="0.85", zorder=0)
    ax2.text(0.012, -0.52, "early training:\nD rejects the fakes", fontsize=8)
    ax2.set_xlabel(r"$D(G(z)) = \sigma(l)$")
    ax2.set_ylabel(r"$\partial\,\mathrm{loss} / \partial l$")
    ax2.set_ylim(-1.05, 0.05)
    ax2.set_title("their gradients w.r.t. the logit")

    for ax in (ax1, ax2):
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax2 else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent), help="folder to write the PNGs to")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {g_loss_gradients(out / 'g_loss_gradients.png')}")


if __name__ == "__main__":
    main()
