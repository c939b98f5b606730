"""Integrators in init/apply style over a batch of replicas: NVE velocity Verlet, Langevin BAOAB, NHC.

Every integrator has ``init(state) -> state`` (sets up its thermostat variables) and
``apply(state, evaluate) -> state`` (one time step; ``evaluate`` is a :class:`ForceEvaluator`), and
``conserved(state) -> (G,)`` for the quantity that should stay constant (``None`` for Langevin).
Velocity Verlet and Langevin BAOAB also have ``step_dense``: the same step on dense ``(R, n, 3)`` tensors of R
copies of one small molecule, for :func:`compscope.md.simulate_dense` (no graph, no state object per step; same
arithmetic and the same random stream as ``apply``).
Time steps are given in fs and converted with ``ase.units.fs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from ase import units

from ._checks import MDInputError
from ._state import MDState, degrees_of_freedom, kinetic_energy

__all__ = ["Integrator", "VelocityVerlet", "LangevinBAOAB", "NoseHooverChain", "StochasticCellRescaling",
           "make_integrator"]

Evaluate = Callable[[MDState], MDState]
EnergyForces = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``x (R, n, 3) -> (energy (R,), forces (R, n, 3))``: a dense potential (see :func:`compscope.md.simulate_dense`)."""


class Integrator:
    """Base class. ``removed_dof`` is 3 when the integrator conserves total momentum (zero at start)."""

    removed_dof: int = 3
    name: str = "base"

    def __init__(self, dt: float):
        if not dt > 0:
            raise MDInputError(f"time step dt must be > 0 fs, got {dt}")
        self.dt_fs = float(dt)
        self.dt = self.dt_fs * units.fs  # ASE time units

    def init(self, state: MDState) -> MDState:
        return state

    def apply(self, state: MDState, evaluate: Evaluate) -> MDState:  # pragma: no cover
        raise NotImplementedError

    def conserved(self, state: MDState) -> torch.Tensor | None:
        """Potential + kinetic energy per replica (G,), eV; subclasses add thermostat terms."""
        return state.energy + kinetic_energy(state.momenta, state.masses, state.batch, state.num_graphs)

    # thermostat target temperature (K) per replica; None for NVE
    temperature_K: float | None = None

    def rng_state(self) -> torch.Tensor | None:
        return None

    def set_rng_state(self, s: torch.Tensor | None) -> None:
        return None

    def config(self) -> dict:
        return {"name": self.name, "dt": self.dt_fs}

    def dense_setup(self, masses: torch.Tensor) -> None:
        """Precompute per-atom constants of :meth:`step_dense` for masses (R, n, 1) amu."""
        self.dense_masses = masses

    def step_dense(self, x: torch.Tensor, p: torch.Tensor, f: torch.Tensor, energy_forces: EnergyForces,
                   active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of R replicas held in dense tensors; returns ``(x, p, f, energy)``.

        Shapes:
            x, p, f: (R, n, 3) Å, amu·Å/t_ase, eV/Å; active: (R, 1, 1) bool (a stopped replica has zero momenta
            and masked forces, so it stays where it is); energy: (R,) eV. Call :meth:`dense_setup` first.
        """
        raise MDInputError(f"the {self.name} integrator has no dense step",
                           hint="use the langevin or nve integrator, or compscope.md.simulate")

    def fused_args(self, steps: int, x: torch.Tensor) -> dict | None:
        """Constants (and, for a thermostat, the next ``steps`` noise draws) for a potential that runs several
        dense steps in one compiled loop (``dense_md_steps``), or None where this integrator has no such form.
        Drawing the noise advances the generator exactly as ``steps`` calls of :meth:`step_dense`."""
        return None

    def _kick(self, state: MDState, h: float) -> torch.Tensor:
        return state.momenta + h * state.forces

    def _drift(self, state: MDState, h: float) -> MDState:
        pos = state.positions + h * state.momenta / state.masses[:, None]
        return state.replace(graph=state.graph.with_positions(pos))


class VelocityVerlet(Integrator):
    """Velocity Verlet (NVE): ``p += dt/2 F; x += dt p/m; F = F(x); p += dt/2 F``.

    Args:
        dt: time step, fs.
    """

    name = "nve"

    def apply(self, state: MDState, evaluate: Evaluate) -> MDState:
        state = state.replace(momenta=self._kick(state, 0.5 * self.dt))
        state = evaluate(self._drift(state, self.dt))
        return state.replace(momenta=self._kick(state, 0.5 * self.dt), step=state.step + 1)

    def fused_args(self, steps, x):
        return {"dt": self.dt, "masses": self.dense_masses, "steps": int(steps)}

    def step_dense(self, x, p, f, energy_forces, active):
        h = 0.5 * self.dt
        p = p + h * f
        x = x + self.dt * p / self.dense_masses
        e, f = energy_forces(x)
        f = torch.where(active, f, 0.0)
        return x, p + h * f, f, e


class LangevinBAOAB(Integrator):
    """Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews, AMRX 2013, eq. 2.9).

    ``B``: ``p += dt/2 F``; ``A``: ``x += dt/2 p/m``; ``O``: ``p = c1 p + sqrt((1 - c1^2) m kT) xi`` with
    ``c1 = exp(-gamma dt)``; then ``A``, force, ``B``.

    Args:
        dt: time step, fs.
        temperature: K (a scalar; every replica is held at it).
        friction: gamma in 1/fs (0.01 = 1/(100 fs)).
        seed: seed of the thermostat's random numbers.

    Notes:
        The O step does not conserve momentum, so temperatures use 3n degrees of freedom.
    """

    name = "langevin"
    removed_dof = 0

    def __init__(self, dt: float, temperature: float, friction: float = 0.01, seed: int = 0):
        super().__init__(dt)
        if temperature < 0:
            raise MDInputError(f"temperature must be >= 0 K, got {temperature}")
        if friction < 0:
            raise MDInputError(f"friction must be >= 0 1/fs, got {friction}")
        self.temperature_K = float(temperature)
        self.friction = float(friction)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.c1 = math.exp(-self.friction * self.dt_fs)
        self.c2 = math.sqrt(max(0.0, 1.0 - self.c1**2))

    def apply(self, state: MDState, evaluate: Evaluate) -> MDState:
        h = 0.5 * self.dt
        state = state.replace(momenta=self._kick(state, h))
        state = self._drift(state, h)
        m = state.masses
        xi = torch.randn(m.shape[0], 3, generator=self.generator, dtype=torch.float64).to(
            device=m.device, dtype=m.dtype
        )
        act = state.active[state.batch][:, None]
        noise = torch.where(act, self.c2 * torch.sqrt(m * units.kB * self.temperature_K)[:, None] * xi, 0.0)
        state = state.replace(momenta=self.c1 * state.momenta + noise)
        state = evaluate(self._drift(state, h))
        return state.replace(momenta=self._kick(state, h), step=state.step + 1)

    def dense_setup(self, masses: torch.Tensor) -> None:
        super().dense_setup(masses)
        # the same per-atom noise amplitude as apply: c2 sqrt(m kT)
        self.dense_sigma = self.c2 * torch.sqrt(masses * units.kB * self.temperature_K)  # (R, n, 1)

    def step_dense(self, x, p, f, energy_forces, active):
        # B A O A B with the arithmetic of apply, so that both give the same trajectory for the same forces
        h = 0.5 * self.dt
        m = self.dense_masses
        p = p + h * f
        x = x + h * p / m
        xi = torch.randn(x.shape[0] * x.shape[1], 3, generator=self.generator, dtype=torch.float64).to(
            device=x.device, dtype=x.dtype).view(x.shape)  # the draws of apply, in the same order
        p = self.c1 * p + torch.where(active, self.dense_sigma * xi, 0.0)
        x = x + h * p / m
        e, f = energy_forces(x)
        f = torch.where(active, f, 0.0)
        return x, p + h * f, f, e

    def fused_args(self, steps, x):
        noise = torch.empty(steps, x.shape[0] * x.shape[1], 3, dtype=torch.float64)
        for s in range(steps):  # one draw per step, as step_dense makes them
            torch.randn(x.shape[0] * x.shape[1], 3, generator=self.generator, dtype=torch.float64, out=noise[s])
        return {"dt": self.dt, "masses": self.dense_masses, "steps": int(steps), "langevin": True, "c1": self.c1,
                "sigma": self.dense_sigma, "noise": noise.to(dtype=x.dtype).view(steps, *x.shape)}

    def conserved(self, state: MDState) -> torch.Tensor | None:
        return None

    def rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, s: torch.Tensor | None) -> None:
        if s is not None:
            self.generator.set_state(s)

    def config(self) -> dict:
        return {**super().config(), "temperature": self.temperature_K, "friction": self.friction, "seed": self.seed}


class NoseHooverChain(Integrator):
    """Nosé-Hoover chain thermostat (deterministic NVT), one chain per replica.

    Trotter splitting ``NHC(dt/2) . VelocityVerlet(dt) . NHC(dt/2)`` with the chain propagator of
    Martyna, Tuckerman, Tobias & Klein (Mol. Phys. 87, 1117 (1996), eqs. 29-33; Frenkel & Smit, Alg. 31).
    Chain masses ``Q_1 = dof kT tau^2``, ``Q_k = kT tau^2``. The conserved quantity is
    ``E_pot + E_kin + sum_k Q_k v_k^2 / 2 + dof kT xi_1 + kT sum_{k>1} xi_k``.

    Args:
        dt: time step, fs.
        temperature: K (> 0).
        tau: thermostat time constant, fs.
        chain_length: number of thermostats in each chain (M).
    """

    name = "nhc"

    def __init__(self, dt: float, temperature: float, tau: float = 50.0, chain_length: int = 3):
        super().__init__(dt)
        if not temperature > 0:
            raise MDInputError(f"a Nosé-Hoover thermostat needs temperature > 0 K, got {temperature}")
        if not tau > 0 or chain_length < 1:
            raise MDInputError(f"need tau > 0 fs and chain_length >= 1, got tau={tau}, chain_length={chain_length}")
        self.temperature_K = float(temperature)
        self.tau_fs = float(tau)
        self.chain_length = int(chain_length)

    def _masses(self, state: MDState) -> torch.Tensor:  # (G, M)
        kT = units.kB * self.temperature_K
        tau = self.tau_fs * units.fs
        dof = degrees_of_freedom(state.batch, state.num_graphs, self.removed_dof).to(state.momenta.dtype)
        q = torch.full((state.num_graphs, self.chain_length), kT * tau**2, dtype=dof.dtype, device=dof.device)
        q[:, 0] = dof * kT * tau**2
        return q

    def init(self, state: MDState) -> MDState:
        if "nhc_xi" in state.thermostat:
            return state
        z = torch.zeros(state.num_graphs, self.chain_length, dtype=state.momenta.dtype, device=state.momenta.device)
        return state.replace(thermostat={**state.thermostat, "nhc_xi": z.clone(), "nhc_v": z.clone()})

    def _chain(self, state: MDState) -> MDState:
        """Propagate the chain by dt/2 and scale the momenta (the ``NHC(dt/2)`` operator)."""
        dt2, dt4, dt8 = 0.5 * self.dt, 0.25 * self.dt, 0.125 * self.dt
        kT = units.kB * self.temperature_K
        Q = self._masses(state)  # (G, M)
        M = self.chain_length
        xi = state.thermostat["nhc_xi"].clone()
        v = state.thermostat["nhc_v"].clone()
        dof = degrees_of_freedom(state.batch, state.num_graphs, self.removed_dof).to(v.dtype)
        ke2 = 2.0 * kinetic_energy(state.momenta, state.masses, state.batch, state.num_graphs)  # (G,)
        G = torch.empty_like(v)
        G[:, 0] = (ke2 - dof * kT) / Q[:, 0]
        for k in range(1, M):
            G[:, k] = (Q[:, k - 1] * v[:, k - 1] ** 2 - kT) / Q[:, k]
        v[:, M - 1] = v[:, M - 1] + dt4 * G[:, M - 1]
        for k in range(M - 2, -1, -1):
            a = torch.exp(-dt8 * v[:, k + 1])
            v[:, k] = (v[:, k] * a + dt4 * G[:, k]) * a
        scale = torch.exp(-dt2 * v[:, 0])  # (G,)
        ke2 = ke2 * scale**2
        xi = xi + dt2 * v
        G[:, 0] = (ke2 - dof * kT) / Q[:, 0]
        for k in range(M - 1):
            a = torch.exp(-dt8 * v[:, k + 1])
            v[:, k] = (v[:, k] * a + dt4 * G[:, k]) * a
            G[:, k + 1] = (Q[:, k] * v[:, k] ** 2 - kT) / Q[:, k + 1]
        v[:, M - 1] = v[:, M - 1] + dt4 * G[:, M - 1]
        # stopped replicas keep their chain frozen
        act = state.active[:, None]
        xi = torch.where(act, xi, state.thermostat["nhc_xi"])
        v = torch.where(act, v, state.thermostat["nhc_v"])
        scale = torch.where(state.active, scale, torch.ones_like(scale))
        p = state.momenta * scale[state.batch][:, None]
        return state.replace(momenta=p, thermostat={**state.thermostat, "nhc_xi": xi, "nhc_v": v})

    def apply(self, state: MDState, evaluate: Evaluate) -> MDState:
        state = self._chain(state)
        state = state.replace(momenta=self._kick(state, 0.5 * self.dt))
        state = evaluate(self._drift(state, self.dt))
        state = state.replace(momenta=self._kick(state, 0.5 * self.dt))
        state = self._chain(state)
        return state.replace(step=state.step + 1)

    def conserved(self, state: MDState) -> torch.Tensor:
        kT = units.kB * self.temperature_K
        Q = self._masses(state)
        xi, v = state.thermostat["nhc_xi"], state.thermostat["nhc_v"]
        dof = degrees_of_freedom(state.batch, state.num_graphs, self.removed_dof).to(v.dtype)
        extra = 0.5 * (Q * v**2).sum(-1) + dof * kT * xi[:, 0] + kT * xi[:, 1:].sum(-1)
        return super().conserved(state) + extra

    def config(self) -> dict:
        return {**super().config(), "temperature": self.temperature_K, "tau": self.tau_fs,
                "chain_length": self.chain_length}


class StochasticCellRescaling(LangevinBAOAB):
    r"""NPT: Langevin BAOAB thermostat plus the isotropic stochastic cell rescaling barostat of Bernetti & Bussi
    (J. Chem. Phys. 153, 114107 (2020), eq. 5), one volume per replica.

    Every ``every`` steps (``dt_b = every * dt``) the log-volume :math:`\epsilon = \ln V` takes the step

    .. math:: d\epsilon = -\frac{\beta_T}{\tau_p}\left(P_0 - P_{int}\right) dt_b
              + \sqrt{\frac{2 kT \beta_T}{V \tau_p} dt_b}\, \xi,
              \qquad P_{int} = \frac{2 K}{3 V} - \frac{\mathrm{tr}\,\sigma}{3}

    (``sigma``: the model's stress, ASE sign, :math:`\sigma = V^{-1}\partial E/\partial\varepsilon`); positions and
    cell are scaled by :math:`s = e^{d\epsilon/3}`, momenta by :math:`1/s`, then the neighbour list is rebuilt and
    the forces are evaluated at the new positions. Bernetti & Bussi write the volume equation in V (their eq. 2)
    with a :math:`kT/V` term added to :math:`P_{int}`; by Ito's lemma that term cancels in :math:`\epsilon = \ln V`
    (the Fokker-Planck stationary density of the equation above is :math:`p(V) \propto V^N e^{-P_0 V/kT}` for an
    ideal gas of N atoms; keeping the term would give :math:`V^{N+1}`, 11 % too large a mean volume at N = 8: the
    test tells the two apart).

    Why no :math:`kT/V` in :math:`\epsilon`, exactly (not only with a fast thermostat): a barostat move keeps the
    scaled momenta :math:`u = p\,V^{1/3}` and scaled positions fixed, so it must leave invariant the target density
    conditioned on them, :math:`\rho(\epsilon \mid u) \propto V e^{-(P_0 V + U + K)/kT}` (the factor V is
    :math:`V^{N+1}` from :math:`dV\,d^{3N}r = V^{N+1} d\epsilon\, d^{3N}s` times :math:`V^{-N}` from
    :math:`d^{3N}p = V^{-N} d^{3N}u`). For the Ito equation :math:`d\epsilon = a\,dt + \sqrt{2D}\,dW` with
    :math:`D = kT\beta_T/(V\tau_p)` the stationary density is :math:`D^{-1} e^{\int a/D}`; matching it gives
    :math:`a = D\,\partial_\epsilon \ln(D\rho)` with :math:`D\rho \propto e^{-(P_0 V + U + K)/kT}`,
    :math:`\partial_\epsilon U = V\,\mathrm{tr}\,\sigma/3` and :math:`\partial_\epsilon K = -2K/3`, so
    :math:`a = -(\beta_T/\tau_p)(P_0 - P_{int})`, the drift used here. The same argument in V
    (:math:`D_V = kT\beta_T V/\tau_p`, density
    :math:`e^{-(P_0V+U+K)/kT}` given u) gives Bernetti & Bussi's V-form drift with its :math:`+kT/V`.

    Args:
        dt: time step, fs.
        temperature: K.
        pressure: target pressure :math:`P_0`, bar.
        tau_p: barostat relaxation time, fs.
        compressibility: :math:`\beta_T`, 1/bar (water: 4.5e-5); only sets how fast the volume relaxes.
        every: barostat period in steps (each barostat step costs one extra force evaluation).
        friction: Langevin friction, 1/fs.
        seed: seed of the thermostat's and barostat's random numbers.
    """

    name = "npt-scr"

    def __init__(self, dt: float, temperature: float, pressure: float = 1.0, tau_p: float = 1000.0,
                 compressibility: float = 4.5e-5, every: int = 10, friction: float = 0.01, seed: int = 0):
        super().__init__(dt, temperature, friction, seed)
        if not tau_p > 0 or not compressibility > 0 or every < 1:
            raise MDInputError(f"the barostat needs tau_p > 0 fs, compressibility > 0 1/bar and every >= 1, got "
                               f"tau_p={tau_p}, compressibility={compressibility}, every={every}")
        self.pressure_bar, self.tau_p_fs = float(pressure), float(tau_p)
        self.compressibility_per_bar, self.every = float(compressibility), int(every)

    def apply(self, state: MDState, evaluate: Evaluate) -> MDState:
        if not bool(state.graph.pbc.all()):
            raise MDInputError("the NPT barostat needs cells periodic along a, b and c",
                               hint="use --integrator langevin or nhc for molecules and slabs")
        due = (state.step + 1) % self.every == 0
        evaluate.compute_stress = due
        try:
            state = super().apply(state, evaluate)
        finally:
            evaluate.compute_stress = False
        return self._rescale(state, evaluate) if due else state

    def _rescale(self, state: MDState, evaluate: Evaluate) -> MDState:
        from dataclasses import replace

        g = state.graph
        G = state.num_graphs
        dtype = state.momenta.dtype
        kT = units.kB * self.temperature_K
        vol = torch.linalg.det(g.cell.to(torch.float64)).abs()  # (G,) Å^3
        ke = kinetic_energy(state.momenta, state.masses, state.batch, G).double()
        stress = state.thermostat["stress"].double()  # (G, 3, 3) eV/Å^3
        p_int = 2.0 * ke / (3.0 * vol) - torch.diagonal(stress, dim1=1, dim2=2).sum(-1) / 3.0  # (G,) eV/Å^3
        p0 = self.pressure_bar * units.bar
        beta = self.compressibility_per_bar / units.bar  # Å^3/eV
        dt_b = self.every * self.dt
        tau = self.tau_p_fs * units.fs
        xi = torch.randn(G, generator=self.generator, dtype=torch.float64)
        d_eps = -beta / tau * (p0 - p_int) * dt_b + torch.sqrt(2.0 * kT * beta * dt_b / (vol * tau)) * xi
        d_eps = torch.where(state.active, d_eps, torch.zeros_like(d_eps))
        s = torch.exp(d_eps / 3.0).to(dtype)  # (G,)
        pos = state.positions * s[state.batch][:, None]
        cell = g.cell * s.to(g.cell.dtype)[:, None, None]
        mom = state.momenta / s[state.batch][:, None]
        # the skin criterion does not see a rescaled cell: rebuild the neighbour list, forces at the new positions
        state = state.replace(graph=replace(g, positions=pos, cell=cell), momenta=mom,
                              ref_positions=torch.full_like(pos, float("inf")))
        return evaluate(state)

    def config(self) -> dict:
        return {**super().config(), "pressure": self.pressure_bar, "tau_p": self.tau_p_fs,
                "compressibility": self.compressibility_per_bar, "every": self.every}


def make_integrator(name: str, dt: float, temperature: float = 300.0, seed: int = 0, **kw) -> Integrator:
    """Integrator by name: ``nve`` (velocity Verlet), ``langevin`` (BAOAB), ``nhc`` (Nosé-Hoover chain) or ``npt``
    (Langevin + stochastic cell rescaling)."""
    name = name.lower()
    if name in ("nve", "verlet", "velocity-verlet"):
        return VelocityVerlet(dt)
    if name in ("langevin", "baoab", "nvt"):
        return LangevinBAOAB(dt, temperature, seed=seed, **kw)
    if name in ("nhc", "nose-hoover", "nosehoover"):
        return NoseHooverChain(dt, temperature, **kw)
    if name in ("npt", "npt-scr", "scr"):
        return StochasticCellRescaling(dt, temperature, seed=seed, **kw)
    raise MDInputError(f"unknown integrator {name!r}: choose one of nve, langevin, nhc, npt")
