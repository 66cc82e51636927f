"""Conv2D and ConvTranspose2D as one matrix product each way over im2col columns.

Conv2D is a cross-correlation (as torch.nn.Conv2d), NCHW:

    Y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * Xp[n, c, s*i + u, s*j + v]

With the columns  cols[(c,u,v), (n,i,j)] = Xp[n, c, s*i+u, s*j+v]  (im2col) this is
one GEMM,  Y2 = W2 @ cols  with W2 = W.reshape(O, C*kh*kw), and backward is two more:

    dW2 = dY2 @ cols^T        dcols = W2^T @ dY2        dX = col2im(dcols)

ConvTranspose2D is the adjoint of Conv2D (docs/layers/conv_transpose2d.md): its forward
is Conv2D's input gradient (GEMM then col2im), its backward is Conv2D's forward (im2col
then GEMM). Its weight is (in, out, kh, kw) as in torch.nn.ConvTranspose2d.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..init import initialise
from .base import Module, ShapeError


def _pair(v, name):
    pair = (v, v) if np.isscalar(v) else tuple(v)
    if len(pair) != 2 or any(int(a) != a for a in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def im2col(X, kernel, stride, padding):
    """Columns of X for a convolution: (C*kh*kw, N*Ho*Wo), plus (Ho, Wo).

    A strided view enumerates every window without copying; the single reshape copy
    lays the windows out so that the convolution is one BLAS call.
    """
    xp = backend.array_module(X)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = X.shape
    if ph or pw:
        X = xp.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    sN, sC, sH, sW = X.strides
    windows = backend.as_strided(X, (C, kh, kw, N, Ho, Wo), (sC, sH, sW, sN, sh * sH, sw * sW))
    return windows.reshape(C * kh * kw, N * Ho * Wo), (Ho, Wo)


def col2im(cols, x_shape, kernel, stride, padding):
    """The adjoint of im2col: scatter-add columns back into an (N, C, H, W) array.

    Windows overlap when the stride is smaller than the kernel, so values must be
    summed. The loop runs over the kh*kw kernel offsets only (25 for a 5x5 kernel, never
    over batch items or pixels): each step is one vectorised strided add over the whole
    batch, which is much faster than np.add.at on NumPy and CuPy alike.
    """
    xp = backend.array_module(cols)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    N, C, H, W = x_shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    cols = cols.reshape(C, kh, kw, N, Ho, Wo)
    dXp = xp.zeros((C, N, Hp, Wp), dtype=cols.dtype)  # channel-major: each add below is contiguous-ish
    for u in range(kh):
        for v in range(kw):
            dXp[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += cols[:, u, v]
    return xp.ascontiguousarray(dXp[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3))


class Conv2D(Module):
    """2-D convolution (cross-correlation), weight (out, in, kh, kw), NCHW."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 init="glorot_uniform", rng=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.padding, self.use_bias = _pair(padding, "padding"), bias
        dtype = dtype or backend.default_dtype()
        self._add_param("weight", initialise(init, rng, (out_channels, in_channels) + self.kernel_size, dtype))
        if bias:
            self._add_param("bias", np.zeros(out_channels, dtype))

    def output_shape(self, H, W):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)

    def forward(self, X):
        self._check_input(X, ndim=4, dim=1, size=self.in_channels)
        Ho, Wo = self.output_shape(*X.shape[2:])
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"{self!r}: input of {X.shape[2]}x{X.shape[3]} pixels is smaller than the kernel "
                             f"{self.kernel_size} with padding {self.padding}")
        W = self.params["weight"]
        cols, _ = im2col(X, self.kernel_size, self.stride, self.padding)
        Y2 = W.reshape(self.out_channels, -1) @ cols                    # (O, N*Ho*Wo)
        if self.use_bias:
            Y2 += self.params["bias"][:, None]
        Y = Y2.reshape(self.out_channels, X.shape[0], Ho, Wo).transpose(1, 0, 2, 3)
        return backend.array_module(Y).ascontiguousarray(Y), (X.shape, cols)

    def backward(self, dY, cache):
        x_shape, cols = cache
        W = self.params["weight"]
        dY2 = dY.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)  # (O, N*Ho*Wo)
        self.grads["weight"] += (dY2 @ cols.T).reshape(W.shape)
        if self.use_bias:
            self.grads["bias"] += dY2.sum(axis=1)
        dcols = W.reshape(self.out_channels, -1).T @ dY2                 # (C*kh*kw, N*Ho*Wo)
        return col2im(dcols, x_shape, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}" + ("" if self.use_bias else ", bias=False"))


class ConvTranspose2D(Module):
    """Transposed convolution, weight (in, out, kh, kw), NCHW.

    H_out = (H - 1) * stride - 2 * padding + kh + output_padding. A stride-s convolution
    maps s different input sizes to the same output size; output_padding (< stride)
    picks which one the transposed convolution returns.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 bias=True, init="glorot_uniform", rng=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.output_padding = _pair(output_padding, "output_padding")
        if any(op >= s or op < 0 for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2D: output_padding {self.output_padding} must be >= 0 and "
                             f"smaller than stride {self.stride}")
        self.use_bias = bias
        dtype = dtype or backend.default_dtype()
        self._add_param("weight", initialise(init, rng, (in_channels, out_channels) + self.kernel_size, dtype))
        if bias:
            self._add_param("bias", np.zeros(out_channels, dtype))

    def output_shape(self, H, W):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (oh, ow) = self.padding, self.output_padding
        return (H - 1) * sh - 2 * ph + kh + oh, (W - 1) * sw - 2 * pw + kw + ow

    def forward(self, X):
        self._check_input(X, ndim=4, dim=1, size=self.in_channels)
        N, _, H, W_ = X.shape
        Ho, Wo = self.output_shape(H, W_)
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"{self!r}: input of {H}x{W_} pixels gives an empty output ({Ho}x{Wo})")
        W = self.params["weight"]
        X2 = X.transpose(1, 0, 2, 3).reshape(self.in_channels, -1)      # (Cin, N*H*W)
        cols = W.reshape(self.in_channels, -1).T @ X2                    # (Cout*kh*kw, N*H*W)
        Y = col2im(cols, (N, self.out_channels, Ho, Wo), self.kernel_size, self.stride, self.padding)
        if self.use_bias:
            Y += self.params["bias"][None, :, None, None]
        return Y, X2

    def backward(self, dY, X2):
        W = self.params["weight"]
        cols, (H, W_) = im2col(dY, self.kernel_size, self.stride, self.padding)  # (Cout*kh*kw, N*H*W)
        self.grads["weight"] += (X2 @ cols.T).reshape(W.shape)
        if self.use_bias:
            self.grads["bias"] += dY.sum(axis=(0, 2, 3))
        dX2 = W.reshape(self.in_channels, -1) @ cols                     # (Cin, N*H*W)
        dX = dX2.reshape(self.in_channels, dY.shape[0], H, W_).transpose(1, 0, 2, 3)
        return backend.array_module(dX).ascontiguousarray(dX)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}"
                + ("" if self.use_bias else ", bias=False"))
