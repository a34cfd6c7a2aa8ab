"""Deformable convolutions: v1 (Dai et al., 2017) and the modulated v2 (Zhu et al., 2018).

Each kernel tap ``k = i*kw + j`` of output position ``(h, w)`` samples the input at
``(h*s_h - p_h + i*d_h + dy, w*s_w - p_w + j*d_w + dx)`` with bilinear interpolation,
where ``(dy, dx)`` are offset channels ``g*2K + 2k`` and ``g*2K + 2k + 1`` of deformable
group ``g`` (the input channels split into ``num_deformable_group`` contiguous blocks). v2
multiplies each sample by its mask channel ``g*K + k``. The samples form the same
``(groups, N*OH*OW, K*C/groups)`` column matrix a convolution builds with im2col, and the
rest -- GEMM with the weight, its gradients -- is the convolution core's
(``xpnet/ops/_im2col.py``).

Border conventions (as MXNet 1.9.1 computes them on CPU):

- v2: standard zero-padded bilinear sampling: a sample counts when ``-1 < y < H`` and
  ``-1 < x < W``, corners outside the image are 0.
- v1: a sample counts only when ``0 <= y < H`` and ``0 <= x < W``; a sample in the last
  row (``y >= H-1``) or column is clamped to it. MXNet's own v1 backward ignores the clamp
  (it differentiates the v2 rule); xpnet's gradients are those of the forward it computes.

Gradients flow to the input (scattered to the four corners), the offsets, the mask and the
weight/bias.
"""
import numpy as np

from ._base import _wrap, int_tuple, needs_grad, record_op, same_ctx
from ._im2col import (conv_output_size, from_nsc, gemm_groups, normalize_layout, prod, to_nsc,
                      weight_from_matrix, weight_grad, weight_matrix)
from ..backend import scatter_add
from ..backend.hostpool import threaded_matmul

__all__ = ['deformable_convolution', 'modulated_deformable_convolution']


def _sample_grid(xp, offsets, size, kernel, stride, pad, dilate, out, dtype):
    """Sampling positions (N, OH, OW, dg, K) from offsets (N, OH, OW, dg, K, 2)."""
    kh, kw = kernel
    k = xp.arange(kh * kw)
    base_y = (xp.arange(out[0]) * stride[0] - pad[0]).reshape(1, -1, 1, 1, 1) + \
        ((k // kw) * dilate[0]).reshape(1, 1, 1, 1, -1)
    base_x = (xp.arange(out[1]) * stride[1] - pad[1]).reshape(1, 1, -1, 1, 1) + \
        ((k % kw) * dilate[1]).reshape(1, 1, 1, 1, -1)
    return (base_y.astype(dtype) + offsets[..., 0], base_x.astype(dtype) + offsets[..., 1])


class _Bilinear:
    """Bilinear sampling of ``x`` (N, H, W, dg, Cd) at positions (N, OH, OW, dg, K): the four
    corner row indices into ``x.reshape(-1, Cd)``, their weights and validity, under the v1
    or v2 border rule (module docstring)."""

    def __init__(self, xp, x, py, px, v1):
        N, H, W, dg, Cd = x.shape
        dtype = x.dtype
        if v1:
            valid = (py >= 0) & (py < H) & (px >= 0) & (px < W)
            y0 = xp.floor(py)
            x0 = xp.floor(px)
            self.clamp_y = y0 >= H - 1
            self.clamp_x = x0 >= W - 1
            py = xp.where(self.clamp_y, dtype.type(H - 1), py)
            px = xp.where(self.clamp_x, dtype.type(W - 1), px)
            y0 = xp.minimum(y0, H - 1)
            x0 = xp.minimum(x0, W - 1)
            y1 = xp.minimum(y0 + 1, H - 1)
            x1 = xp.minimum(x0 + 1, W - 1)
            vy0 = vy1 = vx0 = vx1 = valid
        else:
            valid = (py > -1) & (py < H) & (px > -1) & (px < W)
            self.clamp_y = self.clamp_x = None
            y0 = xp.floor(py)
            x0 = xp.floor(px)
            y1 = y0 + 1
            x1 = x0 + 1
            vy0 = valid & (y0 >= 0)
            vy1 = valid & (y1 <= H - 1)
            vx0 = x0 >= 0
            vx1 = x1 <= W - 1
        lh = py - y0
        lw = px - x0
        hh = 1 - lh
        hw = 1 - lw
        self.lh, self.lw, self.hh, self.hw = lh, lw, hh, hw
        n = xp.arange(N).reshape(-1, 1, 1, 1, 1)
        g = xp.arange(dg).reshape(1, 1, 1, -1, 1)
        yi0 = xp.clip(y0, 0, H - 1).astype(np.int64)
        yi1 = xp.clip(y1, 0, H - 1).astype(np.int64)
        xi0 = xp.clip(x0, 0, W - 1).astype(np.int64)
        xi1 = xp.clip(x1, 0, W - 1).astype(np.int64)

        def row(yi, xi):
            return (((n * H + yi) * W + xi) * dg + g).reshape(-1)
        # corners in the order (y0,x0), (y0,x1), (y1,x0), (y1,x1)
        self.rows = [row(yi0, xi0), row(yi0, xi1), row(yi1, xi0), row(yi1, xi1)]
        self.valid = [(vy0 & vx0).astype(dtype), (vy0 & vx1).astype(dtype),
                      (vy1 & vx0).astype(dtype), (vy1 & vx1).astype(dtype)]
        self.weights = [hh * hw * self.valid[0], hh * lw * self.valid[1],
                        lh * hw * self.valid[2], lh * lw * self.valid[3]]
        flat = x.reshape(-1, Cd)
        shape = py.shape + (Cd,)
        self.values = [xp.take(flat, r, axis=0).reshape(shape) for r in self.rows]
        self.shape = shape

    def sample(self):
        v = self.values
        w = self.weights
        return (w[0][..., None] * v[0] + w[1][..., None] * v[1] + w[2][..., None] * v[2]
                + w[3][..., None] * v[3])

    def position_grads(self, gs):
        """Gradients of the positions (y, x) given the samples' gradient ``gs``."""
        v = [val * ok[..., None] for val, ok in zip(self.values, self.valid)]
        hh, hw, lh, lw = self.hh[..., None], self.hw[..., None], self.lh[..., None], \
            self.lw[..., None]
        gy = (gs * (hw * (v[2] - v[0]) + lw * (v[3] - v[1]))).sum(axis=-1)
        gx = (gs * (hh * (v[1] - v[0]) + lh * (v[3] - v[2]))).sum(axis=-1)
        if self.clamp_y is not None:       # v1: a clamped coordinate is a constant
            gy = gy * (~self.clamp_y)
            gx = gx * (~self.clamp_x)
        return gy, gx

    def input_grad(self, xp, gs, x_shape):
        """Scatter the samples' gradient ``gs`` to the four corners of every sample."""
        Cd = x_shape[-1]
        gflat = xp.zeros((prod(x_shape[:-1]), Cd), dtype=gs.dtype)
        for r, w in zip(self.rows, self.weights):
            scatter_add(xp, gflat, r, (gs * w[..., None]).reshape(-1, Cd))
        return gflat.reshape(x_shape)


def _offsets_and_mask(offset, mask, dtype, last, lead, K, dgroups, op):
    """The offsets as (N, OH, OW, dg, K, 2) and the mask as (N, OH, OW, dg, K) (or None),
    channels-last, after checking their shapes against the output's ``lead`` (N, OH, OW)."""
    off = to_nsc(offset._data.astype(dtype, copy=False), last)
    if off.shape != lead + (2 * K * dgroups,):
        raise ValueError(f'{op}: offset shape {offset.shape} does not match the output '
                         f'{lead[1:]} with {2 * K * dgroups} offset channels')
    off = off.reshape(lead + (dgroups, K, 2))
    mk = None
    if mask is not None:
        mk = to_nsc(mask._data.astype(dtype, copy=False), last)
        if mk.shape != lead + (K * dgroups,):
            raise ValueError(f'{op}: mask shape {mask.shape} does not match the output '
                             f'{lead[1:]} with {K * dgroups} mask channels')
        mk = mk.reshape(lead + (dgroups, K))
    return off, mk


def _deformable(data, offset, mask, weight, bias, stride, pad, dilate, groups, dgroups,
                layout, op, v1):
    for other in (offset, weight, mask, bias):
        if other is not None:
            same_ctx(data, other, op)
    nd, last = normalize_layout(layout, 2, op)
    if data.ndim != 4 or weight.ndim != 4:
        raise ValueError(f'{op}: expected a 4-D input and weight (2-D deformable convolution), '
                         f'got shapes {data.shape} and {weight.shape}')
    stride = int_tuple(stride, 2, 'stride', op, 1)
    pad = int_tuple(pad, 2, 'pad', op, 0)
    dilate = int_tuple(dilate, 2, 'dilate', op, 1)
    xp = data.xp
    wd = weight._data
    xd = data._data if data.dtype == wd.dtype else data._data.astype(wd.dtype)
    x = to_nsc(xd, last)
    N, H, W, C = x.shape
    wshape = (wd.shape[0], wd.shape[-1]) + tuple(wd.shape[1:-1]) if last else tuple(wd.shape)
    O, Cg = wshape[:2]
    kernel = wshape[2:]
    K = prod(kernel)
    if C != Cg * groups or O % groups:
        raise ValueError(f'{op}: input has {C} channels (shape {data.shape}); the weight '
                         f'{weight.shape} with groups={groups} expects {Cg * groups} and '
                         f'{O} outputs divisible by groups')
    if C % dgroups:
        raise ValueError(f'{op}: {C} input channels are not divisible by '
                         f'num_deformable_group={dgroups}')
    out = conv_output_size((H, W), kernel, stride, pad, dilate)
    if min(out) < 1:
        raise ValueError(f'{op}: kernel {tuple(kernel)} (dilation {dilate}) is larger than the '
                         f'padded input (input shape {data.shape}, padding {pad})')
    off, mk = _offsets_and_mask(offset, mask, wd.dtype, last, (N,) + out, K, dgroups, op)
    Cd = C // dgroups
    xg = xp.ascontiguousarray(x).reshape(N, H, W, dgroups, Cd)
    py, px = _sample_grid(xp, off, (H, W), kernel, stride, pad, dilate, out, x.dtype)
    bil = _Bilinear(xp, xg, py, px, v1)
    samples = bil.sample()                                   # (N, OH, OW, dg, K, Cd)
    vals = samples * mk[..., None] if mk is not None else samples
    M = N * out[0] * out[1]
    # (N, OH, OW, dg, K, Cd) -> (G, M, K*Cg), columns ordered (kernel offset, channel)
    col = vals.transpose(0, 1, 2, 4, 3, 5).reshape(M, K, C)
    col = col.reshape(M, K, groups, Cg).transpose(2, 0, 1, 3).reshape(groups, M, K * Cg)
    wm = weight_matrix(wd, last).reshape(groups, O // groups, -1)
    y = gemm_groups(xp, col, wm).reshape((N,) + out + (O,))
    if bias is not None:
        y += bias._data.astype(y.dtype, copy=False)
    result = from_nsc(y, last)
    need = needs_grad(data, offset, mask, weight, bias)
    if need is None:
        return _wrap(result, data._ctx)
    in_dtype = data.dtype

    def backward(g):
        g = to_nsc(g, last)
        g2 = xp.ascontiguousarray(g).reshape(M, O)
        gx = goff = gmask = gw = gb = None
        if need[0] or need[1] or need[2]:
            gx, goff, gmask = _sample_grads(xp, g2, wm, bil, mk, samples, xg.shape, out,
                                            groups, need)
            if gx is not None:
                gx = from_nsc(gx.reshape(N, H, W, C), last)
                if gx.dtype != in_dtype:
                    gx = gx.astype(in_dtype)
            if goff is not None:
                goff = from_nsc(goff, last).astype(offset.dtype, copy=False)
            if gmask is not None:
                gmask = from_nsc(gmask, last).astype(mask.dtype, copy=False)
        if need[3]:
            gw = weight_from_matrix(weight_grad(xp, g, col, groups), wshape, last)
        if need[4]:
            gb = g2.sum(axis=0)
        return gx, goff, gmask, gw, gb
    return record_op(backward, (data, offset, mask, weight, bias), result, data._ctx,
                     need=need, name='deformable_convolution')


def _sample_grads(xp, g2, wm, bil, mk, samples, x_shape, out, groups, need):
    """Gradients of the input (N, H, W, dg, Cd), the offsets and the mask, channels-last,
    from the output gradient ``g2`` (M, O): the columns' gradient ``g2 @ wm`` taken back
    through the (modulated) bilinear samples."""
    N, _, _, dgroups, Cd = x_shape
    M = g2.shape[0]
    K = samples.shape[-2]
    Cg = wm.shape[2] // K
    if groups == 1:
        gcol = threaded_matmul(g2, wm[0]).reshape(1, M, -1)
    else:
        gcol = threaded_matmul(g2.reshape(M, groups, -1).transpose(1, 0, 2), wm)
    gvals = gcol.reshape(groups, M, K, Cg).transpose(1, 2, 0, 3).reshape(
        (N,) + out + (K, dgroups, Cd)).transpose(0, 1, 2, 4, 3, 5)
    gs = gvals * mk[..., None] if mk is not None else gvals
    gx = goff = gmask = None
    if need[0]:
        gx = bil.input_grad(xp, gs, x_shape)
    if need[1]:
        gy_, gx_ = bil.position_grads(gs)
        goff = xp.stack([gy_, gx_], axis=-1).reshape((N,) + out + (-1,))
    if need[2]:
        gmask = (gvals * samples).sum(axis=-1).reshape((N,) + out + (-1,))
    return gx, goff, gmask


def deformable_convolution(data, offset, weight, bias=None, stride=1, pad=0, dilate=1,
                           groups=1, num_deformable_group=1, layout=None, name=None):
    """2-D deformable convolution v1 (MXNet's ``contrib.DeformableConvolution``).

    Args:
        data: (N, C, H, W) (or NHWC with ``layout='NHWC'``).
        offset: (N, 2*K*num_deformable_group, OH, OW): per deformable group and kernel tap
            ``k``, channel ``2k`` is dy and ``2k+1`` is dx.
        weight: (channels, C/groups, kh, kw) (NHWC: (channels, kh, kw, C/groups)).
        bias: (channels,) or None.
        stride, pad, dilate, groups: as in a convolution.
        num_deformable_group: input channels split into this many blocks with their own
            offsets.
        layout: 'NCHW' (default) or 'NHWC'.
        name: the layer name used in error messages.

    Sampling is bilinear with MXNet's CPU v1 border rule (module docstring).
    """
    return _deformable(data, offset, None, weight, bias, stride, pad, dilate, groups,
                       int(num_deformable_group), layout, name or 'DeformableConvolution',
                       True)


def modulated_deformable_convolution(data, offset, mask, weight, bias=None, stride=1, pad=0,
                                     dilate=1, groups=1, num_deformable_group=1, layout=None,
                                     name=None):
    """2-D modulated deformable convolution v2 (MXNet's
    ``contrib.ModulatedDeformableConvolution``): like :func:`deformable_convolution` with
    zero-padded bilinear sampling, each sample multiplied by ``mask`` (N,
    K*num_deformable_group, OH, OW), channel ``g*K + k``."""
    return _deformable(data, offset, mask, weight, bias, stride, pad, dilate, groups,
                       int(num_deformable_group), layout,
                       name or 'ModulatedDeformableConvolution', False)
