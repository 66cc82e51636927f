"""A transposed convolution as one complex matrix product per frequency (docs/layers/fourier.md).

ConvTranspose2D scatters each input pixel's kh x kw patch of weights into the output at
stride s and crops the padding (p, q):

    Y[n, o, y, x] = sum over c, i, j, u, v with s i + u = y + p, s j + v = x + q of X[n, c, i, j] W[c, o, u, v]

Phases. An output row with y + p = s Q + a receives only the taps u = s du + a, from the
input rows i = Q - du. So each of the s*s output phases (a, b) (every s-th row from the first
that a reaches, every s-th column likewise) is a stride-1 full convolution of X with the
sub-kernel W[:, :, a::s, b::s], cropped. Stride 1 has one phase: the whole kernel.

Frequencies. On a periodic grid of L x M points, just large enough that every phase's
wrap-around lands only on positions it crops (`phases`), the convolution theorem turns each
phase into a product per frequency f, and the sum over c into a matrix product. The phases
share X's spectrum and their kernels' spectra are stacked along the output channels, so the
layer is one complex product per frequency, F of them:

    YhT[f] = WhT[f] Xh[f]^T        (P*O, C) @ (C, N), P = s*s phases

The transforms are small real matrices (`dft_matrices`, half the spectrum, rows ordered
(frequency, real/imaginary)): Tx maps a map's H*W pixels to its F frequencies, Tw every
phase's taps (zero for the taps that are not the phase's), and Ty[k] is phase k's inverse
transform read only at its kept pixels. Every step is a GEMM:

    Xh = Tx X^T     WhT = Tw W^T     YhT[f] = WhT[f] Xh[f]^T     Y_k = YhT_k^T Ty[k]

(With one phase the product is taken the other way round, Yh[f] = Xh[f] Wh[f], (N, C) @ (C, O),
which leaves Y in NCHW order.) Backward is the transposes in reverse order; the complex
products' transposes are products with the conjugate (docs/layers/fourier.md):

    dYhT_k = Ty[k] dY_k^T     dXh[f] = dYhT[f]^T conj(WhT[f])     dWhT[f] = dYhT[f] conj(Xh[f])
    dX = dXh^T Tx             dW = dWhT^T Tw

For the DCGAN's 256 -> 128, 5x5 stride-1 layer on 7x7 maps that is 1.1 GFLOP at batch 64
where im2col's product is 5.1; for its 128 -> 64 stride-2 layer (7 -> 14), 1.0 against 1.3,
and none of col2im's adds. `flops` counts both; ConvTranspose2D's "auto" compares them.

A spectrum is stored as (F, 2, rows, cols): [:, 0] real parts, [:, 1] imaginary parts.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend


def phases(n_in, k, s, p, n_out):
    """One axis: per phase a = 0 .. s-1 the tuple (taps, first, count, start): the number of
    kernel taps a, a + s, ...; the first output index the phase reaches and how many it has
    (every s-th); and the grid position of the first. Also the grid size: the smallest
    period on which every phase's wrap-around lands only on positions it crops."""
    rows = []
    for a in range(s):
        first = (a - p) % s                    # output y is phase a when y + p = a (mod s)
        rows.append((len(range(a, k, s)), first, len(range(first, n_out, s)), (first + p) // s))
    # a phase's full convolution runs over [0, n_in + taps - 2] and keeps [start, start + count)
    period = max(max(n_in + taps - 1 - start, start + count) for taps, _, count, start in rows)
    return rows, period


def flops(x_shape, out_channels, k_hw, stride, padding, out_hw) -> tuple[int, int]:
    """(Fourier, im2col) FLOPs of the forward, 2 per multiply-add (the backward's are twice each)."""
    N, C, H, W = x_shape
    O, (kh, kw), (sh, sw), (Ho, Wo) = out_channels, k_hw, stride, out_hw
    (_, L), (_, M) = phases(H, kh, sh, padding[0], Ho), phases(W, kw, sw, padding[1], Wo)
    F, P = L * (M // 2 + 1), sh * sw
    im2col = 2 * N * H * W * C * O * kh * kw
    fourier = 8 * F * N * C * P * O + 4 * F * (H * W * N * C + P * kh * kw * C * O + Ho * Wo * N * O)
    return fourier, im2col


def _host_matrices(x_hw, k_hw, stride, padding, out_hw):
    """Tx (2F, H*W), Tw (2F*P, kh*kw) with rows (f, real/imaginary, phase), and per phase k
    Ty[k] (2F, count_h*count_w) and the phase's first output (row, column); float64."""
    (H, W), (kh, kw), (sh, sw), (p, q), (Ho, Wo) = x_hw, k_hw, stride, padding, out_hw
    rows, L = phases(H, kh, sh, p, Ho)
    cols, M = phases(W, kw, sw, q, Wo)
    fh, fw = np.arange(L), np.arange(M // 2 + 1)
    F = len(fh) * len(fw)

    def spectrum(r, c, scale=1.0):
        """(cos, -sin) of 2 pi (fh r / L + fw c / M) for every grid point (r, c): (F, 2, len(r)*len(c))."""
        theta = 2 * np.pi * (fh[:, None, None, None] * np.asarray(r)[None, None, :, None] / L
                             + fw[None, :, None, None] * np.asarray(c)[None, None, None, :] / M)
        theta = theta.reshape(F, len(r) * len(c))
        T = np.stack([np.cos(theta), -np.sin(theta)], axis=1)
        # cos and sin of multiples of pi/2 are 0 up to rounding (1e-16): make them exactly 0, or
        # products with them make denormal floats, which the CPU multiplies up to 100x slower
        T[np.abs(T) < 1e-12] = 0.0
        return T * (scale[:, None] if np.ndim(scale) else scale)

    Tx = spectrum(np.arange(H), np.arange(W)).reshape(2 * F, H * W)
    Tw = np.zeros((F, 2, sh, sw, kh, kw))
    # the inverse at kept positions: a frequency fw in (0, M/2) stands for itself and its
    # conjugate -fw, so it counts twice
    scale = np.tile(np.where((fw == 0) | (2 * fw == M), 1.0, 2.0), L)[:, None] / (L * M)
    Ty, firsts = [], []
    for a, (taps_h, first_h, count_h, start_h) in enumerate(rows):
        for b, (taps_w, first_w, count_w, start_w) in enumerate(cols):
            Tw[:, :, a, b, a::sh, b::sw] = spectrum(np.arange(taps_h), np.arange(taps_w)).reshape(
                F, 2, taps_h, taps_w)
            Ty.append(spectrum(start_h + np.arange(count_h), start_w + np.arange(count_w), scale).reshape(
                2 * F, count_h * count_w))
            firsts.append((first_h, first_w))
    return Tx, Tw.reshape(2 * F * sh * sw, kh * kw), Ty, firsts


def dft_matrices(x_hw, k_hw, stride, padding, out_hw, like):
    """(Tx, Tw, [Ty per phase], [first output (row, column) per phase]) in like's dtype and
    backend; made once per geometry, dtype and backend, and shared: read-only."""
    key = tuple(tuple(int(v) for v in pair) for pair in (x_hw, k_hw, stride, padding, out_hw))
    return _matrices(*key, like.dtype.str, backend.array_module(like))


@functools.lru_cache(maxsize=64)
def _matrices(x_hw, k_hw, stride, padding, out_hw, dtype, xp):
    Tx, Tw, Ty, firsts = _host_matrices(x_hw, k_hw, stride, padding, out_hw)
    as_ = functools.partial(xp.asarray, dtype=dtype)
    return as_(Tx), as_(Tw), [as_(T) for T in Ty], firsts


def complex_matmul(A, B, conj=None):
    """Batched products of spectra, one per frequency: (F, 2, n, k) @ (F, 2, k, m) -> (F, 2, n, m).

    conj="a": A^H @ B with A given as (F, 2, k, n);  conj="b": A @ B^H with B given as (F, 2, m, k).
    The real and imaginary parts of one operand are stacked into one matrix, so that each
    complex product is two real GEMMs per frequency instead of four.
    """
    xp = backend.array_module(A, B)
    F = A.shape[0]
    if conj == "a":
        # (Ar^T - i Ai^T)(Br + i Bi): the sum over k runs over [Br; Bi] stacked
        k, n, m = A.shape[2], A.shape[3], B.shape[3]
        out = xp.empty((F, 2, n, m), dtype=A.dtype)
        A2 = A.reshape(F, 2 * k, n).swapaxes(1, 2)                          # [Ar^T, Ai^T]  (F, n, 2k)
        xp.matmul(A2, B.reshape(F, 2 * k, m), out=out[:, 0])                # Ar^T Br + Ai^T Bi
        xp.matmul(A2, xp.concatenate([B[:, 1], -B[:, 0]], axis=1), out=out[:, 1])   # Ar^T Bi - Ai^T Br
        return out
    n = A.shape[2]
    Br, Bi = (B[:, 0].swapaxes(1, 2), B[:, 1].swapaxes(1, 2)) if conj == "b" else (B[:, 0], B[:, 1])
    out = xp.empty((F, 2, n, Br.shape[2]), dtype=A.dtype)
    A2 = A.reshape(F, 2 * n, A.shape[3])                                    # [Ar; Ai]
    P, Q = A2 @ Br, A2 @ Bi                                                 # [Ar Br; Ai Br], [Ar Bi; Ai Bi]
    if conj == "b":                                                         # (Ar + i Ai)(Br^T - i Bi^T)
        xp.add(P[:, :n], Q[:, n:], out=out[:, 0])
        xp.subtract(P[:, n:], Q[:, :n], out=out[:, 1])
    else:                                                                   # (Ar + i Ai)(Br + i Bi)
        xp.subtract(P[:, :n], Q[:, n:], out=out[:, 0])
        xp.add(Q[:, :n], P[:, n:], out=out[:, 1])
    return out


def conv_transpose(X, W, stride, padding, out_hw):
    """Y (N, O, Ho, Wo) of a ConvTranspose2D without bias, and what backward needs."""
    N, C, H, Wd = X.shape
    O, kh, kw = W.shape[1:]
    geometry = ((H, Wd), (kh, kw), tuple(stride), tuple(padding), tuple(out_hw))
    Tx, Tw, Ty, firsts = dft_matrices(*geometry, like=X)
    F, P = Tx.shape[0] // 2, len(Ty)
    Xh = (Tx @ X.reshape(N * C, H * Wd).T).reshape(F, 2, N, C)             # every input map's spectrum
    if P == 1:   # one phase: Yh[f] = Xh[f] Wh[f] comes out with rows (n, o), Y in NCHW at once
        Wh = (Tw @ W.reshape(C * O, kh * kw).T).reshape(F, 2, C, O)
        Yh = complex_matmul(Xh, Wh)                                        # (F, 2, N, O)
        Y = (Yh.reshape(2 * F, N * O).T @ Ty[0]).reshape((N, O) + geometry[4])
        return Y, (Xh, Wh, geometry)
    # phases: their kernels stacked as rows of WhT, so that each phase is a block of YhT's rows.
    # The cache keeps Wt, a copy of W, not WhT (P times larger): backward rebuilds WhT with one GEMM
    Wt = W.transpose(1, 0, 2, 3).reshape(O * C, kh * kw)                   # a copy: what backward differentiates
    WhT = (Tw @ Wt.T).reshape(F, 2, P * O, C)
    YhT = complex_matmul(WhT, Xh.swapaxes(2, 3))                           # (F, 2, P*O, N)
    Y = backend.array_module(X).empty((N, O) + geometry[4], dtype=X.dtype)
    for k, (first, Ty_k) in enumerate(zip(firsts, Ty)):
        Y_k = Y[:, :, first[0]::stride[0], first[1]::stride[1]]            # phase k's pixels, (N, O, h, w)
        rows = YhT[:, :, k * O:(k + 1) * O].reshape(2 * F, O * N).T @ Ty_k  # (O*N, h*w): rows (o, n)
        Y_k[...] = rows.reshape((O, N) + Y_k.shape[2:]).transpose(1, 0, 2, 3)
    return Y, (Xh, Wt, geometry)


def conv_transpose_grads(dY, saved, weight=True, inputs=True):
    """(dX, dW) of conv_transpose from what it saved; either is None when not asked for."""
    Xh, kernels, geometry = saved               # kernels: Wh with one phase, Wt with phases
    (H, Wd), (kh, kw), stride, _, _ = geometry
    Tx, Tw, Ty, firsts = dft_matrices(*geometry, like=dY)
    xp = backend.array_module(dY)
    F, _, N, C = Xh.shape
    P = len(Ty)
    if P == 1:
        Wh = kernels
        O = Wh.shape[3]
        dYh = (Ty[0] @ dY.reshape(N * O, -1).T).reshape(F, 2, N, O)      # the inverse DFT's transpose
        dX = dW = None
        if inputs:
            dXh = complex_matmul(dYh, Wh, conj="b")                        # dYh[f] Wh[f]^H  (F, 2, N, C)
            dX = (dXh.reshape(2 * F, N * C).T @ Tx).reshape(N, C, H, Wd)
        if weight:
            dWh = complex_matmul(Xh, dYh, conj="a")                        # Xh[f]^H dYh[f]  (F, 2, C, O)
            dW = (dWh.reshape(2 * F, C * O).T @ Tw).reshape(C, O, kh, kw)
        return dX, dW
    Wt = kernels
    O = Wt.shape[0] // C
    dYhT = xp.empty((F, 2, P * O, N), dtype=dY.dtype)
    for k, (first, Ty_k) in enumerate(zip(firsts, Ty)):                    # the inverse DFTs' transposes
        dY_k = dY[:, :, first[0]::stride[0], first[1]::stride[1]]
        rows = dY_k.transpose(1, 0, 2, 3).reshape(O * N, dY_k.shape[2] * dY_k.shape[3])   # (O*N, h*w)
        dYhT[:, :, k * O:(k + 1) * O] = (Ty_k @ rows.T).reshape(F, 2, O, N)
    dX = dW = None
    if inputs:   # dXh[f] = dYhT[f]^T conj(WhT[f]), the sums over P*O stacked real over imaginary
        dXh = xp.empty((F, 2, N, C), dtype=dY.dtype)
        W_stacked = (Tw @ Wt.T).reshape(F, 2 * P * O, C)                                 # WhT again: [Wr; Wi]
        xp.matmul(dYhT.reshape(F, 2 * P * O, N).swapaxes(1, 2), W_stacked, out=dXh[:, 0])  # dYr^T Wr + dYi^T Wi
        xp.matmul(xp.concatenate([dYhT[:, 1], -dYhT[:, 0]], axis=1).swapaxes(1, 2), W_stacked,
                  out=dXh[:, 1])                                                         # dYi^T Wr - dYr^T Wi
        dX = (dXh.reshape(2 * F, N * C).T @ Tx).reshape(N, C, H, Wd)
        del W_stacked, dXh
    if weight:   # dWhT[f] = dYhT[f] conj(Xh[f]), the sums over N stacked real over imaginary
        dWhT = xp.empty((F, 2, P * O, C), dtype=dY.dtype)
        dY_stacked = dYhT.transpose(0, 2, 1, 3).reshape(F, P * O, 2 * N)                  # [dYr, dYi]
        xp.matmul(dY_stacked, Xh.reshape(F, 2 * N, C), out=dWhT[:, 0])                     # dYr Xr + dYi Xi
        xp.matmul(dY_stacked, xp.concatenate([-Xh[:, 1], Xh[:, 0]], axis=1), out=dWhT[:, 1])   # dYi Xr - dYr Xi
        dW = (dWhT.reshape(2 * F * P, O * C).T @ Tw).reshape(O, C, kh, kw).transpose(1, 0, 2, 3)
    return dX, dW
