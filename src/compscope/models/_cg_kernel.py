"""Fused CPU kernel (numba) of a CG potential without message passing: prior plus CGnet-style MLP, energies and
analytic forces of B molecules in one call.

For a few beads, autograd through :class:`~compscope.models.CGPrior` and :class:`~compscope.models.CGFeatureNet`
is about a thousand tensor operations per MD step, each on a handful of numbers: the cost is dispatch, not
arithmetic. This kernel loops over molecules once, computes every term and its derivative in registers and
backpropagates the MLP by hand:

- bonds and repulsion: ``dE/dr`` along the unit pair vector;
- angles ``theta = atan2(|a x b|, a.b)``: ``dtheta/da = ((a.b)/|a|^2 a - b)/|a x b|`` (and a <-> b);
- dihedrals: the gradient of Blondel & Karplus (J. Comput. Chem. 17, 1132 (1996), eqs. 25-27);
- two-dimensional torsion terms ``sum a_mn cos(m phi + n psi) + b_mn sin(m phi + n psi)``: ``cos(k phi)`` and
  ``sin(k phi)`` by the angle-addition recurrence (two trigonometric calls per dihedral, not two per mode), then
  ``dE/dphi`` and ``dE/dpsi`` through the dihedral gradients;
- the MLP: ``dE/dz`` by the chain rule through its layers, then through the standardised features (distances,
  angle cosines ``dcos/da = b/(|a||b|) - cos a/|a|^2``, dihedral cos/sin).

It computes the same function as the autograd path (tests compare energies and forces in float32 and float64).

:func:`fused_md_steps` runs whole chunks of MD steps (velocity Verlet or Langevin BAOAB, the arithmetic of
``compscope.md``'s dense integrators, the thermostat's normal draws passed in) inside one compiled loop with the
MLP in numba too: for the few replicas of a long CG run the per-step cost is then the arithmetic, not the ~20
tensor operations and kernel calls of one Python-level step.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch

from compscope.errors import ConfigError

__all__ = ["fused_cg_energy_forces", "fused_md_steps", "pack_cg"]

_FASTMATH = {"reassoc", "contract", "nsz"}  # no 'nnan'/'ninf': NaN must still reach the stability monitors


@nb.njit(cache=True, inline="always")
def _cross(a0, a1, a2, b0, b1, b2):
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@nb.njit(cache=True, fastmath=_FASTMATH)
def _dihedral_grad(x, q, out):
    """phi of quadruple q (as ``compscope.models.dihedral_angles``) and d phi / d x of its 4 beads into out (4, 3)."""
    i, j, k, m = q[0], q[1], q[2], q[3]
    f0, f1, f2 = x[i, 0] - x[j, 0], x[i, 1] - x[j, 1], x[i, 2] - x[j, 2]  # F = r_i - r_j
    g0, g1, g2 = x[j, 0] - x[k, 0], x[j, 1] - x[k, 1], x[j, 2] - x[k, 2]  # G = r_j - r_k
    h0, h1, h2 = x[m, 0] - x[k, 0], x[m, 1] - x[k, 1], x[m, 2] - x[k, 2]  # H = r_l - r_k
    a0, a1, a2 = _cross(f0, f1, f2, g0, g1, g2)  # A = F x G
    b0, b1, b2 = _cross(h0, h1, h2, g0, g1, g2)  # B = H x G
    aa = a0 * a0 + a1 * a1 + a2 * a2
    bb = b0 * b0 + b1 * b1 + b2 * b2
    gn = math.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
    # phi: the angle between the planes (F, G) and (G, H), IUPAC sign
    c0, c1, c2 = _cross(b0, b1, b2, a0, a1, a2)
    sin_phi = (c0 * g0 + c1 * g1 + c2 * g2) / gn
    cos_phi = a0 * b0 + a1 * b1 + a2 * b2
    phi = math.atan2(sin_phi, cos_phi)
    fg = f0 * g0 + f1 * g1 + f2 * g2
    hg = h0 * g0 + h1 * g1 + h2 * g2
    sa, sb = gn / aa, gn / bb
    ta, tb = fg / (aa * gn), hg / (bb * gn)
    for d, (av, bv) in enumerate(((a0, b0), (a1, b1), (a2, b2))):
        out[0, d] = -sa * av
        out[3, d] = sb * bv
        out[1, d] = sa * av + ta * av - tb * bv
        out[2, d] = -sb * bv - ta * av + tb * bv
    return phi


@nb.njit(cache=True, fastmath=_FASTMATH)
def _harmonics(angle, cs, sn):  # pragma: no cover - numba
    """cs[k] = cos(k angle), sn[k] = sin(k angle) for k = 0..len(cs)-1 by the angle-addition recurrence."""
    c1, s1 = math.cos(angle), math.sin(angle)
    cs[0], sn[0] = 1.0, 0.0
    for k in range(1, cs.shape[0]):
        cs[k] = cs[k - 1] * c1 - sn[k - 1] * s1
        sn[k] = sn[k - 1] * c1 + cs[k - 1] * s1


@nb.njit(cache=True, fastmath=_FASTMATH)
def _prior(x, bonds, b_r0, b_k, angles, a_t0, a_k, rep, r_sig, r_eps, dih, d_cos, d_sin, cmap, c_cos, c_sin,
           energy, forces):  # pragma: no cover - numba
    """Prior energies (B,) and forces (B, n, 3) (overwritten)."""
    n_mol, n = x.shape[0], x.shape[1]
    dd = np.zeros((4, 3), x.dtype)
    de2 = np.zeros((4, 3), x.dtype)
    k_max = c_cos.shape[1] - 1  # dense modes: m = 0..K, n = -K..K
    cp, sp = np.zeros(k_max + 1, x.dtype), np.zeros(k_max + 1, x.dtype)
    cq, sq = np.zeros(2 * k_max + 1, x.dtype), np.zeros(2 * k_max + 1, x.dtype)
    for mol in range(n_mol):
        xm = x[mol]
        fm = forces[mol]
        for a in range(n):
            fm[a, 0] = 0.0
            fm[a, 1] = 0.0
            fm[a, 2] = 0.0
        e = 0.0
        # ---- prior: bonds and repulsion (functions of a distance)
        for t in range(bonds.shape[0]):
            i, j = bonds[t, 0], bonds[t, 1]
            d0, d1, d2 = xm[j, 0] - xm[i, 0], xm[j, 1] - xm[i, 1], xm[j, 2] - xm[i, 2]
            r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            e += 0.5 * b_k[t] * (r - b_r0[t]) ** 2
            g = b_k[t] * (r - b_r0[t]) / r
            fm[i, 0] += g * d0
            fm[i, 1] += g * d1
            fm[i, 2] += g * d2
            fm[j, 0] -= g * d0
            fm[j, 1] -= g * d1
            fm[j, 2] -= g * d2
        for t in range(rep.shape[0]):
            i, j = rep[t, 0], rep[t, 1]
            d0, d1, d2 = xm[j, 0] - xm[i, 0], xm[j, 1] - xm[i, 1], xm[j, 2] - xm[i, 2]
            r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            s6 = (r_sig[t] / r) ** 6
            e += r_eps[t] * s6
            g = -6.0 * r_eps[t] * s6 / (r * r)
            fm[i, 0] += g * d0
            fm[i, 1] += g * d1
            fm[i, 2] += g * d2
            fm[j, 0] -= g * d0
            fm[j, 1] -= g * d1
            fm[j, 2] -= g * d2
        # ---- prior: angles
        for t in range(angles.shape[0]):
            i, j, k = angles[t, 0], angles[t, 1], angles[t, 2]
            a0, a1, a2 = xm[i, 0] - xm[j, 0], xm[i, 1] - xm[j, 1], xm[i, 2] - xm[j, 2]
            c0, c1, c2 = xm[k, 0] - xm[j, 0], xm[k, 1] - xm[j, 1], xm[k, 2] - xm[j, 2]
            u0, u1, u2 = _cross(a0, a1, a2, c0, c1, c2)
            s = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
            ac = a0 * c0 + a1 * c1 + a2 * c2
            th = math.atan2(s, ac)
            dedt = a_k[t] * (th - a_t0[t])
            e += 0.5 * a_k[t] * (th - a_t0[t]) ** 2
            aa = a0 * a0 + a1 * a1 + a2 * a2
            cc = c0 * c0 + c1 * c1 + c2 * c2
            for d, (av, cv) in enumerate(((a0, c0), (a1, c1), (a2, c2))):
                ga = dedt * (ac / aa * av - cv) / s
                gc = dedt * (ac / cc * cv - av) / s
                fm[i, d] -= ga
                fm[k, d] -= gc
                fm[j, d] += ga + gc
        # ---- prior: dihedral Fourier terms
        for t in range(dih.shape[0]):
            phi = _dihedral_grad(xm, dih[t], dd)
            de = 0.0
            for h in range(d_cos.shape[1]):
                nh = h + 1.0
                e += d_cos[t, h] * math.cos(nh * phi) + d_sin[t, h] * math.sin(nh * phi)
                de += nh * (-d_cos[t, h] * math.sin(nh * phi) + d_sin[t, h] * math.cos(nh * phi))
            for r4 in range(4):
                for d in range(3):
                    fm[dih[t, r4], d] -= de * dd[r4, d]
        # ---- prior: two-dimensional torsion terms
        for t in range(cmap.shape[0]):
            phi = _dihedral_grad(xm, cmap[t, :4], dd)
            psi = _dihedral_grad(xm, cmap[t, 4:], de2)
            _harmonics(phi, cp, sp)
            _harmonics(psi, cq[k_max:], sq[k_max:])
            for j in range(1, k_max + 1):  # negative n: cos(-n psi) = cos(n psi), sin(-n psi) = -sin(n psi)
                cq[k_max - j] = cq[k_max + j]
                sq[k_max - j] = -sq[k_max + j]
            dphi, dpsi = 0.0, 0.0
            for m in range(k_max + 1):
                cm, sm = cp[m], sp[m]
                gm = 0.0
                for j in range(2 * k_max + 1):
                    a, b = c_cos[t, m, j], c_sin[t, m, j]
                    c = cm * cq[j] - sm * sq[j]  # cos(m phi + n psi), n = j - K
                    s = sm * cq[j] + cm * sq[j]
                    e += a * c + b * s
                    g = b * c - a * s  # d/dtheta
                    gm += g
                    dpsi += (j - k_max) * g
                dphi += m * gm
            for r4 in range(4):
                for d in range(3):
                    fm[cmap[t, r4], d] -= dphi * dd[r4, d]
                    fm[cmap[t, 4 + r4], d] -= dpsi * de2[r4, d]
        energy[mol] = e


@nb.njit(cache=True, fastmath=_FASTMATH)
def _features(x, pairs, f_angles, f_dih, mean, std, z):  # pragma: no cover - numba
    """Standardised features (B, F) of CGFeatureNet into z: pair distances, angle cosines, dihedral cos, sin."""
    dd = np.zeros((4, 3), x.dtype)
    n_p, n_a, n_d = pairs.shape[0], f_angles.shape[0], f_dih.shape[0]
    for mol in range(x.shape[0]):
        xm = x[mol]
        f = 0
        for t in range(n_p):
            i, j = pairs[t, 0], pairs[t, 1]
            d0, d1, d2 = xm[j, 0] - xm[i, 0], xm[j, 1] - xm[i, 1], xm[j, 2] - xm[i, 2]
            z[mol, f] = (math.sqrt(d0 * d0 + d1 * d1 + d2 * d2) - mean[f]) / std[f]
            f += 1
        for t in range(n_a):
            i, j, k = f_angles[t, 0], f_angles[t, 1], f_angles[t, 2]
            a0, a1, a2 = xm[i, 0] - xm[j, 0], xm[i, 1] - xm[j, 1], xm[i, 2] - xm[j, 2]
            c0, c1, c2 = xm[k, 0] - xm[j, 0], xm[k, 1] - xm[j, 1], xm[k, 2] - xm[j, 2]
            cos_t = (a0 * c0 + a1 * c1 + a2 * c2) / math.sqrt((a0 * a0 + a1 * a1 + a2 * a2)
                                                               * (c0 * c0 + c1 * c1 + c2 * c2))
            z[mol, f] = (cos_t - mean[f]) / std[f]
            f += 1
        for t in range(n_d):
            phi = _dihedral_grad(xm, f_dih[t], dd)
            z[mol, f + t] = (math.cos(phi) - mean[f + t]) / std[f + t]
            z[mol, f + n_d + t] = (math.sin(phi) - mean[f + n_d + t]) / std[f + n_d + t]


@nb.njit(cache=True, fastmath=_FASTMATH)
def _feature_forces(x, pairs, f_angles, f_dih, std, dz, forces):  # pragma: no cover - numba
    """Add -dE/dx to forces (B, n, 3) given dE/dz (B, F) of the standardised features."""
    dd = np.zeros((4, 3), x.dtype)
    n_p, n_a, n_d = pairs.shape[0], f_angles.shape[0], f_dih.shape[0]
    for mol in range(x.shape[0]):
        xm = x[mol]
        fm = forces[mol]
        f = 0
        for t in range(n_p):
            i, j = pairs[t, 0], pairs[t, 1]
            d0, d1, d2 = xm[j, 0] - xm[i, 0], xm[j, 1] - xm[i, 1], xm[j, 2] - xm[i, 2]
            g = dz[mol, f] / std[f] / math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            fm[i, 0] += g * d0
            fm[i, 1] += g * d1
            fm[i, 2] += g * d2
            fm[j, 0] -= g * d0
            fm[j, 1] -= g * d1
            fm[j, 2] -= g * d2
            f += 1
        for t in range(n_a):
            i, j, k = f_angles[t, 0], f_angles[t, 1], f_angles[t, 2]
            a0, a1, a2 = xm[i, 0] - xm[j, 0], xm[i, 1] - xm[j, 1], xm[i, 2] - xm[j, 2]
            c0, c1, c2 = xm[k, 0] - xm[j, 0], xm[k, 1] - xm[j, 1], xm[k, 2] - xm[j, 2]
            aa = a0 * a0 + a1 * a1 + a2 * a2
            cc = c0 * c0 + c1 * c1 + c2 * c2
            nac = math.sqrt(aa * cc)
            cos_t = (a0 * c0 + a1 * c1 + a2 * c2) / nac
            g = dz[mol, f] / std[f]
            for d, (av, cv) in enumerate(((a0, c0), (a1, c1), (a2, c2))):
                ga = g * (cv / nac - cos_t * av / aa)
                gc = g * (av / nac - cos_t * cv / cc)
                fm[i, d] -= ga
                fm[k, d] -= gc
                fm[j, d] += ga + gc
            f += 1
        for t in range(n_d):
            phi = _dihedral_grad(xm, f_dih[t], dd)
            de = (-math.sin(phi) * dz[mol, f + t] / std[f + t]
                  + math.cos(phi) * dz[mol, f + n_d + t] / std[f + n_d + t])
            for r4 in range(4):
                for d in range(3):
                    fm[f_dih[t, r4], d] -= de * dd[r4, d]


def pack_cg(model, dtype: torch.dtype) -> tuple:
    """The kernel's arguments (numpy arrays in ``dtype``) from a :class:`~compscope.models.CGPotential` without a
    message-passing network."""
    np_dt = np.float64 if dtype == torch.float64 else np.float32

    def f(t):
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(np_dt))

    def i(t, w):
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.int64).reshape(-1, w))

    p = model.prior
    m = p.dihedral_cos.shape[1]
    dih = p.dihedrals if m else p.dihedrals[:0]
    cmap, (c_cos, c_sin) = p.cmap if len(p.cmap_modes) else p.cmap[:0], _dense_modes(p, np_dt)
    args = [i(p.bonds, 2), f(p.bond_r0), f(p.bond_k), i(p.angles, 3), f(p.angle_theta0), f(p.angle_k),
            i(p.repulsion_pairs, 2), f(p.repulsion_sigma), f(p.repulsion_epsilon), i(dih, 4),
            f(p.dihedral_cos).reshape(len(dih), m), f(p.dihedral_sin).reshape(len(dih), m), i(cmap, 8),
            c_cos[:len(cmap)], c_sin[:len(cmap)]]
    net = model.feature_net
    if net is None:
        return tuple(args), None
    lin = [m for m in net.mlp if isinstance(m, torch.nn.Linear)]
    act = "tanh" if isinstance(net.mlp[1], torch.nn.Tanh) else "silu"
    layers = [(m.weight.detach().to(dtype).T.contiguous(), m.bias.detach().to(dtype)) for m in lin]  # z @ W + b
    scale = float(model.energy_scale)
    return tuple(args), (i(net.pairs, 2), i(net.angles, 3), i(net.dihedrals, 4), f(net.feature_mean),
                         f(net.feature_std), layers, act, scale)


def _dense_modes(prior, np_dt) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D torsion coefficients on a dense grid (C, K+1, 2K+1) of modes m = 0..K, n = -K..K (zeros where the
    prior has no mode; a mode with m < 0 is stored as (-m, -n) with its sine coefficient negated)."""
    modes = prior.cmap_modes.cpu().numpy().reshape(-1, 2)
    k = int(np.abs(modes).max()) if len(modes) else 0
    n_c = len(prior.cmap)
    a = np.zeros((n_c, k + 1, 2 * k + 1))
    b = np.zeros((n_c, k + 1, 2 * k + 1))
    ca = prior.cmap_cos.detach().cpu().double().numpy().reshape(n_c, len(modes))
    cb = prior.cmap_sin.detach().cpu().double().numpy().reshape(n_c, len(modes))
    for p, (mm, nn) in enumerate(modes):
        sign = 1.0 if mm >= 0 else -1.0
        mm, nn = (mm, nn) if mm >= 0 else (-mm, -nn)
        a[:, mm, nn + k] += ca[:, p]
        b[:, mm, nn + k] += sign * cb[:, p]
    return np.ascontiguousarray(a.astype(np_dt)), np.ascontiguousarray(b.astype(np_dt))


def _mlp(z: torch.Tensor, layers: list, act: str, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (B,) of the MLP on standardised features z (B, F) times ``scale``, and dE/dz (B, F): batched
    matrix products forward, the chain rule backward (torch: its thread setting holds, no autograd graph)."""
    hs, h = [], z
    for w, b in layers[:-1]:
        u = torch.addmm(b, h, w)
        if act == "tanh":
            h = torch.tanh(u)
            hs.append((h, None))
        else:
            sg = torch.sigmoid(u)
            h = u * sg
            hs.append((u, sg))
    w, b = layers[-1]
    e = torch.addmm(b, h, w)[:, 0]
    g = (scale * w[:, 0]).expand(h.shape)  # dE/dh of the last hidden layer
    for (w, _), (hv, sg) in zip(reversed(layers[:-1]), reversed(hs)):
        g = g * (1.0 - hv * hv) if act == "tanh" else g * (sg * (1.0 + hv * (1.0 - sg)))
        g = g @ w.T
    return scale * e, g


def fused_cg_energy_forces(x: torch.Tensor, packed: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (B,) and forces (B, n, 3) of frames ``x`` (B, n, 3) from :func:`pack_cg` arguments."""
    xn = np.ascontiguousarray(x.detach().numpy())
    energy = np.empty(xn.shape[0], xn.dtype)
    forces = np.empty_like(xn)
    prior, net = packed
    _prior(xn, *prior, energy, forces)
    if net is not None:
        pairs, angles, dih, mean, std, layers, act, scale = net
        z = np.empty((xn.shape[0], len(mean)), xn.dtype)
        _features(xn, pairs, angles, dih, mean, std, z)
        with torch.no_grad():
            e_net, dz = _mlp(torch.from_numpy(z), layers, act, scale)
        energy += e_net.numpy()
        _feature_forces(xn, pairs, angles, dih, std, np.ascontiguousarray(dz.numpy()), forces)
    return torch.from_numpy(energy), torch.from_numpy(forces)


@nb.njit(cache=True, fastmath=_FASTMATH)
def _mlp_nb(z, ws, wts, bs, tanh, scale, us, hs, gs, energy, dz):  # pragma: no cover - numba
    """Numba twin of :func:`_mlp`: ``energy += scale * MLP(z)`` and ``dz = dE/dz`` for all rows of z (B, F), layer
    by layer as matrix products (BLAS through ``np.dot``). ws/wts/bs: per layer (in, out) weights, their
    transposes and (out,) biases; us/hs/gs: per hidden layer (B, width) buffers of pre-activations, activations
    and gradients. At least one hidden layer."""
    n_l, n_b = len(ws), z.shape[0]
    for ll in range(n_l - 1):
        u, h, bias = us[ll], hs[ll], bs[ll]
        np.dot(z if ll == 0 else hs[ll - 1], ws[ll], u)
        for b in range(n_b):
            for j in range(u.shape[1]):
                v = u[b, j] + bias[j]
                u[b, j] = v
                h[b, j] = math.tanh(v) if tanh else v / (1.0 + math.exp(-v))
    w_last, h, g = ws[n_l - 1], hs[n_l - 2], gs[n_l - 2]
    for b in range(n_b):
        e = bs[n_l - 1][0]
        for i in range(w_last.shape[0]):
            e += h[b, i] * w_last[i, 0]
            g[b, i] = scale * w_last[i, 0]
        energy[b] += scale * e
    for ll in range(n_l - 2, -1, -1):
        u, h, g = us[ll], hs[ll], gs[ll]
        for b in range(n_b):
            for j in range(u.shape[1]):
                if tanh:
                    g[b, j] *= 1.0 - h[b, j] * h[b, j]
                else:
                    sg = 1.0 / (1.0 + math.exp(-u[b, j]))
                    g[b, j] *= sg * (1.0 + u[b, j] * (1.0 - sg))
        np.dot(g, wts[ll], dz if ll == 0 else gs[ll - 1])


@nb.njit(cache=True)
def _md_steps(steps, x, p, f, e, m, sigma, act, xi, dt, langevin, c1, prior, net, ws, wts, bs, tanh, scale, z, dz,
              us, hs, gs):  # pragma: no cover - numba
    """``steps`` steps of the dense integrators in place (x, p, f (B, n, 3); e (B,); m, sigma (B, n, 1); act (B,)
    bool; xi (steps, B, n, 3) normal draws, read only with ``langevin``): velocity Verlet ``B A(dt) B`` or BAOAB
    ``B A O A B`` with ``compscope.md``'s operation order (no fastmath here), forces of a stopped replica zero."""
    h = 0.5 * dt
    n_mol, n = x.shape[0], x.shape[1]
    for s in range(steps):
        for b in range(n_mol):
            for a in range(n):
                for d in range(3):
                    p[b, a, d] = p[b, a, d] + h * f[b, a, d]
                    if langevin:
                        x[b, a, d] = x[b, a, d] + h * p[b, a, d] / m[b, a, 0]
                        noise = sigma[b, a, 0] * xi[s, b, a, d] if act[b] else 0.0
                        p[b, a, d] = c1 * p[b, a, d] + noise
                        x[b, a, d] = x[b, a, d] + h * p[b, a, d] / m[b, a, 0]
                    else:
                        x[b, a, d] = x[b, a, d] + dt * p[b, a, d] / m[b, a, 0]
        _prior(x, *prior, e, f)
        _features(x, *net, z)
        _mlp_nb(z, ws, wts, bs, tanh, scale, us, hs, gs, e, dz)
        _feature_forces(x, net[0], net[1], net[2], net[4], dz, f)
        for b in range(n_mol):
            for a in range(n):
                for d in range(3):
                    if not act[b]:
                        f[b, a, d] = 0.0
                    p[b, a, d] = p[b, a, d] + h * f[b, a, d]


def fused_md_steps(x: torch.Tensor, p: torch.Tensor, f: torch.Tensor, active: torch.Tensor, packed: tuple, *,
                   dt: float, masses: torch.Tensor, langevin: bool = False, c1: float = 1.0,
                   sigma: torch.Tensor | None = None, noise: torch.Tensor | None = None, steps: int = 0):
    """``steps`` MD steps of B replicas (x, p, f (B, n, 3), active (B, 1, 1)) with the potential of :func:`pack_cg`
    arguments ``packed``; returns new ``(x, p, f, energy)`` tensors (the inputs are not modified), or None for a
    potential this loop does not cover (no MLP, or one without hidden layers). ``dt`` in ASE time units, masses
    (B, n, 1) amu; Langevin: ``c1``, per-atom noise amplitude ``sigma`` (B, n, 1) and the normal draws ``noise``
    (steps, B, n, 3) of the thermostat. Same arithmetic as the step-by-step dense integrators."""
    prior, net = packed
    if net is None or len(net[5]) < 2:
        return None
    np_dt = x.numpy().dtype

    def arr(t):
        return np.array(t.detach().numpy(), dtype=np_dt, order="C", copy=True)

    xn, pn, fn = arr(x), arr(p), arr(f)
    b = xn.shape[0]
    e = np.zeros(b, np_dt)
    m = arr(masses)
    sg = arr(sigma) if langevin else np.zeros_like(m)
    xi = arr(noise) if langevin else np.zeros((0, *xn.shape), np_dt)  # velocity Verlet draws nothing
    if langevin and xi.shape != (steps, *xn.shape):
        raise ConfigError(f"noise of shape {tuple(xi.shape)} for {steps} steps of {tuple(xn.shape)} frames",
                          hint="pass one (B, n, 3) draw per step (LangevinBAOAB.fused_args makes them)")
    act = np.ascontiguousarray(active.reshape(-1).numpy().astype(np.bool_))
    pairs, angles, dih, mean, std, layers, act_name, scale = net
    ws = tuple(np.ascontiguousarray(w.numpy()) for w, _ in layers)
    wts = tuple(np.ascontiguousarray(w.T) for w in ws)
    bs = tuple(np.ascontiguousarray(bb.numpy()) for _, bb in layers)
    widths, n_feat = [w.shape[1] for w in ws[:-1]], len(mean)
    z, dz = np.zeros((b, n_feat), np_dt), np.zeros((b, n_feat), np_dt)
    us = tuple(np.zeros((b, w), np_dt) for w in widths)
    hs = tuple(np.zeros((b, w), np_dt) for w in widths)
    gs = tuple(np.zeros((b, w), np_dt) for w in widths)
    _md_steps(int(steps), xn, pn, fn, e, m, sg, act, xi, float(dt), bool(langevin), float(c1), prior,
              (pairs, angles, dih, mean, std), ws, wts, bs, act_name == "tanh", float(scale), z, dz, us, hs, gs)
    return torch.from_numpy(xn), torch.from_numpy(pn), torch.from_numpy(fn), torch.from_numpy(e)
