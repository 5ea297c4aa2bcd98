"""Triton kernels of the shaped-attention mix (blocks/shaped.py): one launch forward, two backward.

Imported only where Triton is installed (CUDA machines; on CPU through Triton's interpreter, TRITON_INTERPRET=1,
which the tests use). One program per (batch, head) walks the sequence in tiles of BLOCK_T positions, carrying
the running sum of V (forward) or of the weighted gradient (backward, walking back) from tile to tile, so the
causal mean never leaves registers and nothing of size T x T exists. Arithmetic is float32 whatever the storage
dtype; every tensor is read with its own strides, and the output is written straight into the (B, T, H, D) layout
that the attention's head merge then reads as a view.

Forward, per head h (a, b, g the head's gains times the branch scale sigma; m an optional addend with gain e):
    out = b S + a V - g C V + e M
Backward (G the gradient of out): dS = b G, dV = a G - g C^T G, dM = e G, and per (batch, head) the partial sums
Ps = sum G.S, Pv = sum G.V, Pc = sum G.(C V) = sum V.(C^T G), Pm = sum G.M, which `_mix_gains_bwd` reduces over
the batch into the gains' gradients in a second launch.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _scalar(ptr, const, FROM_PTR: tl.constexpr):
    """A gain held in a 0-d tensor (trained) or passed as a number (fixed)."""
    if FROM_PTR:
        value = tl.load(ptr).to(tl.float32)
    else:
        value = const
    return value


@triton.jit
def _gains(a_ptr, b_ptr, g_ptr, scale_ptr, h, scale_const, CENTRE: tl.constexpr, HAS_SCALE: tl.constexpr):
    sc = _scalar(scale_ptr, scale_const, HAS_SCALE)
    a = tl.load(a_ptr + h).to(tl.float32) * sc
    b = tl.load(b_ptr + h).to(tl.float32) * sc
    g = a * 0.0
    if CENTRE != 0:
        g = tl.load(g_ptr + h).to(tl.float32) * sc
    return a, b, g


@triton.jit
def _mix_fwd(s_ptr, v_ptr, m_ptr, out_ptr, a_ptr, b_ptr, g_ptr, scale_ptr, mg_ptr, scale_const, mg_const,
             H, T, D, s_sb, s_sh, s_st, v_sb, v_sh, v_st, m_sb, m_sh, m_st, o_sb, o_sh, o_st,
             CENTRE: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_M: tl.constexpr,
             HAS_MG: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bi, h = pid // H, pid % H
    a, b, g = _gains(a_ptr, b_ptr, g_ptr, scale_ptr, h, scale_const, CENTRE, HAS_SCALE)
    e = _scalar(mg_ptr, mg_const, HAS_MG)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    s_base, v_base = s_ptr + bi * s_sb + h * s_sh, v_ptr + bi * v_sb + h * v_sh
    m_base, o_base = m_ptr + bi * m_sb + h * m_sh, out_ptr + bi * o_sb + h * o_sh
    carry = tl.zeros([BLOCK_D], dtype=tl.float32)
    if CENTRE == 2:  # the bidirectional mean: one pass over V first
        for t0 in range(0, T, BLOCK_T):
            t = t0 + tl.arange(0, BLOCK_T)
            mask = (t < T)[:, None] & dmask[None, :]
            carry += tl.sum(tl.load(v_base + t[:, None] * v_st + d[None, :], mask=mask, other=0.0).to(tl.float32),
                            axis=0)
        carry = carry / T
    for t0 in range(0, T, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        mask = (t < T)[:, None] & dmask[None, :]
        s = tl.load(s_base + t[:, None] * s_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * v_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        out = b * s + a * v
        if CENTRE == 1:
            running = tl.cumsum(v, axis=0) + carry[None, :]
            carry += tl.sum(v, axis=0)
            out -= g * running / (t + 1).to(tl.float32)[:, None]
        if CENTRE == 2:
            out -= g * carry[None, :]
        if HAS_M:
            out += e * tl.load(m_base + t[:, None] * m_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(o_base + t[:, None] * o_st + d[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _mix_bwd(grad_ptr, s_ptr, v_ptr, m_ptr, gs_ptr, gv_ptr, gm_ptr, part_ptr, a_ptr, b_ptr, g_ptr, scale_ptr,
             mg_ptr, scale_const, mg_const, H, T, D,
             gr_sb, gr_sh, gr_st, s_sb, s_sh, s_st, v_sb, v_sh, v_st, m_sb, m_sh, m_st,
             gs_sb, gs_sh, gs_st, gv_sb, gv_sh, gv_st, gm_sb, gm_sh, gm_st,
             CENTRE: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_M: tl.constexpr,
             HAS_MG: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    bi, h = pid // H, pid % H
    a, b, g = _gains(a_ptr, b_ptr, g_ptr, scale_ptr, h, scale_const, CENTRE, HAS_SCALE)
    e = _scalar(mg_ptr, mg_const, HAS_MG)
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    gr_base, s_base = grad_ptr + bi * gr_sb + h * gr_sh, s_ptr + bi * s_sb + h * s_sh
    v_base, m_base = v_ptr + bi * v_sb + h * v_sh, m_ptr + bi * m_sb + h * m_sh
    gs_base, gv_base, gm_base = gs_ptr + bi * gs_sb + h * gs_sh, gv_ptr + bi * gv_sb + h * gv_sh, \
        gm_ptr + bi * gm_sb + h * gm_sh
    ps = tl.zeros([BLOCK_D], dtype=tl.float32)
    pv = tl.zeros([BLOCK_D], dtype=tl.float32)
    pc = tl.zeros([BLOCK_D], dtype=tl.float32)
    pm = tl.zeros([BLOCK_D], dtype=tl.float32)
    col_g = tl.zeros([BLOCK_D], dtype=tl.float32)  # bidirectional: sum_t G_t / T, what every row of C^T G is
    if CENTRE == 2:
        col_v = tl.zeros([BLOCK_D], dtype=tl.float32)
        for t0 in range(0, T, BLOCK_T):
            t = t0 + tl.arange(0, BLOCK_T)
            mask = (t < T)[:, None] & dmask[None, :]
            col_g += tl.sum(tl.load(gr_base + t[:, None] * gr_st + d[None, :], mask=mask, other=0.0)
                            .to(tl.float32), axis=0)
            col_v += tl.sum(tl.load(v_base + t[:, None] * v_st + d[None, :], mask=mask, other=0.0)
                            .to(tl.float32), axis=0)
        col_g = col_g / T
        pc = col_g * col_v  # sum_t G_t . mean(V) = (sum_t G_t / T) . sum_s V_s
    carry = tl.zeros([BLOCK_D], dtype=tl.float32)  # causal: sum over later tiles of G_t / (t + 1)
    n_tiles = tl.cdiv(T, BLOCK_T)
    for i in range(0, n_tiles):
        t = (n_tiles - 1 - i) * BLOCK_T + tl.arange(0, BLOCK_T)  # back to front: C^T G is a suffix sum
        mask = (t < T)[:, None] & dmask[None, :]
        grad = tl.load(gr_base + t[:, None] * gr_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        s = tl.load(s_base + t[:, None] * s_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_base + t[:, None] * v_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
        ps += tl.sum(grad * s, axis=0)
        pv += tl.sum(grad * v, axis=0)
        grad_v = a * grad
        if CENTRE == 1:
            weighted = grad / (t + 1).to(tl.float32)[:, None]
            tile_total = tl.sum(weighted, axis=0)
            suffix = tile_total[None, :] - tl.cumsum(weighted, axis=0) + weighted + carry[None, :]
            carry += tile_total
            pc += tl.sum(v * suffix, axis=0)
            grad_v -= g * suffix
        if CENTRE == 2:
            grad_v -= g * col_g[None, :]
        tl.store(gs_base + t[:, None] * gs_st + d[None, :], (b * grad).to(gs_ptr.dtype.element_ty), mask=mask)
        tl.store(gv_base + t[:, None] * gv_st + d[None, :], grad_v.to(gv_ptr.dtype.element_ty), mask=mask)
        if HAS_M:
            m = tl.load(m_base + t[:, None] * m_st + d[None, :], mask=mask, other=0.0).to(tl.float32)
            pm += tl.sum(grad * m, axis=0)
            tl.store(gm_base + t[:, None] * gm_st + d[None, :], (e * grad).to(gm_ptr.dtype.element_ty), mask=mask)
    base = part_ptr + pid * 4
    tl.store(base + 0, tl.sum(ps, axis=0))
    tl.store(base + 1, tl.sum(pv, axis=0))
    tl.store(base + 2, tl.sum(pc, axis=0))
    tl.store(base + 3, tl.sum(pm, axis=0))


@triton.jit
def _mix_gains_bwd(part_ptr, a_ptr, b_ptr, g_ptr, scale_ptr, ga_ptr, gb_ptr, gg_ptr, gscale_ptr, gmg_ptr,
                   scale_const, B, H, CENTRE: tl.constexpr, HAS_SCALE: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """The gains' gradients from the (B, H, 4) partial sums, deterministically (no atomics)."""
    hs = tl.arange(0, BLOCK_H)
    hmask = hs < H
    ps = tl.zeros([BLOCK_H], dtype=tl.float32)
    pv = tl.zeros([BLOCK_H], dtype=tl.float32)
    pc = tl.zeros([BLOCK_H], dtype=tl.float32)
    pm = tl.zeros([BLOCK_H], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        mask = (bs < B)[:, None] & hmask[None, :]
        base = part_ptr + (bs[:, None] * H + hs[None, :]) * 4
        ps += tl.sum(tl.load(base + 0, mask=mask, other=0.0), axis=0)
        pv += tl.sum(tl.load(base + 1, mask=mask, other=0.0), axis=0)
        pc += tl.sum(tl.load(base + 2, mask=mask, other=0.0), axis=0)
        pm += tl.sum(tl.load(base + 3, mask=mask, other=0.0), axis=0)
    sc = _scalar(scale_ptr, scale_const, HAS_SCALE)
    a = tl.load(a_ptr + hs, mask=hmask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + hs, mask=hmask, other=0.0).to(tl.float32)
    tl.store(ga_ptr + hs, sc * pv, mask=hmask)
    tl.store(gb_ptr + hs, sc * ps, mask=hmask)
    unscaled = b * ps + a * pv
    if CENTRE != 0:
        g = tl.load(g_ptr + hs, mask=hmask, other=0.0).to(tl.float32)
        tl.store(gg_ptr + hs, -sc * pc, mask=hmask)
        unscaled -= g * pc
    tl.store(gscale_ptr, tl.sum(unscaled, axis=0))
    tl.store(gmg_ptr, tl.sum(pm, axis=0))


@triton.jit
def _gain_sum_fwd(x_ptr, y_ptr, out_ptr, a_ptr, b_ptr, a_const, b_const, N, HAS_A: tl.constexpr,
                  HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    """out = a x + b y over N contiguous elements (a block's gained residual sum)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = _scalar(a_ptr, a_const, HAS_A)
    b = _scalar(b_ptr, b_const, HAS_B)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (a * x + b * y).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gain_sum_bwd(grad_ptr, x_ptr, y_ptr, gx_ptr, gy_ptr, part_ptr, a_ptr, b_ptr, a_const, b_const, N,
                  HAS_A: tl.constexpr, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    """dx = a G, dy = b G, and per program the partial sums of G.x and G.y (the gains' gradients)."""
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = _scalar(a_ptr, a_const, HAS_A)
    b = _scalar(b_ptr, b_const, HAS_B)
    grad = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(gx_ptr + offs, (a * grad).to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gy_ptr + offs, (b * grad).to(gy_ptr.dtype.element_ty), mask=mask)
    if HAS_A:
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(part_ptr + pid * 2, tl.sum(grad * x, axis=0))
    if HAS_B:
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(part_ptr + pid * 2 + 1, tl.sum(grad * y, axis=0))


@triton.jit
def _gain_sum_finish(part_ptr, ga_ptr, gb_ptr, P, HAS_A: tl.constexpr, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    """The gains' gradients: the programs' partial sums added up in one program (deterministic, no atomics)."""
    acc_a = tl.zeros([BLOCK], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK], dtype=tl.float32)
    for p0 in range(0, P, BLOCK):
        p = p0 + tl.arange(0, BLOCK)
        mask = p < P
        if HAS_A:
            acc_a += tl.load(part_ptr + p * 2, mask=mask, other=0.0)
        if HAS_B:
            acc_b += tl.load(part_ptr + p * 2 + 1, mask=mask, other=0.0)
    if HAS_A:
        tl.store(ga_ptr, tl.sum(acc_a, axis=0))
    if HAS_B:
        tl.store(gb_ptr, tl.sum(acc_b, axis=0))
