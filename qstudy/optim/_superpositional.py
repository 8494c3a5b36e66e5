"""SuperpositionalAdamW: AdamW plus the superpositional perturbation λ·Q(θ, g)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adamw import adamw as _adamw_functional

from qstudy.optim._kernels import fused_sin_adamw_step
from qstudy.optim._layout import Layout, default_layouts
from qstudy.quantum import MAX_OPTIMIZER_QUBITS, optimizer_response

__all__ = ["SuperpositionalAdamW", "RESPONSES", "SCOPES"]

RESPONSES = ("sin", "circuit", "gaussian", "none")
SCOPES = ("leading", "all")

# Coordinates per independently seeded chunk of the gaussian response's noise.
_NOISE_CHUNK = 1 << 16


class SuperpositionalAdamW(torch.optim.Optimizer):
    r"""AdamW with the superpositional perturbation of Pamuk et al. (arXiv 2511.01918).

    For every parameter tensor θ with gradient g, at step t (all math in fp32):

    .. math::
        Q_t &= \mathrm{response}(\theta_{t-1}) \odot g_t \quad
               \text{(only on the coordinates in ``scope``)} \\
        \theta_t &\leftarrow \mathrm{AdamW}(\theta_{t-1}, g_t)
               \quad \text{(exactly ``torch.optim.AdamW``: decoupled weight decay,
               bias-corrected } \hat m, \hat v,\ \epsilon \text{ added to } \sqrt{\hat v}) \\
        \theta_t &\leftarrow \theta_t - \mathrm{lr}\cdot\lambda\cdot Q_t

    Responses (``response``):

    - ``"sin"`` (the paper): :math:`Q_i = \sin(\pi\theta_i)\, g_i`.
    - ``"circuit"``: consecutive runs of ``n_qubits`` coordinates x are encoded in a
      register, :math:`|\psi\rangle = [\prod_{l=1}^{d} \mathrm{CNOT_{ring}} R_Z(\pi x)
      R_Y(\pi x)] R_Y(\pi x) |0\dots0\rangle` and :math:`Q_{i+q} = \langle\psi|X_q|\psi\rangle
      g_{i+q}` (``qstudy.quantum.optimizer_circuit``); depth 0 is exactly ``"sin"``.
    - ``"gaussian"`` (ablation): :math:`Q_i = \xi_i g_i / \sqrt 2`, ξ ~ N(0, 1) drawn
      from generators seeded by (seed, group, step, coordinate chunk): the same
      coordinates get the same noise on any number of ranks, and a resumed run draws
      the same noise (the step count is in the state dict).
    - ``"none"``: plain AdamW.

    Coordinates are numbered by flattening each param group's trainable parameters in
    order (as DeepSpeed ZeRO flattens a group). ``scope="leading"`` (the paper) perturbs
    the first ``n_qubits`` coordinates of the first group; ``"all"`` perturbs every
    coordinate (``circuit`` blocks are consecutive runs of ``n_qubits`` coordinates; a
    group's last, shorter block uses that many qubits). Under DeepSpeed ZeRO call
    :func:`qstudy.optim.bind_deepspeed` after ``deepspeed.initialize`` so the flat
    partitions perturb the same coordinates as a run without DeepSpeed.

    With ``quantum_weight=0`` or ``response="none"`` the step is torch's own AdamW
    (``torch.optim.adamw.adamw`` with the same ``fused`` choice): bit for bit equal to
    ``torch.optim.AdamW(..., fused=...)``. The Adam part of every other configuration
    is that same call, except ``response="sin", scope="all"``, which runs one compiled
    pass over memory (AdamW's math to fp32 rounding) unless ``compile_step=False``.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate α (default: 1e-3).
        betas: coefficients of the running averages of g and g² (default: (0.9, 0.999)).
        eps: added to √v̂ for numerical stability (default: 1e-8).
        weight_decay: decoupled weight decay coefficient (default: 0.01).
        quantum_weight: λ, the weight of the perturbation, >= 0 (default: 0.5, the
            paper's best in its ablation over {0.1, 0.3, 0.5, 0.7}).
        n_qubits: register size, 1 to 20 (default: 4, the paper's): the number of
            leading coordinates perturbed, and the block size of ``"circuit"``.
        circuit_depth: layers of the ``"circuit"`` response, >= 0 (default: 0).
        response: ``"sin"``, ``"circuit"``, ``"gaussian"`` or ``"none"`` (default: ``"sin"``).
        scope: ``"leading"`` or ``"all"`` (default: ``"leading"``).
        seed: seed of the ``"gaussian"`` noise (default: 0).
        fused: use torch's fused AdamW kernel for the Adam part (default: ``None``,
            fused wherever torch supports it for the parameters' device and dtype).
        compile_step: compile the ``sin``/``all`` step into one pass, and let the
            ``circuit`` response use its compiled kernel on large tensors (default: True;
            each falls back to its eager path, with a warning, where compiling fails).
            The compile costs a fresh process seconds on its first step (4-9 s with a
            warm inductor cache, 15-50 s cold, on CPU); each later step saves a few ns
            per element (``sin``) or a few hundred (``circuit``). So it pays off only when
            ``steps × elements × saving`` exceeds that compile:
            :func:`qstudy.optim.compile_pays_off` says when (trials call it), from the
            measurements in benchmarks/RESULTS.md.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        quantum_weight: float = 0.5,
        n_qubits: int = 4,
        circuit_depth: int = 0,
        response: str = "sin",
        scope: str = "leading",
        seed: int = 0,
        *,
        fused: bool | None = None,
        compile_step: bool = True,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            quantum_weight=quantum_weight,
            n_qubits=n_qubits,
            circuit_depth=circuit_depth,
            response=response,
            scope=scope,
            seed=seed,
            amsgrad=False,  # read by DeepSpeed ZeRO-3's partial-offload backup optimizer
        )
        _validate(defaults)
        self.fused = fused
        self.compile_step = compile_step
        # Coordinates held by tensors DeepSpeed steps in place of the model's
        # parameters: id(tensor) -> (tensor, Layout); see bind_deepspeed.
        self._bound: dict[int, tuple[torch.Tensor, Layout]] = {}
        # Seconds spent making and applying Q (for the compiled sin/all step, which fuses
        # Q into the AdamW update, its whole time): read by trials for a cost metric.
        self.perturbation_time_s = 0.0
        # Set True before a step to measure it (see perturbation_stats); off by default
        # because it computes Q a second time and keeps a copy of the perturbed coordinates.
        self.measure_perturbation = False
        self._stats = _zero_stats()
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _validate(self.param_groups[-1])

    def set_layout(self, tensor: torch.Tensor, layout: Layout) -> None:
        """Declares which of its group's coordinates ``tensor`` holds.

        For tensors that stand in for the model's parameters (DeepSpeed ZeRO's flat
        partitions); :func:`qstudy.optim.bind_deepspeed` calls it for every partition.
        """
        self._bound[id(tensor)] = (tensor, layout)

    @torch.no_grad()
    def step(self, closure=None):
        """Performs one optimization step.

        Args:
            closure: re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        measured = self._measure_before() if self.measure_perturbation else None
        self._step_groups()
        if measured is not None:
            self._measure_after(measured)
        return loss

    def perturbation_stats(self, reset: bool = True) -> dict[str, float]:
        """Sums over the coordinates this process perturbs, of the steps measured since the last reset.

        Set ``measure_perturbation = True`` before a ``step()`` to measure it. Keys:
        ``perturbation_sq`` (Σ (lr·λ·Q)²), ``adam_sq`` (Σ of the squared AdamW update of
        the same coordinates), ``nonzero`` (coordinates with Q ≠ 0) and ``perturbed``
        (coordinates in scope). Under ZeRO each rank holds its partition's sums: add them
        over ranks. √(perturbation_sq / adam_sq) says whether λ can matter at all: Q
        multiplies the raw gradient, not Adam's normalised step.
        """
        stats = dict(self._stats)
        if reset:
            self._stats = _zero_stats()
        return stats

    def _measure_before(self) -> list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor, float]]:
        """Q of every perturbed run, and the coordinates' values before the step."""
        measured = []
        for index, group in enumerate(self.param_groups):
            lam = float(group["quantum_weight"])
            if lam == 0.0 or group["response"] == "none":
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            layouts = self._layouts(index, group, params)
            steps = [self.state[p]["step"] for p in params if "step" in self.state[p]]
            step = int(steps[0].item()) + 1 if steps and group["response"] == "gaussian" else 1
            for param, local, q in _perturbations(
                group, params, [p.grad for p in params], layouts, step, self.compile_step
            ):
                before = param.detach().view(-1)[local : local + q.numel()].float().clone()
                measured.append((param, local, q, before, float(group["lr"]) * lam))
        return measured

    def _measure_after(self, measured) -> None:
        stats = self._stats
        for param, local, q, before, scale in measured:
            after = param.detach().view(-1)[local : local + q.numel()].float()
            perturbation = scale * q
            adam = (after - before) + perturbation  # θ_after = θ_before + AdamW step − lr·λ·Q
            stats["perturbation_sq"] += float(perturbation.double().square().sum())
            stats["adam_sq"] += float(adam.double().square().sum())
            stats["nonzero"] += float((q != 0).sum())
            stats["perturbed"] += float(q.numel())

    def _step_groups(self) -> None:
        for index, group in enumerate(self.param_groups):
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            fused = self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, steps)
            if not params:
                continue
            lam = float(group["quantum_weight"])
            if lam == 0.0 or group["response"] == "none":
                self._adamw(group, fused, params, grads, exp_avgs, exp_avg_sqs, steps)
                continue
            start = 0
            t0 = time.perf_counter()
            if group["response"] == "sin" and group["scope"] == "all" and self.compile_step:
                start = self._fused_sin(group, params, grads, exp_avgs, exp_avg_sqs, steps)
                self.perturbation_time_s += time.perf_counter() - t0
                if start == len(params):
                    continue
            params, grads = params[start:], grads[start:]
            exp_avgs, exp_avg_sqs, steps = exp_avgs[start:], exp_avg_sqs[start:], steps[start:]
            layouts = self._layouts(index, group, params)
            t0 = time.perf_counter()
            # Only the gaussian noise needs the step number; reading it syncs a CUDA step tensor.
            step = int(steps[0].item()) + 1 if group["response"] == "gaussian" else 0
            perturbations = _perturbations(group, params, grads, layouts, step, self.compile_step)
            t1 = time.perf_counter()
            self._adamw(group, fused, params, grads, exp_avgs, exp_avg_sqs, steps)
            t2 = time.perf_counter()
            scale = -float(group["lr"]) * lam
            for param, local_start, values in perturbations:
                flat = param.view(-1)
                flat[local_start : local_start + values.numel()].add_(values.to(param.dtype), alpha=scale)
            self.perturbation_time_s += (t1 - t0) + (time.perf_counter() - t2)

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, steps) -> bool:
        fused = self.fused
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("SuperpositionalAdamW does not support sparse gradients")
            if not p.is_contiguous():
                raise RuntimeError(
                    f"SuperpositionalAdamW needs contiguous parameters, got one of shape {tuple(p.shape)} "
                    f"with strides {p.stride()}"
                )
            params.append(p)
            grads.append(p.grad)
        if fused is None:
            fused = all(_fused_supported(p) for p in params)
        # As torch.optim.AdamW: the step lives on the parameter's device when fused, else on CPU.
        step_device = None if fused else torch.device("cpu")
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.zeros((), dtype=torch.float32, device=step_device or p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif state["step"].device != (step_device or p.device):
                # Loaded state: torch's load_state_dict moves "step" to the parameter's
                # device only for groups whose dict says fused or capturable, and ``fused``
                # is this optimizer's attribute, so a fused CUDA step resumed from a
                # checkpoint read onto the CPU would find its step tensors on the wrong device.
                state["step"] = state["step"].to(step_device or p.device, torch.float32)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return fused

    def _adamw(self, group, fused, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
        beta1, beta2 = group["betas"]
        _adamw_functional(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=None if fused else False,
            fused=fused,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    def _fused_sin(self, group, params, grads, exp_avgs, exp_avg_sqs, steps) -> int:
        """Steps params with the compiled kernel; returns how many it did (all, unless
        compiling fails)."""
        beta1, beta2 = group["betas"]
        lr, lam = float(group["lr"]), float(group["quantum_weight"])
        step_values = torch.stack([s.float().cpu() for s in steps]).tolist()  # one sync
        # 1-D views: one compiled graph serves every parameter shape (dynamo would
        # otherwise recompile per number of dimensions and hit its recompile limit).
        flat = (
            [p.detach().view(-1) for p in params],
            [g.reshape(-1) for g in grads],
            [m.view(-1) for m in exp_avgs],
            [v.view(-1) for v in exp_avg_sqs],
        )
        # Tensors sharing a device and a step count share the coefficients: each run of
        # them in the group's order is one call (the whole group, in any ordinary run).
        start = 0
        while start < len(params):
            t, device = step_values[start] + 1, params[start].device
            end = start + 1
            while end < len(params) and step_values[end] + 1 == t and params[end].device == device:
                end += 1
            values = [
                1.0 - lr * group["weight_decay"],
                lr / (1.0 - beta1**t),
                1.0 / math.sqrt(1.0 - beta2**t),
                group["eps"],
                lr * lam,
                1.0 - beta1,
                beta2,
                1.0 - beta2,
            ]
            coef = torch.tensor(values, dtype=torch.float32, device=device)
            done = fused_sin_adamw_step(*(tensors[start:end] for tensors in flat), coef)
            if done:
                torch._foreach_add_(steps[start : start + done], 1)
            if done < end - start:
                return start + done
            start = end
        return len(params)

    def _layouts(self, index: int, group, params) -> list[Layout]:
        defaults = None
        out = []
        for p in params:
            bound = self._bound.get(id(p))
            if bound is not None and bound[0] is p:
                out.append(bound[1])
                continue
            if defaults is None:
                defaults = default_layouts(index, group["params"])
            out.append(defaults[id(p)])
        return out


def _zero_stats() -> dict[str, float]:
    return {"perturbation_sq": 0.0, "adam_sq": 0.0, "nonzero": 0.0, "perturbed": 0.0}


def _fused_supported(p: torch.Tensor) -> bool:
    return p.device.type in ("cpu", "cuda", "mps", "xpu") and p.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
    )


def _validate(hp: dict[str, Any]) -> None:
    lr = hp["lr"]
    if isinstance(lr, torch.Tensor):
        lr = lr.item()
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {hp['lr']!r}")
    betas = hp["betas"]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair (beta1, beta2), each in [0, 1), got {betas!r}")
    for name, beta in zip(("betas[0]", "betas[1]"), betas):
        if not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
    eps = hp["eps"]
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    wd = hp["weight_decay"]
    if not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {wd!r}")
    lam = hp["quantum_weight"]
    if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"quantum_weight must be a finite number >= 0, got {lam!r}")
    n = hp["n_qubits"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_OPTIMIZER_QUBITS:
        raise ValueError(f"n_qubits must be an integer in [1, {MAX_OPTIMIZER_QUBITS}], got {n!r}")
    depth = hp["circuit_depth"]
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"circuit_depth must be an integer >= 0, got {depth!r}")
    if hp["response"] not in RESPONSES:
        raise ValueError(f"response must be one of {', '.join(RESPONSES)}, got {hp['response']!r}")
    if hp["scope"] not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {hp['scope']!r}")
    seed = hp["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


# ---------------------------------------------------------------------------------------
# The perturbation Q, computed from θ_t before the Adam update.


def _scoped_runs(group, layout: Layout):
    """Yields (segment, lo, hi): the group coordinates [lo, hi) of a segment in scope."""
    limit = layout.group_numel
    if group["scope"] == "leading":
        if layout.group != 0:
            return
        limit = min(limit, group["n_qubits"])
    for seg in layout.segments:
        lo, hi = seg.global_start, min(seg.global_start + seg.length, limit)
        if lo < hi:
            yield seg, lo, hi


def _perturbations(group, params, grads, layouts, step: int, compiled: bool):
    """Returns [(param, local_start, Q values)] for every run of coordinates in scope."""
    response = group["response"]
    if group["scope"] == "leading" and all(layout.group != 0 for layout in layouts):
        return []  # the same on every rank: no rank holds a leading coordinate here
    runs = [
        (p, g, layout, seg, lo, hi)
        for p, g, layout in zip(params, grads, layouts)
        for seg, lo, hi in _scoped_runs(group, layout)
    ]
    if response == "circuit":
        return _circuit_perturbations(group, params, layouts, runs, compiled)
    out = []
    for p, g, layout, seg, lo, hi in runs:
        local = seg.local_start + (lo - seg.global_start)
        theta = p.view(-1)[local : local + hi - lo].float()
        grad = g.view(-1)[local : local + hi - lo].float()
        if response == "sin":
            r = torch.sin(math.pi * theta)
        else:  # gaussian
            r = _noise(group["seed"], layout.group, step, lo, hi, p.device) / math.sqrt(2.0)
        out.append((p, local, r * grad))
    return out


def _noise(seed: int, group: int, step: int, lo: int, hi: int, device) -> torch.Tensor:
    """ξ for group coordinates [lo, hi) at ``step``: chunk c of the group's noise comes
    from a generator seeded by (seed, group, step, c), so any rank draws any run."""
    pieces = []
    for chunk in range(lo // _NOISE_CHUNK, (hi - 1) // _NOISE_CHUNK + 1):
        generator = torch.Generator(device=device)
        generator.manual_seed(_mix(seed, group, step, chunk))
        values = torch.randn(_NOISE_CHUNK, generator=generator, device=device, dtype=torch.float32)
        base = chunk * _NOISE_CHUNK
        pieces.append(values[max(lo, base) - base : min(hi, base + _NOISE_CHUNK) - base])
    return torch.cat(pieces)


def _mix(*values: int) -> int:
    """splitmix64 over the values: a well-spread 63-bit seed."""
    h = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        h = (h ^ (v & mask)) * 0xBF58476D1CE4E5B9 & mask
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & mask
        h ^= h >> 29
    return h & ((1 << 63) - 1)


def _circuit_perturbations(group, params, layouts, runs, compiled: bool):
    """Q for ``response="circuit"``: blocks of ``n_qubits`` consecutive coordinates.

    A block that is not wholly inside one run (it spans two parameters, or two ranks'
    ZeRO partitions) is assembled from an exchange of θ at the runs' edges.
    """
    n, depth = group["n_qubits"], group["circuit_depth"]
    numel = layouts[0].group_numel if layouts else 0

    def block_end(k):
        return min((k + 1) * n, numel)

    # 1. θ of every coordinate in a block that some run holds only in part.
    coords, values = [], []
    for p, _, _, seg, lo, hi in runs:
        flat = p.view(-1)
        for k in {lo // n, (hi - 1) // n}:
            if k * n < lo or block_end(k) > hi:
                a, b = max(lo, k * n), min(hi, block_end(k))
                local = seg.local_start + (a - seg.global_start)
                coords.append(torch.arange(a, b, dtype=torch.float64))
                values.append(flat[local : local + b - a].detach().to(torch.float64).cpu())
    edge_coords = torch.cat(coords) if coords else torch.zeros(0, dtype=torch.float64)
    edge_values = torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)
    if any(layout.distributed for layout in layouts):
        edge_coords, edge_values = _all_gather_edges(edge_coords, edge_values, layouts[0].process_group)
    edges = dict(zip(edge_coords.long().tolist(), edge_values.tolist()))

    # 2. the response of every run's blocks, times its gradient.
    out = []
    for p, g, _, seg, lo, hi in runs:
        local0 = seg.local_start + (lo - seg.global_start)
        theta = p.view(-1)[local0 : local0 + hi - lo].float()
        grad = g.view(-1)[local0 : local0 + hi - lo].float()
        r = torch.empty_like(theta)
        first_full = -(-lo // n) * n
        last_full = (hi // n) * n if hi < numel else hi  # the group's last block may be short
        if first_full < last_full:
            inner = theta[first_full - lo : last_full - lo]
            full = (inner.numel() // n) * n
            if full:
                r[first_full - lo : first_full - lo + full] = _response_blocks(
                    inner[:full].view(-1, n), depth, compiled
                )
            if full < inner.numel():  # the group's short last block, held whole
                tail = inner[full:].view(1, -1)
                r[first_full - lo + full : last_full - lo] = optimizer_response(tail, depth).view(-1)
        for k in {lo // n, (hi - 1) // n}:
            if k * n < lo or block_end(k) > hi:
                try:
                    block = torch.tensor([edges[c] for c in range(k * n, block_end(k))], dtype=torch.float64)
                except KeyError as err:
                    raise RuntimeError(
                        f"SuperpositionalAdamW: coordinate {err.args[0]} of circuit block {k} is held by "
                        "no rank; the tensors' layouts do not cover the group (see bind_deepspeed)"
                    ) from None
                resp = optimizer_response(block.view(1, -1), depth).view(-1).to(r.dtype)
                a, b = max(lo, k * n), min(hi, block_end(k))
                r[a - lo : b - lo] = resp[a - k * n : b - k * n]
        out.append((p, local0, r * grad))
    return out


def _response_blocks(x: torch.Tensor, depth: int, compiled: bool) -> torch.Tensor:
    """⟨X⟩ of ``[blocks, n]`` coordinates; flat result. optimizer_response simulates them
    in chunks sized by memory (its STATEVECTOR_BUDGET_BYTES), or with its compiled kernel
    where ``compiled`` and there are enough blocks."""
    if depth == 0:
        return torch.sin(math.pi * x).view(-1)  # exactly the circuit's value at depth 0
    return optimizer_response(x, depth, compiled=compiled).view(-1)


def _all_gather_edges(coords: torch.Tensor, values: torch.Tensor, process_group):
    import torch.distributed as dist

    device = torch.device("cpu")
    if dist.get_backend(process_group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    rows = torch.stack([coords, values], dim=1).to(device)
    world = dist.get_world_size(process_group)
    count = torch.tensor([rows.shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count, group=process_group)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros(longest, 2, dtype=torch.float64, device=device)
    padded[: rows.shape[0]] = rows
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded, group=process_group)
    rows = torch.cat([g[: int(c.item())] for g, c in zip(gathered, counts)]).cpu()
    return rows[:, 0], rows[:, 1]
