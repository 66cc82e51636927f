"""Conv2D and ConvTranspose2D as one matrix product each way over im2col columns.

Conv2D is a cross-correlation (as torch.nn.Conv2d); inputs and outputs are NCHW:

    Y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * Xp[n, c, s*i + u, s*j + v]

With the columns  cols[(n,i,j), (u,v,c)] = Xp[n, c, s*i+u, s*j+v]  (im2col) and the
weight as a matrix  Wm[(u,v,c), o] = W[o, c, u, v]  this is one GEMM,  Y2 = cols @ Wm,
and backward is two more:

    dWm = cols^T @ dY2        dcols = dY2 @ Wm^T        dX = col2im(dcols)

(col2im of a product is computed one kernel offset's block of columns at a time, so the
large dcols matrix is never stored whole: see col2im. Where it pays, the transposed
convolutions, ConvTranspose2D's forward and backward and Conv2D's input gradient, go by the
Fourier path instead: layers/fourier.py, FOURIER_SHARE.) Conv2D's double backward
(docs/double-backward.md), given ddX = dP/d(dX), is its forward and weight gradient again:

    ddY2 = im2col(ddX) @ Wm  (no bias)        dWm += im2col(ddX)^T @ dY2

ConvTranspose2D is the adjoint of Conv2D (docs/layers/conv_transpose2d.md): its forward
is Conv2D's input gradient (GEMM then col2im), its backward is Conv2D's forward (im2col
then GEMM). Its weight is (in, out, kh, kw) as in torch.nn.ConvTranspose2d.

Inside, the columns are laid out channels-last (n, h, w, c): every window copy in im2col
and every strided add in col2im then moves runs of C contiguous values instead of runs of
a few pixels, which makes both about as cheap as the matrix products need them to be
(docs/performance.md). Only the layer boundaries are NCHW.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..init import initialise
from . import fourier
from .base import Module, ShapeError, check_int, is_int


def _pair(v, name, who, minimum):
    """An int or a pair of ints, each >= minimum, as a pair; ValueError naming who otherwise."""
    pair = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(pair) != 2 or not all(is_int(a, minimum) for a in pair):
        raise ValueError(f"{who}: {name} must be an integer >= {minimum} or a pair of them, got {v!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(X, kernel, stride, padding):
    """Columns of an NCHW array for a convolution: (N*Ho*Wo, kh*kw*C), plus (Ho, Wo).

    One copy makes the padded channels-last array; a strided view then enumerates every
    window without copying, and the reshape copies the windows into the GEMM operand.
    """
    xp = backend.array_module(X)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = X.shape
    Xp = xp.pad(X.transpose(0, 2, 3, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0)))  # (N, Hp, Wp, C), contiguous
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    sN, sH, sW, sC = Xp.strides
    windows = backend.as_strided(Xp, (N, Ho, Wo, kh, kw, C), (sN, sh * sH, sw * sW, sH, sW, sC))
    return windows.reshape(N * Ho * Wo, kh * kw * C), (Ho, Wo)


FEW_CHANNELS = 16   # col2im(cols @ B) with fewer channels makes the product whole: (rows, C) GEMMs of a few columns are slow

# A transposed convolution (ConvTranspose2D's forward, Conv2D's input gradient) takes the Fourier
# path where it needs at most this share of im2col's FLOPs: its many small per-frequency products
# run below the rate of im2col's large ones, its backward more so than its forward. Each direction
# chooses for itself, as cuDNN's algorithms do: the DCGAN's 128 -> 64 stride-2 layers (0.77 of
# im2col's FLOPs) take it forward, and ConvTranspose2D's backward stays on im2col for them.
FOURIER_SHARE = {"forward": 0.8, "backward": 0.5}


def col2im(cols, x_shape, kernel, stride, padding, B=None):
    """The adjoint of im2col: scatter-add (N*Ho*Wo, kh*kw*C) columns into an NCHW array.

    Windows overlap when the stride is smaller than the kernel, so values must be summed.
    The loop runs over the kh*kw kernel offsets only (25 for a 5x5 kernel, never over batch
    items or pixels): each step is one vectorised add over the whole batch.

    The sums are made in phase-major layout: padded row s*q + a of an axis with stride s is
    row q of phase a, so the pixels that offset u = s*du + a reaches are the contiguous rows
    du .. du + Ho - 1 of phase a, and every add moves runs of Wo*C values, not of C.

    With B (K, kh*kw*C) given, it returns col2im(cols @ B) without forming that product:
    col2im adds each (u, v) block of columns into its own window, so by linearity each
    block cols @ B[:, (u, v)] (N*Ho*Wo, C) can be made by its own GEMM and added while it
    is still in cache. Same FLOPs, 1/(kh*kw) of the memory, and faster for the DCGAN's
    layers than one big GEMM followed by adds out of main memory. Below FEW_CHANNELS
    channels such GEMMs are too narrow to run well, and the product is made whole.
    """
    xp = backend.array_module(cols)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = x_shape
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    per_offset = B is not None and C >= FEW_CHANNELS
    if per_offset:
        B_uv = B.reshape(B.shape[0], kh, kw, C)                    # a view: B_uv[:, u, v] is (K, C)
        block = xp.empty((N * Ho * Wo, C), dtype=cols.dtype)
    else:
        blocks = (cols if B is None else cols @ B).reshape(N, Ho, Wo, kh, kw, C)
    # phases[a, b, n, q, r, c] = dXp[n, sh*q + a, sw*r + b, c], dXp the padded channels-last gradient
    phases = xp.zeros((sh, sw, N, -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw), C), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            if per_offset:
                xp.matmul(cols, B_uv[:, u, v, :], out=block)
            window = block.reshape(N, Ho, Wo, C) if per_offset else blocks[:, :, :, u, v, :]
            phases[u % sh, v % sw, :, u // sh:u // sh + Ho, v // sw:v // sw + Wo, :] += window
    dX = xp.empty((N, C, H, W), dtype=cols.dtype)
    for a in range(sh):          # unpad and interleave: output row y is padded row y + ph
        y0 = (a - ph) % sh       # the first output row in phase a
        for b in range(sw):
            x0 = (b - pw) % sw
            rows = dX[:, :, y0::sh, x0::sw]
            q0, r0 = (y0 + ph) // sh, (x0 + pw) // sw
            rows[...] = phases[a, b, :, q0:q0 + rows.shape[2], r0:r0 + rows.shape[3], :].transpose(0, 3, 1, 2)
    return dX


# Few channels on large maps: the column layouts above move runs of C values (3 for RGB), and a
# product with C of its columns leaves its adds to rows of 3. There the columns are laid out
# channel-major instead, one (C*kh*kw, Ho*Wo) matrix per image ("planes"): each copy and add moves
# runs of a map row, and a batched product maps NCHW to NCHW with no transposing copy. For a 3x64x64
# DCGAN at batch 64 (1 thread): G's last layer forward 29 -> 6 ms, D's first layer input gradient
# 43 -> 11 ms. It pays down to 1x28x28 at batch 64 too (about 1.1 -> 0.7 ms), but it rounds
# differently, so it starts at PLANES_MIN_VALUES values in the few-channel array: above every training
# batch and sample grid of the recorded runs (tests/test_run_checksums.py: at most 64 images of 3x32x32,
# 196,608 values), which keep their bits. Lowering it is a decision to re-record them.
# Eval-mode sampling (Module.infer) takes planes from INFER_PLANES_MIN_VALUES. docs/performance.md, "Image size".
PLANES_MIN_VALUES = 1 << 18
INFER_PLANES_MIN_VALUES = 1 << 15
PLANES_BLOCK_BYTES = 2 << 20   # col2im_planes makes its products a few images at a time, about this large


def use_planes(few_shape, minimum=None) -> bool:
    """Whether the columns of an (N, C, H, W) array (Conv2D's input, ConvTranspose2D's output) are
    made channel-major (im2col_planes, col2im_planes): C < FEW_CHANNELS and at least ``minimum``
    values (default PLANES_MIN_VALUES)."""
    minimum = PLANES_MIN_VALUES if minimum is None else minimum
    return few_shape[1] < FEW_CHANNELS and int(np.prod(few_shape)) >= minimum


def im2col_planes(X, kernel, stride, padding):
    """Channel-major columns of an NCHW array: (N, C*kh*kw, Ho*Wo) with rows (c, u, v),
    cols[n, (c, u, v), (i, j)] = Xp[n, c, s*i + u, s*j + v]; one padded copy, then one strided
    copy per kernel offset (u, v) over the whole batch, in runs of Wo."""
    xp = backend.array_module(X)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = X.shape
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    Xp = xp.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((N, C, kh, kw, Ho, Wo), dtype=X.dtype)
    for u in range(kh):
        for v in range(kw):
            cols[:, :, u, v] = Xp[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def col2im_planes(A, Bt, x_shape, kernel, stride, padding):
    """col2im of the channel-major product: with A (N, K, Ho, Wo) and Bt (C*kh*kw, K), rows (c, u, v),
    the NCHW array (N, C, H, W) that col2im(rows(A) @ Bt^T) gives, i.e. ConvTranspose2D's forward
    (A = X, K = Cin) or Conv2D's input gradient (A = dY, K = O), in other rounding.

    A few images at a time (PLANES_BLOCK_BYTES): P = Bt @ A[n] (C*kh*kw, Ho*Wo) per image, one
    batched product, then each offset (u, v)'s (C, Ho, Wo) block added into the phase-major sums
    (as col2im's, channel-major here) while it is in cache, in runs of Wo."""
    xp = backend.array_module(A, Bt)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = x_shape
    K, Ho, Wo = A.shape[1:]
    rows_per_image = C * kh * kw
    chunk = max(1, min(N, PLANES_BLOCK_BYTES // max(1, rows_per_image * Ho * Wo * A.dtype.itemsize)))
    Hq, Wq = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)
    dX = xp.empty((N, C, H, W), dtype=A.dtype)
    phases = xp.empty((sh, sw, chunk, C, Hq, Wq), dtype=A.dtype)
    P = xp.empty((chunk, rows_per_image, Ho * Wo), dtype=A.dtype)
    for n0 in range(0, N, chunk):
        n = min(chunk, N - n0)
        sums, blocks = phases[:, :, :n], P[:n]
        sums.fill(0)
        xp.matmul(Bt, A[n0:n0 + n].reshape(n, K, Ho * Wo), out=blocks)
        blocks = blocks.reshape(n, C, kh, kw, Ho, Wo)
        for u in range(kh):
            for v in range(kw):
                sums[u % sh, v % sw, :, :, u // sh:u // sh + Ho, v // sw:v // sw + Wo] += blocks[:, :, u, v]
        for a in range(sh):          # unpad and interleave, as col2im
            y0 = (a - ph) % sh
            for b in range(sw):
                x0 = (b - pw) % sw
                out = dX[n0:n0 + n, :, y0::sh, x0::sw]
                q0, r0 = (y0 + ph) // sh, (x0 + pw) // sw
                out[...] = sums[a, b, :, :, q0:q0 + out.shape[2], r0:r0 + out.shape[3]]
    return dX


PHASES_BLOCK_BYTES = 4 << 20   # conv_transpose_phases: images per product, columns of about this size


def conv_transpose_phases(X, W, stride, padding, out_hw):
    """ConvTranspose2D's forward (no bias) as one stride-1 product per block of images: every output
    phase (a, b) (the outputs every s-th row from the first that tap residue a reaches, as in
    layers/fourier.py) is a stride-1 convolution of X with the sub-kernel W[:, :, a::s, b::s]. Output
    q of phase a reads the inputs q + start_a - du for its taps u = a + s du, so one window of
    T = hi - lo + 1 inputs per axis covers every phase, and

        R = im2col_T(X) @ Wsub          (rows (n, q, r); T*T*Cin x P*Cout, P = s*s phases)

    with Wsub[(t, t', c), (a, b, o)] = W[c, o, u, v] where the window position and the phase give a
    tap, 0 where they give none (for 5x5, stride 2: 36 of 25 taps, 1.44 times the multiply-adds of
    col2im's products, but one wide product instead of 25 narrow ones, and no adds). Each phase is
    then one strided copy into the NCHW output. Eval-mode sampling only (Module.infer): it rounds
    differently from the training path. Few output channels go by col2im_planes instead."""
    xp = backend.array_module(X, W)
    N, C, H, Wd = X.shape
    O, (kh, kw), (sh, sw) = W.shape[1], W.shape[2:], stride
    axes = []
    for n_in, k, s, p, n_out in ((H, kh, sh, padding[0], out_hw[0]), (Wd, kw, sw, padding[1], out_hw[1])):
        rows, _ = fourier.phases(n_in, k, s, p, n_out)
        lo = min(start - taps + 1 for taps, _, _, start in rows)
        hi = max(start for _, _, _, start in rows)
        count = max(c for _, _, c, _ in rows)
        axes.append((rows, lo, hi - lo + 1, count, max(0, -lo), max(0, count - 1 + hi - (n_in - 1))))
    (rows_h, lo_h, T_h, Q, pb_h, pa_h), (rows_w, lo_w, T_w, R_, pb_w, pa_w) = axes
    Wsub = xp.zeros((T_h, T_w, C, sh, sw, O), dtype=X.dtype)
    for a, (taps_a, _, _, start_a) in enumerate(rows_h):
        for t in range(T_h):
            du = start_a - (lo_h + t)                  # the tap window row t gives phase a, if any
            if not 0 <= du < taps_a:
                continue
            for b, (taps_b, _, _, start_b) in enumerate(rows_w):
                for t2 in range(T_w):
                    dv = start_b - (lo_w + t2)
                    if 0 <= dv < taps_b:
                        Wsub[t, t2, :, a, b, :] = W[:, :, a + sh * du, b + sw * dv]
    Wm = Wsub.reshape(T_h * T_w * C, sh * sw * O)
    Xp = xp.pad(X.transpose(0, 2, 3, 1), ((0, 0), (pb_h, pa_h), (pb_w, pa_w), (0, 0)))   # (N, Hp, Wp, C)
    o_h, o_w = lo_h + pb_h, lo_w + pb_w               # where output 0's window starts in Xp
    Y = xp.empty((N, O) + tuple(out_hw), dtype=X.dtype)
    chunk = max(1, PHASES_BLOCK_BYTES // max(1, Q * R_ * T_h * T_w * C * X.dtype.itemsize))
    sN, sH, sW, sC = Xp.strides
    for n0 in range(0, N, chunk):
        part = Xp[n0:n0 + chunk, o_h:, o_w:]
        n = part.shape[0]
        windows = backend.as_strided(part, (n, Q, R_, T_h, T_w, C), (sN, sH, sW, sH, sW, sC))
        R = (windows.reshape(n * Q * R_, T_h * T_w * C) @ Wm).reshape(n, Q, R_, sh, sw, O)
        for a, (_, first_a, count_a, _) in enumerate(rows_h):
            for b, (_, first_b, count_b, _) in enumerate(rows_w):
                Y[n0:n0 + n, :, first_a::sh, first_b::sw] = R[:, :count_a, :count_b, a, b].transpose(0, 3, 1, 2)
    return Y


def _to_nchw(Y2, N, H, W, bias=None):
    """(N*H*W, C) rows in (n, h, w) order -> a contiguous (N, C, H, W) array, plus bias (C,)
    if given: the add rides on the transposing copy instead of taking a pass of its own."""
    xp = backend.array_module(Y2)
    Y = Y2.reshape(N, H, W, Y2.shape[1]).transpose(0, 3, 1, 2)  # (not -1: N may be 0)
    if bias is None:
        return xp.ascontiguousarray(Y)
    return xp.add(Y, bias[:, None, None], out=xp.empty(Y.shape, Y.dtype))


def _rows(X):
    """(N, C, H, W) -> (N*H*W, C) rows in (n, h, w) order (one copy)."""
    return X.transpose(0, 2, 3, 1).reshape(-1, X.shape[1])


class Conv2D(Module):
    """2-D convolution (cross-correlation), weight (out, in, kh, kw), NCHW."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="glorot_uniform", rng=None, dtype=None):
        super().__init__()
        self.in_channels = check_int("Conv2D", "in_channels", in_channels, 1)
        self.out_channels = check_int("Conv2D", "out_channels", out_channels, 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2D", 1)
        self.stride, self.padding = _pair(stride, "stride", "Conv2D", 1), _pair(padding, "padding", "Conv2D", 0)
        self.use_bias = bias
        dtype = self._dtype_arg(dtype)
        self._add_param("weight", initialise(init, rng, (out_channels, in_channels) + self.kernel_size, dtype,
                                             who="Conv2D"))
        if bias:
            self._add_param("bias", np.zeros(out_channels, dtype))

    def output_shape(self, H, W):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)

    def forward(self, X, weight=None):
        """``weight``: an (out, in, kh, kw) array to use instead of the parameter (a
        SpectralNorm wrapper passes W / sigma); backward then gives the gradient for it."""
        self._check_input(X, ndim=4, dim=1, size=self.in_channels)
        if X.shape[2] < 1 or X.shape[3] < 1:
            raise ShapeError(f"{self!r}: expected an input of at least 1x1 pixels, got shape {X.shape}")
        Ho, Wo = self.output_shape(*X.shape[2:])
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"{self!r}: input of {X.shape[2]}x{X.shape[3]} pixels is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.padding}")
        planes = use_planes(X.shape)                                      # few channels: channel-major columns
        if planes:
            cols = im2col_planes(X, self.kernel_size, self.stride, self.padding)   # (N, C*kh*kw, Ho*Wo)
        else:
            cols, _ = im2col(X, self.kernel_size, self.stride, self.padding)      # (N*Ho*Wo, kh*kw*C)
        W = self.params["weight"] if weight is None else self._check_weight(weight)
        Wm = W.transpose(2, 3, 1, 0).reshape(-1, self.out_channels)       # (kh*kw*C, O)
        if planes:
            Y = (W.reshape(self.out_channels, -1) @ cols).reshape(X.shape[0], self.out_channels, Ho, Wo)
            if self.use_bias:
                Y += self.params["bias"][:, None, None]
            return Y, self.save_for_backward(X.shape, cols, Wm)
        Y = _to_nchw(cols @ Wm, X.shape[0], Ho, Wo, self.params["bias"] if self.use_bias else None)
        return Y, self.save_for_backward(X.shape, cols, Wm)

    def backward(self, dY, cache):
        x_shape, cols, Wm = self.saved(cache)
        dY2 = self._weight_grads(dY, x_shape, cols)                        # (N*Ho*Wo, O)
        return self._input_grad(dY, x_shape, Wm, dY2)

    def backward_params(self, dY, cache):
        x_shape, cols, _ = self.saved(cache)
        self._weight_grads(dY, x_shape, cols)

    def backward_input(self, dY, cache):
        x_shape, cols, Wm = self.saved(cache)
        self._check_grad(dY, self._y_shape(x_shape), cols.dtype, cols)
        return self._input_grad(dY, x_shape, Wm)

    def double_backward(self, ddX, dY, cache):
        """dX = col2im(dY2 Wm^T) is bilinear in (dY, Wm) and free of X. Its adjoint in dY is the
        convolution itself: ddY = conv(ddX, W) without bias, and its weight gradient is the
        usual one with ddX in place of X: dWm += im2col(ddX)^T dY2. ddX_in = None."""
        x_shape, cols, Wm = self.saved(cache)
        self._check_double(ddX, dY, x_shape, self._y_shape(x_shape), cols.dtype, cols)
        dd_cols, (Ho, Wo) = im2col(ddX, self.kernel_size, self.stride, self.padding)   # (N*Ho*Wo, kh*kw*C)
        self._accumulate_weight(dd_cols.T @ _rows(dY))
        return _to_nchw(dd_cols @ Wm, x_shape[0], Ho, Wo), None

    def _y_shape(self, x_shape):
        return (x_shape[0], self.out_channels) + self.output_shape(*x_shape[2:])

    def _weight_grads(self, dY, x_shape, cols):
        """Accumulate dW and db; return dY as (N*Ho*Wo, O) rows for the input gradient (None
        after channel-major columns, cols (N, C*kh*kw, Ho*Wo): dW = sum_n dY[n] cols[n]^T)."""
        self._check_grad(dY, self._y_shape(x_shape), cols.dtype, cols)
        if cols.ndim == 3:
            dY3 = dY.reshape(x_shape[0], self.out_channels, -1)                # (N, O, Ho*Wo)
            self.grads["weight"] += (dY3 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(self.grads["weight"].shape)
            if self.use_bias:
                self.grads["bias"] += dY3.sum(axis=(0, 2))
            return None
        dY2 = _rows(dY)
        self._accumulate_weight(cols.T @ dY2)                             # dWm (kh*kw*C, O)
        if self.use_bias:
            self.grads["bias"] += dY2.sum(axis=0)
        return dY2

    def _accumulate_weight(self, dWm):
        """Add a (kh*kw*C, O) matrix gradient to the (O, C, kh, kw) weight's."""
        kh, kw = self.kernel_size
        self.grads["weight"] += dWm.reshape(kh, kw, self.in_channels, self.out_channels).transpose(3, 2, 0, 1)

    def input_grad_uses_fourier(self, x_shape) -> bool:
        """Whether the input gradient for an input of x_shape takes the Fourier path."""
        cost, im2col_cost = fourier.flops(self._y_shape(x_shape), x_shape[1], self.kernel_size, self.stride,
                                          self.padding, x_shape[2:])
        return cost <= FOURIER_SHARE["forward"] * im2col_cost

    def _input_grad(self, dY, x_shape, Wm, dY2=None):
        """dX = col2im(dcols), dcols = dY2 @ Wm^T (N*Ho*Wo, kh*kw*C) made one kernel offset at a
        time; dY2: dY as rows, when the caller has them. dX is ConvTranspose2D's forward of dY
        with the same weight tensor, so it takes the Fourier path where that pays (FOURIER_SHARE)."""
        C, (H, W) = x_shape[1], x_shape[2:]
        kh, kw = self.kernel_size
        if self.input_grad_uses_fourier(x_shape):
            weight = Wm.reshape(kh, kw, C, self.out_channels).transpose(3, 2, 0, 1)   # W (O, C, kh, kw)
            return fourier.conv_transpose(dY, weight, self.stride, self.padding, (H, W))[0]
        if use_planes(x_shape):                        # Bt: rows (c, u, v)
            Bt = Wm.reshape(kh, kw, C, self.out_channels).transpose(2, 0, 1, 3).reshape(C * kh * kw, -1)
            return col2im_planes(dY, Bt, x_shape, self.kernel_size, self.stride, self.padding)
        dY2 = _rows(dY) if dY2 is None else dY2
        return col2im(dY2, x_shape, self.kernel_size, self.stride, self.padding, B=Wm.T)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}" + ("" if self.use_bias else ", bias=False"))


class ConvTranspose2D(Module):
    """Transposed convolution, weight (in, out, kh, kw), NCHW.

    H_out = (H - 1) * stride - 2 * padding + kh + output_padding. A stride-s convolution
    maps s different input sizes to the same output size; output_padding (< stride)
    picks which one the transposed convolution returns.

    algorithm: "im2col" (GEMM, then col2im; backward im2col then GEMMs), "fourier" (one
    matrix product per frequency, layers/fourier.py), or "auto" (the default): forward and
    backward each "fourier" where it needs at most FOURIER_SHARE of im2col's multiply-adds,
    else "im2col". Both compute the same map and its exact gradient; they differ in rounding only.
    """

    double_backward_note = ("not written: a generator layer (a WGAN-GP critic downsamples with Conv2D); "
                            "it would be Conv2D's with the two roles swapped")
    ALGORITHMS = ("auto", "im2col", "fourier")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True, init="glorot_uniform", rng=None, dtype=None, algorithm="auto"):
        super().__init__()
        who = "ConvTranspose2D"
        self.in_channels = check_int(who, "in_channels", in_channels, 1)
        self.out_channels = check_int(who, "out_channels", out_channels, 1)
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size", who, 1), _pair(stride, "stride", who, 1)
        self.padding = _pair(padding, "padding", who, 0)
        self.output_padding = _pair(output_padding, "output_padding", who, 0)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"{who}: output_padding must be >= 0 and smaller than stride {self.stride}, "
                             f"got {output_padding!r}")
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"{who}: algorithm must be one of {', '.join(map(repr, self.ALGORITHMS))}, "
                             f"got {algorithm!r}")
        self.algorithm = algorithm
        self.use_bias = bias
        dtype = self._dtype_arg(dtype)
        self._add_param("weight", initialise(init, rng, (in_channels, out_channels) + self.kernel_size, dtype, who=who))
        if bias:
            self._add_param("bias", np.zeros(out_channels, dtype))

    def output_shape(self, H, W):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (oh, ow) = self.padding, self.output_padding
        return (H - 1) * sh - 2 * ph + kh + oh, (W - 1) * sw - 2 * pw + kw + ow

    def uses_fourier(self, x_shape, direction="forward") -> bool:
        """Whether the forward (or the backward) on an input of x_shape takes the Fourier path."""
        if direction not in FOURIER_SHARE:
            raise ValueError(f"{self!r}: direction must be 'forward' or 'backward', got {direction!r}")
        if self.algorithm != "auto":
            return self.algorithm == "fourier"
        cost, im2col_cost = fourier.flops(x_shape, self.out_channels, self.kernel_size, self.stride, self.padding,
                                          self.output_shape(*x_shape[2:]))
        return cost <= FOURIER_SHARE[direction] * im2col_cost

    def forward(self, X):
        self._check_input(X, ndim=4, dim=1, size=self.in_channels)
        N, _, H, W_ = X.shape
        if H < 1 or W_ < 1:
            raise ShapeError(f"{self!r}: expected an input of at least 1x1 pixels, got shape {X.shape}")
        Ho, Wo = self.output_shape(H, W_)
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"{self!r}: input of {H}x{W_} pixels gives an empty output ({Ho}x{Wo})")
        fourier_backward = self.uses_fourier(X.shape, "backward")
        if fourier_backward or self.uses_fourier(X.shape):                 # (that backward needs the spectra)
            Y, spectra = fourier.conv_transpose(X, self.params["weight"], self.stride, self.padding, (Ho, Wo))
            saved = ("fourier", spectra) if fourier_backward else self._im2col_saved(X)
        elif use_planes((N, self.out_channels, Ho, Wo)):   # few output channels
            W = self.params["weight"]                                      # (Cin, Cout, kh, kw)
            Bt = W.transpose(1, 2, 3, 0).reshape(-1, self.in_channels)     # (Cout*kh*kw, Cin), rows (o, u, v)
            Y = col2im_planes(X, Bt, (N, self.out_channels, Ho, Wo), self.kernel_size, self.stride, self.padding)
            saved = self._im2col_saved(X)
        else:
            X2 = _rows(X)                                                  # (N*H*W, Cin)
            Wm = self._weight_matrix()                                     # (Cin, kh*kw*Cout)
            # Y = col2im(cols), cols = X2 @ Wm (N*H*W, kh*kw*Cout) made one kernel offset at a time
            Y = col2im(X2, (N, self.out_channels, Ho, Wo), self.kernel_size, self.stride, self.padding, B=Wm)
            saved = ("im2col", (X2, Wm))
        if self.use_bias:
            Y += self.params["bias"][None, :, None, None]
        return Y, self.save_for_backward(*saved, (N, H, W_), X.dtype)

    def infer(self, X, overwrite=False):
        """The forward without what backward needs (eval-mode sampling, whose bits no recorded run
        holds): the Fourier path by the forward's rule alone (the forward also takes it where its
        backward will, for the spectra); else few output channels by channel-major columns from
        INFER_PLANES_MIN_VALUES; else a stride above 1 by one product over all output phases
        (conv_transpose_phases: 3x64x64 G's 64 -> 32 layer at batch 256, 96 -> 91 ms on one thread,
        74 -> 56 on two); else col2im."""
        self._check_input(X, ndim=4, dim=1, size=self.in_channels)
        N, _, H, W_ = X.shape
        Ho, Wo = self.output_shape(H, W_)
        if H < 1 or W_ < 1 or Ho < 1 or Wo < 1:
            return self.forward(X)[0]                                       # (its error)
        W = self.params["weight"]
        if self.uses_fourier(X.shape):
            Y = fourier.conv_transpose(X, W, self.stride, self.padding, (Ho, Wo))[0]
        elif use_planes((N, self.out_channels, Ho, Wo), INFER_PLANES_MIN_VALUES):
            Bt = W.transpose(1, 2, 3, 0).reshape(-1, self.in_channels)
            Y = col2im_planes(X, Bt, (N, self.out_channels, Ho, Wo), self.kernel_size, self.stride, self.padding)
        elif max(self.stride) > 1 and self.out_channels >= FEW_CHANNELS:
            Y = conv_transpose_phases(X, W, self.stride, self.padding, (Ho, Wo))
        else:
            Y = col2im(_rows(X), (N, self.out_channels, Ho, Wo), self.kernel_size, self.stride, self.padding,
                       B=self._weight_matrix())
        if self.use_bias:
            Y += self.params["bias"][None, :, None, None]
        return Y

    def backward(self, dY, cache):
        return self._grads(dY, cache, weight=True, inputs=True)

    def backward_params(self, dY, cache):
        self._grads(dY, cache, weight=True, inputs=False)

    def backward_input(self, dY, cache):
        return self._grads(dY, cache, weight=False, inputs=True)

    def _grads(self, dY, cache, weight, inputs):
        """Return dX if inputs (else None); accumulate dW and db if weight."""
        path, saved, (N, H, W_), dtype = self.saved(cache)
        like = saved[0]
        self._check_grad(dY, (N, self.out_channels) + self.output_shape(H, W_), dtype, like)
        if path == "fourier":
            dX, dW = fourier.conv_transpose_grads(dY, saved, weight, inputs)
        elif path == "planes":   # dY's channel-major columns (N, Cout*kh*kw, H*W); Wp = W as (Cin, Cout*kh*kw)
            X, Wp = saved
            cols = im2col_planes(dY, self.kernel_size, self.stride, self.padding)
            dX = (Wp @ cols).reshape(X.shape) if inputs else None
            dW = (X.reshape(N, self.in_channels, -1) @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(
                self.params["weight"].shape) if weight else None
        else:
            X2, Wm = saved
            cols, _ = im2col(dY, self.kernel_size, self.stride, self.padding)   # (N*H*W, kh*kw*Cout)
            dX = _to_nchw(cols @ Wm.T, N, H, W_) if inputs else None           # dX2 = dcols Wm^T
            dW = self._weight_tensor(X2.T @ cols) if weight else None          # dWm = X2^T dcols
        if weight:
            self.grads["weight"] += dW
            if self.use_bias:
                self.grads["bias"] += dY.sum(axis=(0, 2, 3))
        return dX

    def _im2col_saved(self, X):
        """What the backward by columns needs: X as rows and the weight matrix, or, where dY has few
        channels on a large map (use_planes), X and a copy of the weight as (Cin, Cout*kh*kw)."""
        N, _, H, W_ = X.shape
        if use_planes((N, self.out_channels) + self.output_shape(H, W_)):
            return "planes", (X, self.params["weight"].reshape(self.in_channels, -1).copy())
        return "im2col", (_rows(X), self._weight_matrix())

    def _weight_matrix(self):
        """W (Cin, Cout, kh, kw) as the (Cin, kh*kw*Cout) matrix that makes the columns."""
        return self.params["weight"].transpose(0, 2, 3, 1).reshape(self.in_channels, -1)

    def _weight_tensor(self, Wm):
        """The inverse of _weight_matrix's layout: (Cin, kh*kw*Cout) -> (Cin, Cout, kh, kw)."""
        kh, kw = self.kernel_size
        return Wm.reshape(self.in_channels, kh, kw, self.out_channels).transpose(0, 3, 1, 2)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}"
                + ("" if self.use_bias else ", bias=False")
                + ("" if self.algorithm == "auto" else f", algorithm={self.algorithm!r}"))
