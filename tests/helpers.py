"""Helpers shared by the test files: backend-neutral array conversion and hypothesis
strategies for valid convolution geometries."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from scratchgan import backend, cli


def A(a, dtype=None):
    """Host array -> selected backend."""
    return backend.asarray(np.asarray(a), dtype=dtype)


def H(a):
    """Any array -> host NumPy array."""
    return backend.to_numpy(a)


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of one in-process command."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_error_line(err, *needles) -> str:
    """Exactly one line on stderr that matters: it starts with "error:" and names what went wrong
    (each of ``needles``). Returns that line."""
    lines = [line for line in err.splitlines() if line and not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one 'error:' line, got {err!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "Traceback" not in err
    return lines[0]


def rng(seed=0):
    return np.random.default_rng(seed)


@st.composite
def conv_geometry(draw):
    """A valid Conv2D geometry: output at least 1x1."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 4))
    W = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 4))
    return dict(kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), H=H, W=W)


@st.composite
def convT_geometry(draw, max_stride=3, max_kernel=4):
    """A valid ConvTranspose2D geometry: output_padding < stride, output at least 1x1."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    oh, ow = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))

    def smallest(k, s, p, op):
        h = 1
        while (h - 1) * s - 2 * p + k + op < 1:
            h += 1
        return h

    h0, w0 = smallest(kh, sh, ph, oh), smallest(kw, sw, pw, ow)
    H, W = draw(st.integers(h0, h0 + 3)), draw(st.integers(w0, w0 + 3))
    return dict(kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), output_padding=(oh, ow), H=H, W=W)
