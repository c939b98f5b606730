"""The potential energy of an OpenMM ``System`` evaluated for a whole batch of configurations by numba kernels.

For a molecule of a few dozen atoms, OpenMM's per-call cost (``setPositions`` + ``getState`` through the Python
wrappers, about 35 µs for alanine dipeptide on the Reference platform) is far larger than the arithmetic (a few
hundred terms). Samplers that evaluate hundreds of proposals per step (:mod:`compscope.sampling`) therefore spend
most of their time crossing the OpenMM boundary. :class:`SystemEnergy` reads the force parameters of the System
once and evaluates **the same function** for a batch in one call (numba, one pass over the terms per
configuration, analytic forces):

- ``HarmonicBondForce``: ``E = k/2 (r - r0)^2``;
- ``HarmonicAngleForce``: ``E = k/2 (theta - theta0)^2``;
- ``PeriodicTorsionForce``: ``E = k (1 + cos(n phi - phi0))`` (IUPAC dihedral, OpenMM's convention);
- ``NonbondedForce`` with ``NoCutoff``: Coulomb ``ONE_4PI_EPS0 q_i q_j / r`` and Lennard-Jones
  ``4 eps ((sigma/r)^12 - (sigma/r)^6)`` over every pair, Lorentz-Berthelot combination, the exceptions' own
  ``(q_i q_j, sigma, eps)`` replacing the combined ones (zero for excluded pairs, scaled for 1-4 pairs);
  the dispersion correction and reaction field only act with cutoffs (OpenMM ignores them here, so do we);
- ``CustomGBForce``, only OpenMM's OBC2 (``implicit/obc2.xml``; Onufriev, Bashford & Case 2004) with its
  default settings: the HCT descreening integral ``I_i = sum_{j != i} g(r_ij, or_i, sr_j)``, the Born radius
  ``B_i = 1 / (1/or_i - tanh(psi - 0.8 psi^2 + 4.85 psi^3) / rho_i)`` (``psi = I_i or_i``, ``rho_i = or_i +
  0.009 nm``), the self and pair GB terms ``-k (1 - 1/78.5) q_i q_j / f_GB`` (``f_GB = sqrt(r^2 + B_i B_j
  exp(-r^2 / (4 B_i B_j)))``, self terms with half the weight and ``f_GB = B_i``) and the ACE surface term
  ``28.39 (rho_i + 0.14)^2 (rho_i / B_i)^6``; analytic forces (direct terms, then the chain rule through
  every Born radius). The force's expressions are compared with that function term by term and any other
  CustomGBForce is refused;
- ``CMMotionRemover``: no energy.

Any other force, a periodic system, a cutoff method, virtual sites, per-particle parameter offsets or global
parameters of the nonbonded force are refused (:class:`OpenMMSystemError`): the kernels would silently compute
another function. Tests compare energies and forces with OpenMM's Reference platform on random conformations,
in float64 (relative 1e-9) and float32.

Units are OpenMM's (nm, kJ/mol, kJ/mol/nm); callers convert at their boundary. The kernels compute in the dtype
of the positions (float32 or float64). :class:`SystemPotential` is that boundary for compscope's MD engine: the
dense-potential contract of :func:`compscope.md.simulate_dense` (``energy_forces(x (R, n, 3))`` in Å, eV, eV/Å,
torch tensors), so R replicas of a small OpenMM molecule step with one numba call per step.

Examples:
    >>> from compscope.integrations.openmm_systems import alanine_dipeptide_system  # doctest: +SKIP
    >>> pdb, system = alanine_dipeptide_system(constraints=None)  # doctest: +SKIP
    >>> e, f = SystemEnergy(system).energy_forces(x_nm)  # (batch,) kJ/mol, (batch, 22, 3) kJ/mol/nm  # doctest: +SKIP
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch
from ase import units

from compscope.errors import CompscopeError

__all__ = ["SystemEnergy", "SystemPotential", "OpenMMSystemError", "ONE_4PI_EPS0"]

#: 1 / (4 pi eps0) in kJ nm / (mol e^2), OpenMM's value (``SimTKOpenMMRealType.h``, CODATA 2018 since OpenMM 8)
ONE_4PI_EPS0 = 138.93545764438198


class OpenMMSystemError(CompscopeError):
    """The OpenMM System has a force or setting :class:`SystemEnergy` does not implement."""


_SUPPORTED = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
              "CMMotionRemover", "CustomGBForce")


@nb.njit(cache=True, fastmath={"contract"}, error_model="numpy")  # x/0 gives inf/NaN, as in OpenMM
def _kernel(x, bonds, bond_p, angles, angle_p, torsions, torsion_p, pairs, pair_p, want_forces, energy, forces):
    """Energy (batch,) and, with ``want_forces``, forces (batch, n, 3) of every configuration of ``x`` in place.

    ``bond_p`` (nb, 2): r0, k; ``angle_p`` (na, 2): theta0, k; ``torsion_p`` (nt, 3): n, phi0, k;
    ``pair_p`` (np, 3): ONE_4PI_EPS0 q_i q_j, sigma, 4 eps."""
    zero = x.dtype.type(0.0)
    one = x.dtype.type(1.0)
    half = x.dtype.type(0.5)
    for b in range(x.shape[0]):
        xb = x[b]
        fb = forces[b]
        e = zero
        if want_forces:
            fb[:] = zero
        for t in range(bonds.shape[0]):
            i, j = bonds[t, 0], bonds[t, 1]
            dx, dy, dz = xb[j, 0] - xb[i, 0], xb[j, 1] - xb[i, 1], xb[j, 2] - xb[i, 2]
            r = math.sqrt(dx * dx + dy * dy + dz * dz)
            dr = r - bond_p[t, 0]
            e += half * bond_p[t, 1] * dr * dr
            if want_forces:
                g = bond_p[t, 1] * dr / r  # dE/dr / r
                fb[i, 0] += g * dx
                fb[i, 1] += g * dy
                fb[i, 2] += g * dz
                fb[j, 0] -= g * dx
                fb[j, 1] -= g * dy
                fb[j, 2] -= g * dz
        for t in range(angles.shape[0]):
            i, j, k = angles[t, 0], angles[t, 1], angles[t, 2]
            ux, uy, uz = xb[i, 0] - xb[j, 0], xb[i, 1] - xb[j, 1], xb[i, 2] - xb[j, 2]
            vx, vy, vz = xb[k, 0] - xb[j, 0], xb[k, 1] - xb[j, 1], xb[k, 2] - xb[j, 2]
            px, py, pz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx  # u x v
            pn = math.sqrt(px * px + py * py + pz * pz)
            dot = ux * vx + uy * vy + uz * vz
            theta = math.atan2(pn, dot)
            d = theta - angle_p[t, 0]
            e += half * angle_p[t, 1] * d * d
            if want_forces:
                dE = angle_p[t, 1] * d
                pn = max(pn, x.dtype.type(1e-6))
                uu = ux * ux + uy * uy + uz * uz
                vv = vx * vx + vy * vy + vz * vz
                # with p = u x v: dtheta/du = (u x p) / (|u|^2 |p|), dtheta/dv = -(v x p) / (|v|^2 |p|)
                ca = -dE / (uu * pn)
                cc = dE / (vv * pn)
                fix = ca * (uy * pz - uz * py)
                fiy = ca * (uz * px - ux * pz)
                fiz = ca * (ux * py - uy * px)
                fkx = cc * (vy * pz - vz * py)
                fky = cc * (vz * px - vx * pz)
                fkz = cc * (vx * py - vy * px)
                fb[i, 0] += fix
                fb[i, 1] += fiy
                fb[i, 2] += fiz
                fb[k, 0] += fkx
                fb[k, 1] += fky
                fb[k, 2] += fkz
                fb[j, 0] -= fix + fkx
                fb[j, 1] -= fiy + fky
                fb[j, 2] -= fiz + fkz
        for t in range(torsions.shape[0]):
            i, j, k, l = torsions[t, 0], torsions[t, 1], torsions[t, 2], torsions[t, 3]
            # b0 = x_i - x_j, b1 = x_k - x_j, b2 = x_l - x_k (the IUPAC dihedral of compscope.analysis)
            fx, fy, fz = xb[i, 0] - xb[j, 0], xb[i, 1] - xb[j, 1], xb[i, 2] - xb[j, 2]
            gx, gy, gz = xb[j, 0] - xb[k, 0], xb[j, 1] - xb[k, 1], xb[j, 2] - xb[k, 2]
            hx, hy, hz = xb[l, 0] - xb[k, 0], xb[l, 1] - xb[k, 1], xb[l, 2] - xb[k, 2]
            ax, ay, az = fy * gz - fz * gy, fz * gx - fx * gz, fx * gy - fy * gx  # A = F x G
            cx, cy, cz = hy * gz - hz * gy, hz * gx - hx * gz, hx * gy - hy * gx  # B = H x G
            aa = ax * ax + ay * ay + az * az
            cc2 = cx * cx + cy * cy + cz * cz
            gn = math.sqrt(gx * gx + gy * gy + gz * gz)
            # phi = atan2(((B x A) . G) / |G|, A . B): positive when the k-l bond is rotated clockwise from i-j
            bax, bay, baz = cy * az - cz * ay, cz * ax - cx * az, cx * ay - cy * ax
            sin_ = (bax * gx + bay * gy + baz * gz) / gn
            cos_ = ax * cx + ay * cy + az * cz
            phi = math.atan2(sin_, cos_)
            per, phase, kt = torsion_p[t, 0], torsion_p[t, 1], torsion_p[t, 2]
            arg = per * phi - phase
            e += kt * (one + math.cos(arg))
            if want_forces:
                dE = -kt * per * math.sin(arg)  # dE/dphi
                aa = max(aa, x.dtype.type(1e-30))
                cc2 = max(cc2, x.dtype.type(1e-30))
                # Blondel & Karplus (1996), J. Comput. Chem. 17, 1132: dphi/dx_i = -|G| A / |A|^2,
                # dphi/dx_l = |G| B / |B|^2, the middle atoms from F.G and H.G
                s1 = -gn / aa
                s4 = gn / cc2
                fg = (fx * gx + fy * gy + fz * gz) / (aa * gn)
                hg = (hx * gx + hy * gy + hz * gz) / (cc2 * gn)
                d1x, d1y, d1z = s1 * ax, s1 * ay, s1 * az
                d4x, d4y, d4z = s4 * cx, s4 * cy, s4 * cz
                d2x = -d1x + fg * ax - hg * cx
                d2y = -d1y + fg * ay - hg * cy
                d2z = -d1z + fg * az - hg * cz
                d3x = -d4x - fg * ax + hg * cx
                d3y = -d4y - fg * ay + hg * cy
                d3z = -d4z - fg * az + hg * cz
                fb[i, 0] -= dE * d1x
                fb[i, 1] -= dE * d1y
                fb[i, 2] -= dE * d1z
                fb[j, 0] -= dE * d2x
                fb[j, 1] -= dE * d2y
                fb[j, 2] -= dE * d2z
                fb[k, 0] -= dE * d3x
                fb[k, 1] -= dE * d3y
                fb[k, 2] -= dE * d3z
                fb[l, 0] -= dE * d4x
                fb[l, 1] -= dE * d4y
                fb[l, 2] -= dE * d4z
        for t in range(pairs.shape[0]):
            i, j = pairs[t, 0], pairs[t, 1]
            dx, dy, dz = xb[j, 0] - xb[i, 0], xb[j, 1] - xb[i, 1], xb[j, 2] - xb[i, 2]
            r2 = dx * dx + dy * dy + dz * dz
            inv_r2 = one / r2
            inv_r = math.sqrt(inv_r2)
            s2 = pair_p[t, 1] * pair_p[t, 1] * inv_r2
            s6 = s2 * s2 * s2
            coul = pair_p[t, 0] * inv_r
            lj = pair_p[t, 2] * (s6 * s6 - s6)
            e += coul + lj
            if want_forces:
                g = (coul + pair_p[t, 2] * (12.0 * s6 * s6 - 6.0 * s6)) * inv_r2  # -dE/dr / r
                fb[i, 0] -= g * dx
                fb[i, 1] -= g * dy
                fb[i, 2] -= g * dz
                fb[j, 0] += g * dx
                fb[j, 1] += g * dy
                fb[j, 2] += g * dz
        energy[b] = e


# The OBC2 CustomGBForce of OpenMM's ``implicit/obc2.xml`` (``openmm.app.internal.customgbforces.GBSAOBC2Force``
# with its defaults: solute dielectric 1, solvent 78.5, no salt, ACE surface term), expression by expression: the
# only CustomGBForce SystemEnergy evaluates. (kind, name, expression); computed-value kinds 0 = SingleParticle,
# 2 = ParticlePairNoExclusions, energy-term kinds the same.
_OBC2_COMPUTED = (
    ("I", "select(step(r+sr2-or1), 0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r), 0);"
          "U=r+sr2;L=max(or1, D);D=abs(r-sr2)", 2),
    ("B", "1/(1/or-tanh(psi-0.8*psi^2+4.85*psi^3)/radius);psi=I*or; radius=or+offset; offset=0.009", 0),
)
_OBC2_ENERGY = (
    ("-0.5*138.935485*(1/soluteDielectric-1/solventDielectric)*charge^2/B; solventDielectric=78.5; "
     "soluteDielectric=1; kappa=0; offset=0.008999999999999999", 0),
    ("28.3919551*(radius+0.14)^2*(radius/B)^6; radius=or+offset; solventDielectric=78.5; soluteDielectric=1; "
     "kappa=0; offset=0.008999999999999999", 0),
    ("-138.935485*(1/soluteDielectric-1/solventDielectric)*charge1*charge2/f;f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)));"
     " solventDielectric=78.5; soluteDielectric=1; kappa=0; offset=0.008999999999999999", 2),
)
_OBC2_PARTICLE = ("charge", "or", "sr")
#: the constants of those expressions: Coulomb constant (kJ nm / (mol e^2), the value written in obc2.xml's
#: expressions, not ONE_4PI_EPS0), dielectrics, the offset (nm) between "or" and the atomic radius, the ACE surface
#: energy constant (kJ/mol/nm^2 x 4 pi) and the solvent probe radius (nm)
_OBC2_COULOMB, _OBC2_EPS_IN, _OBC2_EPS_OUT, _OBC2_OFFSET, _OBC2_ACE, _OBC2_PROBE = (
    138.935485, 1.0, 78.5, 0.009, 28.3919551, 0.14)


@nb.njit(cache=True, fastmath={"contract"}, error_model="numpy", inline="always")
def _hct(r, inv_r, o, s, want_derivative, zero, one):
    """``(g, dg/dr)``: the HCT descreening of an atom of offset radius ``o`` by one of scaled radius ``s`` at
    distance ``r`` (the computed value ``I`` of OBC2: ``select(step(r+sr2-or1), ..., 0)``, ``L = max(or1, |r -
    sr2|)``, ``U = r + sr2``)."""
    if r + s - o < zero:  # step(x) is 1 at x = 0, as OpenMM's
        return zero, zero
    half = one / (one + one)
    quarter = half * half
    d = r - s
    if abs(d) > o:  # L = |r - sr|
        ll = abs(d)
        dl = one if d > zero else -one
    else:  # L = or
        ll = o
        dl = zero
    inv_u = one / (r + s)
    inv_l = one / ll
    h = r - s * s * inv_r
    k = inv_u * inv_u - inv_l * inv_l
    lg = math.log(ll * inv_u)
    g = half * (inv_l - inv_u + quarter * h * k + half * lg * inv_r)
    if not want_derivative:
        return g, zero
    dg = half * (-dl * inv_l * inv_l + inv_u * inv_u + quarter * (one + s * s * inv_r * inv_r) * k
                 + half * h * (dl * inv_l * inv_l * inv_l - inv_u * inv_u * inv_u)
                 + half * ((dl * inv_l - inv_u) - lg * inv_r) * inv_r)
    return g, dg


@nb.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _gb_kernel(x, q, orad, srad, gb_c, want_forces, energy, forces):
    """Add the OBC2 generalised-Born energy (and forces) of every configuration of ``x`` to ``energy``/``forces``.

    ``q``, ``orad``, ``srad`` (n,): the CustomGBForce's per-particle ``charge``, ``or`` (offset radius), ``sr``
    (scaled offset radius). ``gb_c`` (4,): ``-0.5 * coulomb * (1/eps_in - 1/eps_out)``, the offset, the ACE
    constant, the probe radius. One pass over the unordered pairs gives the HCT integrals ``I_i = sum_{j != i}
    g(r_ij, or_i, sr_j)`` (both directions of a pair share its distance) and their derivatives; then the OBC2 Born
    radii ``B_i``, the self and surface terms; a second pass the GB pair terms (energy, direct forces, their
    ``dE/dB``); a third the forces, direct plus the chain rule through every Born radius
    (``dE/dx = sum_i dE/dB_i dB_i/dI_i dI_i/dx``)."""
    n = x.shape[1]
    zero = x.dtype.type(0.0)
    one = x.dtype.type(1.0)
    half = x.dtype.type(0.5)
    two = x.dtype.type(2.0)
    four = x.dtype.type(4.0)
    c_self, offset, ace, probe = gb_c[0], gb_c[1], gb_c[2], gb_c[3]
    c_pair = two * c_self
    a1, a2 = x.dtype.type(0.8), x.dtype.type(4.85)
    n_pairs = n * (n - 1) // 2
    integ = np.empty(n, dtype=x.dtype)
    born = np.empty(n, dtype=x.dtype)
    dedb = np.empty(n, dtype=x.dtype)
    dedi = np.empty(n, dtype=x.dtype)
    pd = np.empty((n_pairs, 3), dtype=x.dtype)  # x_j - x_i of pair p = (i < j)
    pr = np.empty((n_pairs, 2), dtype=x.dtype)  # r^2, 1/r
    pg = np.empty((n_pairs, 3), dtype=x.dtype)  # dI_i/dr, dI_j/dr, direct dE/dr / r of the GB pair term
    for b in range(x.shape[0]):
        xb = x[b]
        fb = forces[b]
        integ[:] = zero
        p = 0
        for i in range(n):
            for j in range(i + 1, n):
                dx, dy, dz = xb[j, 0] - xb[i, 0], xb[j, 1] - xb[i, 1], xb[j, 2] - xb[i, 2]
                r2 = dx * dx + dy * dy + dz * dz
                r = math.sqrt(r2)
                inv_r = one / r
                pd[p, 0], pd[p, 1], pd[p, 2] = dx, dy, dz
                pr[p, 0], pr[p, 1] = r2, inv_r
                g1, dg1 = _hct(r, inv_r, orad[i], srad[j], want_forces, zero, one)
                g2, dg2 = _hct(r, inv_r, orad[j], srad[i], want_forces, zero, one)
                integ[i] += g1
                integ[j] += g2
                pg[p, 0], pg[p, 1] = dg1, dg2
                p += 1
        e = zero
        for i in range(n):
            oi = orad[i]
            rad = oi + offset
            psi = integ[i] * oi
            t = math.tanh(psi - a1 * psi * psi + a2 * psi * psi * psi)
            bi = one / (one / oi - t / rad)
            born[i] = bi
            e_self = c_self * q[i] * q[i] / bi
            w = rad / bi
            w3 = w * w * w
            e_sa = ace * (rad + probe) * (rad + probe) * w3 * w3
            e += e_self + e_sa
            dedb[i] = -(e_self + x.dtype.type(6.0) * e_sa) / bi
            # dB/dI = B^2 sech^2(u) (du/dpsi) or / radius, u = psi - 0.8 psi^2 + 4.85 psi^3, psi = I or
            dedi[i] = born[i] * born[i] * (one - t * t) * (one - two * a1 * psi + x.dtype.type(3.0) * a2 * psi * psi) \
                * oi / rad
        p = 0
        for i in range(n):
            for j in range(i + 1, n):
                r2 = pr[p, 0]
                bb = born[i] * born[j]
                ex = math.exp(-r2 / (four * bb))
                f2 = r2 + bb * ex
                ep = c_pair * q[i] * q[j] / math.sqrt(f2)
                e += ep
                if want_forces:
                    de_df2 = -half * ep / f2  # dE/d(f^2)
                    d_bb = de_df2 * ex * (one + r2 / (four * bb))  # dE/d(B_i B_j)
                    dedb[i] += d_bb * born[j]
                    dedb[j] += d_bb * born[i]
                    pg[p, 2] = de_df2 * (two - half * ex)  # dE/dr / r (d(f^2)/dr = r (2 - ex/2))
                p += 1
        energy[b] += e
        if not want_forces:
            continue
        for i in range(n):
            dedi[i] *= dedb[i]  # dE/dI_i
        p = 0
        for i in range(n):
            for j in range(i + 1, n):
                g = pg[p, 2] + (dedi[i] * pg[p, 0] + dedi[j] * pg[p, 1]) * pr[p, 1]  # dE/dr_ij / r_ij
                dx, dy, dz = g * pd[p, 0], g * pd[p, 1], g * pd[p, 2]
                fb[i, 0] += dx
                fb[i, 1] += dy
                fb[i, 2] += dz
                fb[j, 0] -= dx
                fb[j, 1] -= dy
                fb[j, 2] -= dz
                p += 1


def _force_parameters(system) -> dict:
    """Every term of ``system`` as index and parameter arrays (float64, OpenMM units); refuses what the kernels
    do not implement."""
    import openmm as mm

    n = system.getNumParticles()
    if system.usesPeriodicBoundaryConditions():
        raise OpenMMSystemError("SystemEnergy: the system is periodic", hint="use a non-periodic System (NoCutoff)")
    if any(system.isVirtualSite(i) for i in range(n)):
        raise OpenMMSystemError("SystemEnergy: the system has virtual sites", hint="evaluate it with OpenMM")
    names = [type(f).__name__ for f in system.getForces()]
    other = sorted(set(names) - set(_SUPPORTED))
    if other:
        raise OpenMMSystemError(f"SystemEnergy cannot evaluate {', '.join(other)}",
                                hint=f"supported forces: {', '.join(_SUPPORTED)}; evaluate this system with OpenMM")
    bonds, bond_p, angles, angle_p, tors, tors_p = [], [], [], [], [], []
    gb = [_obc2_parameters(f) for f in system.getForces() if isinstance(f, mm.CustomGBForce)]
    if len(gb) > 1:
        raise OpenMMSystemError("SystemEnergy: more than one CustomGBForce", hint="evaluate this system with OpenMM")
    if gb and len(gb[0]["gb_q"]) != n:
        raise OpenMMSystemError(f"SystemEnergy: the CustomGBForce has {len(gb[0]['gb_q'])} particles, the system {n}",
                                hint="add every particle to the CustomGBForce")
    pair_params: dict[tuple[int, int], tuple[float, float, float]] = {}
    n_nonbonded = 0
    for f in system.getForces():
        if isinstance(f, mm.HarmonicBondForce):
            for t in range(f.getNumBonds()):
                i, j, r0, k = f.getBondParameters(t)
                bonds.append((i, j))
                bond_p.append((r0._value, k._value))
        elif isinstance(f, mm.HarmonicAngleForce):
            for t in range(f.getNumAngles()):
                i, j, k, a0, ka = f.getAngleParameters(t)
                angles.append((i, j, k))
                angle_p.append((a0._value, ka._value))
        elif isinstance(f, mm.PeriodicTorsionForce):
            for t in range(f.getNumTorsions()):
                i, j, k, l_, per, ph, kt = f.getTorsionParameters(t)
                tors.append((i, j, k, l_))
                tors_p.append((float(per), ph._value, kt._value))
        elif isinstance(f, mm.NonbondedForce):
            n_nonbonded += 1
            if f.getNonbondedMethod() != mm.NonbondedForce.NoCutoff:
                raise OpenMMSystemError("SystemEnergy: the NonbondedForce uses a cutoff method",
                                        hint="only nonbondedMethod=NoCutoff is implemented")
            if f.getNumParticleParameterOffsets() or f.getNumExceptionParameterOffsets() or f.getNumGlobalParameters():
                raise OpenMMSystemError("SystemEnergy: the NonbondedForce has parameter offsets or global parameters",
                                        hint="evaluate this system with OpenMM")
            p = [f.getParticleParameters(i) for i in range(n)]
            q = np.array([a[0]._value for a in p])
            sig = np.array([a[1]._value for a in p])
            eps = np.array([a[2]._value for a in p])
            for i in range(n):
                for j in range(i + 1, n):
                    pair_params[(i, j)] = (q[i] * q[j], 0.5 * (sig[i] + sig[j]), math.sqrt(eps[i] * eps[j]))
            for t in range(f.getNumExceptions()):
                i, j, qq, s, ep = f.getExceptionParameters(t)
                pair_params[(min(i, j), max(i, j))] = (qq._value, s._value, ep._value)
    if n_nonbonded > 1:
        raise OpenMMSystemError("SystemEnergy: more than one NonbondedForce", hint="evaluate this system with OpenMM")
    keys = sorted(k for k, v in pair_params.items() if v[0] != 0.0 or v[2] != 0.0)
    pairs = [(i, j) for i, j in keys]
    pair_p = [(ONE_4PI_EPS0 * pair_params[k][0], pair_params[k][1], 4.0 * pair_params[k][2]) for k in keys]

    def idx(rows, width):
        return np.asarray(rows, dtype=np.int64).reshape(-1, width)

    def par(rows, width):
        return np.asarray(rows, dtype=np.float64).reshape(-1, width)

    return {"bonds": idx(bonds, 2), "bond_p": par(bond_p, 2), "angles": idx(angles, 3), "angle_p": par(angle_p, 2),
            "torsions": idx(tors, 4), "torsion_p": par(tors_p, 3), "pairs": idx(pairs, 2), "pair_p": par(pair_p, 3),
            **(gb[0] if gb else {})}


def _norm(expression: str) -> str:
    return "".join(expression.split())


def _obc2_parameters(force) -> dict:
    """Per-particle parameters of an OBC2 ``CustomGBForce`` (``gb_q``, ``gb_or``, ``gb_sr``, ``gb_c``); refuses a
    force whose expressions, kinds, parameters or settings differ from :data:`_OBC2_COMPUTED`/:data:`_OBC2_ENERGY`
    (it would be another function)."""
    import openmm as mm

    hint = "only OpenMM's implicit/obc2.xml (OBC2, default dielectrics, no salt, NoCutoff) is implemented"
    computed = tuple(tuple(force.getComputedValueParameters(i)) for i in range(force.getNumComputedValues()))
    terms = tuple(tuple(force.getEnergyTermParameters(i)) for i in range(force.getNumEnergyTerms()))
    same = (len(computed) == len(_OBC2_COMPUTED) and len(terms) == len(_OBC2_ENERGY)
            and all(a[0] == b[0] and _norm(a[1]) == _norm(b[1]) and int(a[2]) == b[2]
                    for a, b in zip(computed, _OBC2_COMPUTED))
            and all(_norm(a[0]) == _norm(b[0]) and int(a[1]) == b[1] for a, b in zip(terms, _OBC2_ENERGY)))
    if not same:
        raise OpenMMSystemError("SystemEnergy: the CustomGBForce is not OpenMM's OBC2 (its computed values or energy "
                                "terms differ)", hint=hint)
    names = tuple(force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters()))
    if names != _OBC2_PARTICLE:
        raise OpenMMSystemError(f"SystemEnergy: the CustomGBForce has per-particle parameters {names}, not "
                                f"{_OBC2_PARTICLE}", hint=hint)
    if (force.getNumGlobalParameters() or force.getNumTabulatedFunctions() or force.getNumExclusions()
            or force.getNumEnergyParameterDerivatives()):
        raise OpenMMSystemError("SystemEnergy: the CustomGBForce has global parameters, tabulated functions, "
                                "exclusions or parameter derivatives", hint=hint)
    if force.getNonbondedMethod() != mm.CustomGBForce.NoCutoff:
        raise OpenMMSystemError("SystemEnergy: the CustomGBForce uses a cutoff method", hint=hint)
    p = np.array([force.getParticleParameters(i) for i in range(force.getNumParticles())], dtype=np.float64)
    if len(p) and not (p[:, 1] > 0).all():
        raise OpenMMSystemError("SystemEnergy: the CustomGBForce has non-positive radii", hint=hint)
    c_self = -0.5 * _OBC2_COULOMB * (1.0 / _OBC2_EPS_IN - 1.0 / _OBC2_EPS_OUT)
    return {"gb_q": p[:, 0].copy(), "gb_or": p[:, 1].copy(), "gb_sr": p[:, 2].copy(),
            "gb_c": np.array([c_self, _OBC2_OFFSET, _OBC2_ACE, _OBC2_PROBE])}


#: batches from this size on are split over numba's threads (``numba.get_num_threads()``; compscope sets it with
#: ``--threads`` / ``COMPSCOPE_NUM_THREADS``): one chunk of replicas per thread, each through the serial kernels
#: (replicas are independent, so the result is bitwise the serial one); smaller batches stay serial (a parallel
#: region costs ~10-20 us, a 22-atom configuration ~20 us)
PARALLEL_MIN_BATCH = 16


@nb.njit(cache=True, parallel=True)
def _kernels_parallel(n_chunks, has_gb, x, bonds, bond_p, angles, angle_p, torsions, torsion_p, pairs, pair_p, q,
                      orad, srad, gb_c, want_forces, energy, forces):  # pragma: no cover - numba
    n_b = x.shape[0]
    for c in nb.prange(n_chunks):
        lo, hi = c * n_b // n_chunks, (c + 1) * n_b // n_chunks
        _kernel(x[lo:hi], bonds, bond_p, angles, angle_p, torsions, torsion_p, pairs, pair_p, want_forces,
                energy[lo:hi], forces[lo:hi])
        if has_gb:
            _gb_kernel(x[lo:hi], q, orad, srad, gb_c, want_forces, energy[lo:hi], forces[lo:hi])


class SystemEnergy:
    """The potential energy of an OpenMM ``System`` for batches of configurations (numba; module docstring).

    Args:
        system: an ``openmm.System`` or its XML.

    Shapes:
        positions (batch, n, 3) nm (or one configuration (n, 3)); energy (batch,) kJ/mol; forces (batch, n, 3)
        kJ/mol/nm, in the dtype of the positions (float32 or float64).
    """

    def __init__(self, system):
        import openmm as mm

        if isinstance(system, str):
            system = mm.XmlSerializer.deserialize(system)
        self.n_particles = int(system.getNumParticles())
        self._p64 = _force_parameters(system)
        self._p32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in self._p64.items()}

    @property
    def n_terms(self) -> dict:
        """Number of bonds, angles, torsions and nonbonded pairs evaluated."""
        out = {k: len(self._p64[k]) for k in ("bonds", "angles", "torsions", "pairs")}
        if "gb_q" in self._p64:
            out["gb_particles"] = len(self._p64["gb_q"])
        return out

    def _run(self, x, want_forces: bool):
        x = np.asarray(x)
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.n_particles, 3):
            raise OpenMMSystemError(f"positions of shape {x.shape}; the system has {self.n_particles} particles",
                                    hint=f"pass (batch, {self.n_particles}, 3) in nm")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        x = np.ascontiguousarray(x)
        p = self._p32 if x.dtype == np.float32 else self._p64
        energy = np.empty(len(x), dtype=x.dtype)
        forces = np.empty_like(x) if want_forces else np.empty((len(x), 0, 3), dtype=x.dtype)
        threads = nb.get_num_threads()
        if threads > 1 and len(x) >= PARALLEL_MIN_BATCH:
            has_gb = "gb_q" in p
            gb = [p[k] if has_gb else np.zeros(1, x.dtype) for k in ("gb_q", "gb_or", "gb_sr", "gb_c")]
            _kernels_parallel(min(threads, len(x)), has_gb, x, p["bonds"], p["bond_p"], p["angles"], p["angle_p"],
                              p["torsions"], p["torsion_p"], p["pairs"], p["pair_p"], *gb, want_forces, energy, forces)
        else:
            _kernel(x, p["bonds"], p["bond_p"], p["angles"], p["angle_p"], p["torsions"], p["torsion_p"],
                    p["pairs"], p["pair_p"], want_forces, energy, forces)
            if "gb_q" in p:
                _gb_kernel(x, p["gb_q"], p["gb_or"], p["gb_sr"], p["gb_c"], want_forces, energy, forces)
        if single:
            return energy[0], forces[0] if want_forces else None
        return energy, forces if want_forces else None

    def energy(self, x) -> np.ndarray:
        """Potential energy (batch,) in kJ/mol of positions (batch, n, 3) in nm."""
        return self._run(x, False)[0]

    def energy_forces(self, x) -> tuple[np.ndarray, np.ndarray]:
        """``(energy (batch,) kJ/mol, forces (batch, n, 3) kJ/mol/nm)`` of positions (batch, n, 3) in nm."""
        return self._run(x, True)


class SystemPotential(torch.nn.Module):
    """An OpenMM ``System`` as a dense compscope potential: :class:`SystemEnergy` in compscope units.

    ``energy_forces(x)`` takes positions (R, n, 3) in Å (torch) and returns energies (R,) in eV and forces
    (R, n, 3) in eV/Å, in the dtype of ``x``: the contract of :func:`compscope.md.simulate_dense`. Every pair of the
    molecule is evaluated (no cutoff); ``cutoff`` (1 Å) is only the radius of the MD engine's bookkeeping graph,
    which this potential never reads. ``forward(graph)`` is not implemented: use the dense engine.

    Args:
        system: an ``openmm.System`` (or its XML) that :class:`SystemEnergy` evaluates.
        dtype: the dtype the MD engine runs in by default (``torch.float64`` or ``torch.float32``).
    """

    #: eV per kJ/mol
    KJ_PER_MOL = units.kJ / units.mol

    def __init__(self, system, dtype: torch.dtype = torch.float64):
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise OpenMMSystemError(f"SystemPotential runs in float32 or float64, not {dtype}")
        self.system_energy = SystemEnergy(system)
        self.n_particles = self.system_energy.n_particles
        self.cutoff = 1.0
        # an empty parameter that only carries the default dtype (the MD engine reads it from parameters())
        self._dtype = torch.nn.Parameter(torch.zeros(0, dtype=dtype), requires_grad=False)

    def energy_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(energy (R,) eV, forces (R, n, 3) eV/Å)`` of positions ``x`` (R, n, 3) in Å."""
        xa = x.detach().cpu().numpy()
        e, f = self.system_energy.energy_forces(xa * xa.dtype.type(0.1))  # Å -> nm, dtype kept
        k = self.KJ_PER_MOL
        return (torch.from_numpy(np.asarray(e * e.dtype.type(k))).to(x.device),
                torch.from_numpy(f * f.dtype.type(0.1 * k)).to(x.device))

    def forward(self, graph, compute_forces: bool = True, compute_stress: bool = False):
        raise OpenMMSystemError("SystemPotential has no graph interface: it evaluates whole molecules",
                                hint="run it with compscope.md.simulate_dense (energy_forces)")
