"""A stride-1 transposed convolution as one matrix product per frequency (docs/layers/fourier.md).

With stride 1, ConvTranspose2D is a full 2-D convolution of every input map with every
kernel, summed over input channels and cropped by the padding (p, q):

    Y[n, o, i, j] = sum_{c, a, b} X[n, c, a, b] W[c, o, i + p - a, j + q - b]

On a periodic grid of L x M = (H + kh - 1 - p) x (W + kw - 1 - q) points the convolution
theorem turns it into a product per frequency f, and the sum over c into a matrix product:

    Yh[f] = Xh[f] @ Wh[f]        (N, C) @ (C, O), complex, one for each of F frequencies

(L x M is just large enough that the periodic wrap-around lands only on the cropped pixels.)
The transforms are small real matrices (`dft_matrices`): Tx maps a map's H*W pixels to the
real and imaginary parts of its F = L * (M // 2 + 1) frequencies (half the spectrum: the
rest are conjugates, as the maps are real), Tw the same for the kh*kw taps, and Ty is the
inverse transform read only at the Ho x Wo kept pixels. Every step is then a GEMM:

    Xh = Tx X^T      Wh = Tw W^T      Yh[f] = Xh[f] Wh[f]      Y = Yh^T Ty

and backward is their transposes in reverse order; the complex products' transposes are
products with the conjugate (docs/layers/fourier.md):

    dYh = Ty dY^T    dXh[f] = dYh[f] Wh[f]^H    dWh[f] = Xh[f]^H dYh[f]
    dX = dXh^T Tx    dW = dWh^T Tw

For the DCGAN's 256 -> 128, 5x5 layer on 7x7 maps that is 1.1 GFLOP where im2col's product
is 5.1 (F = 45 frequencies against 25 kernel taps times 49 pixels). `worth_it` compares the
two counts; ConvTranspose2D takes this path where it is at least twice as cheap.

A spectrum is stored as (F, 2, rows, cols): [:, 0] real parts, [:, 1] imaginary parts.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend


def grid(x_hw, k_hw, padding):
    """The periodic grid (L, M) and the output size (Ho, Wo) of a stride-1 transposed convolution."""
    (H, W), (kh, kw), (p, q) = x_hw, k_hw, padding
    L, M = H + kh - 1 - p, W + kw - 1 - q
    return (L, M), (L - p, M - q)


def worth_it(x_shape, out_channels, k_hw, padding) -> bool:
    """True when this path needs at most half of im2col's multiply-adds (2 FLOPs each)."""
    N, C, H, W = x_shape
    O, (kh, kw) = out_channels, k_hw
    (L, M), (Ho, Wo) = grid((H, W), k_hw, padding)
    F = L * (M // 2 + 1)
    im2col = 2 * N * H * W * C * O * kh * kw
    fourier = 8 * F * N * C * O + 4 * F * (H * W * N * C + kh * kw * C * O + Ho * Wo * N * O)
    return 2 * fourier <= im2col


def _host_matrices(x_hw, k_hw, padding):
    """Tx (2F, H*W), Tw (2F, kh*kw), Ty (2F, Ho*Wo) in float64; rows ordered (f, real/imaginary)."""
    (L, M), (Ho, Wo) = grid(x_hw, k_hw, padding)
    fh, fw = np.arange(L), np.arange(M // 2 + 1)

    def phases(rows, cols):
        """2 pi (fh r / L + fw c / M) for pixel (r, c): (F, rows*cols)."""
        theta = (fh[:, None, None, None] * rows[None, None, :, None] / L
                 + fw[None, :, None, None] * cols[None, None, None, :] / M)
        return 2 * np.pi * theta.reshape(len(fh) * len(fw), len(rows) * len(cols))

    def interleave(re, im):
        return np.stack([re, im], axis=1).reshape(2 * re.shape[0], re.shape[1])

    (H, W), (kh, kw), (p, q) = x_hw, k_hw, padding
    tx = phases(np.arange(H), np.arange(W))
    tw = phases(np.arange(kh), np.arange(kw))
    Tx, Tw = interleave(np.cos(tx), -np.sin(tx)), interleave(np.cos(tw), -np.sin(tw))
    # inverse at the kept pixels (i + p, j + q); a frequency fw in (0, M/2) stands for itself
    # and its conjugate -fw, so it counts twice
    twice = np.where((fw == 0) | (2 * fw == M), 1.0, 2.0)
    scale = np.tile(twice, L)[:, None] / (L * M)
    ty = phases(np.arange(Ho) + p, np.arange(Wo) + q)
    Ty = interleave(scale * np.cos(ty), -scale * np.sin(ty))
    return Tx, Tw, Ty


def dft_matrices(x_hw, k_hw, padding, like):
    """(Tx, Tw, Ty) in like's dtype and backend; made once per geometry, dtype and backend,
    and shared: read-only."""
    return _matrices(tuple(x_hw), tuple(k_hw), tuple(padding), like.dtype.str, backend.array_module(like))


@functools.lru_cache(maxsize=64)
def _matrices(x_hw, k_hw, padding, dtype, xp):
    return tuple(xp.asarray(T, dtype=dtype) for T in _host_matrices(x_hw, k_hw, padding))


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


def conv_transpose(X, W, padding):
    """Y (N, O, Ho, Wo) of a stride-1 ConvTranspose2D without bias, and what backward needs."""
    N, C, H, Wd = X.shape
    O, kh, kw = W.shape[1:]
    Tx, Tw, Ty = dft_matrices((H, Wd), (kh, kw), padding, X)
    F = Tx.shape[0] // 2
    _, (Ho, Wo) = grid((H, Wd), (kh, kw), padding)
    Xh = (Tx @ X.reshape(N * C, H * Wd).T).reshape(F, 2, N, C)             # every input map's spectrum
    Wh = (Tw @ W.reshape(C * O, kh * kw).T).reshape(F, 2, C, O)            # every kernel's
    Yh = complex_matmul(Xh, Wh)                                            # (F, 2, N, O)
    Y = Yh.reshape(2 * F, N * O).T @ Ty                                    # (N*O, Ho*Wo): NCHW rows
    return Y.reshape(N, O, Ho, Wo), (Xh, Wh, (Tx, Tw, Ty), W.shape, (H, Wd))


def conv_transpose_grads(dY, saved, weight=True, inputs=True):
    """(dX, dW) of conv_transpose from what it saved; either is None when not asked for."""
    Xh, Wh, (Tx, Tw, Ty), w_shape, (H, Wd) = saved
    F, _, N, C = Xh.shape
    O = w_shape[1]
    dYh = (Ty @ dY.reshape(N * O, -1).T).reshape(F, 2, N, O)               # the inverse DFT's transpose
    dX = dW = None
    if inputs:
        dXh = complex_matmul(dYh, Wh, conj="b")                            # dYh[f] Wh[f]^H  (F, 2, N, C)
        dX = (dXh.reshape(2 * F, N * C).T @ Tx).reshape(N, C, H, Wd)
    if weight:
        dWh = complex_matmul(Xh, dYh, conj="a")                            # Xh[f]^H dYh[f]  (F, 2, C, O)
        dW = (dWh.reshape(2 * F, C * O).T @ Tw).reshape(w_shape)
    return dX, dW
