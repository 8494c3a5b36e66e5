"""SuperpositionalAdamW against docs/design.md §2, checked with an independent float64 reference."""

import copy
import math
import subprocess
import sys

import pytest
import torch

from qstudy.optim import Layout, Segment, SuperpositionalAdamW
from qstudy.quantum import optimizer_response


def _model(first_numel=2, seed=0):
    """Parameters of odd sizes; the first holds fewer coordinates than n_qubits."""
    torch.manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(first_numel)),
        torch.nn.Parameter(torch.randn(7, 5)),
        torch.nn.Parameter(torch.randn(13)),
    ]


def _grads(params, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(steps)]


def _run(opt_factory, params, grads):
    params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = opt_factory(params)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _reference(params, grads, lr, betas, eps, wd, lam, n, depth, response, scope):
    """docs/design.md §2 on the group's flat coordinate vector, in float64."""
    theta = torch.cat([p.detach().reshape(-1) for p in params]).double()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    b1, b2 = betas
    numel = theta.numel()
    for t, step_grads in enumerate(grads, start=1):
        g = torch.cat([x.reshape(-1) for x in step_grads]).double()
        if response == "sin":
            r = torch.sin(math.pi * theta)
        else:
            r = torch.cat(
                [optimizer_response(theta[i : i + n].view(1, -1), depth).view(-1) for i in range(0, numel, n)]
            )
        q = r * g
        if scope == "leading":
            q[n:] = 0
        theta = theta * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * mhat / (vhat.sqrt() + eps) - lr * lam * q
    return theta


HP = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)


def _flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params]).double()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("lam,response", [(0.0, "sin"), (0.7, "none"), (0.0, "circuit")])
def test_reduces_to_torch_adamw_bit_for_bit(fused, lam, response):
    params, grads = _model(), _grads(_model(), 6)
    ours, _ = _run(
        lambda ps: SuperpositionalAdamW(ps, **HP, quantum_weight=lam, response=response, fused=fused), params, grads
    )
    theirs, _ = _run(
        lambda ps: torch.optim.AdamW(ps, **HP, fused=fused, foreach=None if fused else False), params, grads
    )
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("compile_step", [True, False])
@pytest.mark.parametrize("scope", ["leading", "all"])
def test_sin_matches_reference(scope, compile_step):
    params, grads = _model(), _grads(_model(), 8)
    ours, _ = _run(
        lambda ps: SuperpositionalAdamW(
            ps, **HP, quantum_weight=0.5, n_qubits=4, scope=scope, compile_step=compile_step
        ),
        params,
        grads,
    )
    expected = _reference(params, grads, HP["lr"], HP["betas"], HP["eps"], HP["weight_decay"], 0.5, 4, 0, "sin", scope)
    torch.testing.assert_close(_flat(ours), expected, rtol=0, atol=2e-6)
    # The perturbation moved the parameters: the same run without it is far away.
    plain = _reference(params, grads, HP["lr"], HP["betas"], HP["eps"], HP["weight_decay"], 0.0, 4, 0, "sin", scope)
    assert (_flat(ours) - plain).abs().max() > 1e-3


def _many_tensors(seed=0):
    """11 tensors: the compiled step cuts them into calls of 8, 2 and 1."""
    torch.manual_seed(seed)
    shapes = [(3, 4), (5,), (2, 3, 2), (7,), (1,), (4, 4), (9,), (2, 5), (6,), (3, 3), (8,)]
    return [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]


def _run_skipping(opt_factory, params, grads, skip):
    """Like _run, but parameter ``skip[t]`` has no gradient at step t (its step count falls behind)."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = opt_factory(params)
    for t, step_grads in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            p.grad = None if skip.get(t) == i else g.clone()
        opt.step()
    return params, opt


def test_compiled_sin_steps_many_tensors_with_different_step_counts_like_the_eager_step():
    import qstudy.optim._kernels as kernels

    params = _many_tensors()
    grads = _grads(params, 4)
    skip = {1: 3, 2: 9}  # tensors 3 and 9 are a step behind: three runs of equal step counts

    def factory(compile_step):
        return lambda ps: SuperpositionalAdamW(ps, **HP, quantum_weight=0.5, scope="all", compile_step=compile_step)

    compiled, opt = _run_skipping(factory(True), params, grads, skip)
    eager, _ = _run_skipping(factory(False), params, grads, skip)
    assert not kernels._compile_failed  # the compiled step ran: this compares it with the eager one
    torch.testing.assert_close(_flat(compiled), _flat(eager), rtol=0, atol=2e-6)
    assert [int(opt.state[p]["step"]) for p in compiled] == [3 if i in (3, 9) else 4 for i in range(11)]


def test_compile_failure_midway_steps_the_remaining_tensors_eagerly(monkeypatch):
    import qstudy.optim._kernels as kernels

    real = torch.compile(kernels._step_tensors, dynamic=True, fullgraph=True)
    calls = []

    def fails_after_the_first_call(*args):
        calls.append(len(args[0]))
        if len(calls) > 1:
            raise RuntimeError("no C++ compiler")
        return real(*args)

    monkeypatch.setattr(kernels, "_compiled", fails_after_the_first_call)
    monkeypatch.setattr(kernels, "_compile_failed", False)
    params = _many_tensors()
    grads = _grads(params, 2)

    def factory(compile_step):
        return lambda ps: SuperpositionalAdamW(ps, **HP, quantum_weight=0.5, scope="all", compile_step=compile_step)

    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        mixed, opt = _run(factory(True), params, grads)
    eager, _ = _run(factory(False), params, grads)
    assert calls == [8, 2]  # 8 tensors compiled, then the failure; step 2 is eager throughout
    torch.testing.assert_close(_flat(mixed), _flat(eager), rtol=0, atol=2e-6)
    assert all(int(opt.state[p]["step"]) == 2 for p in mixed)


def test_leading_spans_parameters_and_leaves_the_rest_to_adamw():
    # n_qubits=4 with a first parameter of 2 coordinates: the leading block is p0[0:2] and p1[0, 0:2].
    params, grads = _model(first_numel=2), _grads(_model(first_numel=2), 5)
    ours, _ = _run(lambda ps: SuperpositionalAdamW(ps, **HP, quantum_weight=0.5, n_qubits=4), params, grads)
    adamw, _ = _run(lambda ps: torch.optim.AdamW(ps, **HP, fused=True), params, grads)
    diff = (_flat(ours) - _flat(adamw)).abs()
    assert (diff[:4] > 1e-4).all()
    assert torch.equal(diff[4:], torch.zeros_like(diff[4:]))


@pytest.mark.parametrize("scope", ["leading", "all"])
@pytest.mark.parametrize("n_qubits", [3, 4])
@pytest.mark.parametrize("kernel", [False, True])
def test_circuit_matches_reference_across_parameter_boundaries(monkeypatch, scope, n_qubits, kernel):
    # 2 + 35 + 13 = 50 coordinates: blocks straddle parameters, and the last is short.
    if kernel:  # the whole blocks inside a parameter go to the compiled kernel, however few
        import qstudy.quantum._optimizer_circuit as circuit

        monkeypatch.setattr(circuit, "COMPILED_MIN_BLOCKS", 1)
    params, grads = _model(), _grads(_model(), 5)
    ours, _ = _run(
        lambda ps: SuperpositionalAdamW(
            ps, **HP, quantum_weight=0.5, n_qubits=n_qubits, circuit_depth=2, response="circuit", scope=scope
        ),
        params,
        grads,
    )
    expected = _reference(
        params, grads, HP["lr"], HP["betas"], HP["eps"], HP["weight_decay"], 0.5, n_qubits, 2, "circuit", scope
    )
    torch.testing.assert_close(_flat(ours), expected, rtol=0, atol=2e-6)
    sin = _reference(
        params, grads, HP["lr"], HP["betas"], HP["eps"], HP["weight_decay"], 0.5, n_qubits, 0, "sin", scope
    )
    assert (_flat(ours) - sin).abs().max() > 1e-4  # depth 2 is not the plain sine


def test_circuit_depth_zero_is_sin():
    params, grads = _model(), _grads(_model(), 5)
    kw = dict(**HP, quantum_weight=0.5, n_qubits=4, scope="all", compile_step=False)
    circuit, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw, response="circuit", circuit_depth=0), params, grads)
    sin, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw, response="sin"), params, grads)
    torch.testing.assert_close(_flat(circuit), _flat(sin), rtol=0, atol=1e-7)


def test_gaussian_is_seeded_and_has_the_sin_rms():
    params, grads = _model(), _grads(_model(), 3)
    kw = dict(**HP, quantum_weight=0.5, response="gaussian", scope="all")
    a, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw, seed=3), params, grads)
    b, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw, seed=3), params, grads)
    c, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw, seed=4), params, grads)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(_flat(a), _flat(c))
    # Q = ξ g / √2 with g = 1: over many coordinates its RMS is that of sin(πθ), θ uniform.
    p = torch.nn.Parameter(torch.rand(200_000) * 2 - 1)
    p.grad = torch.ones_like(p)
    opt = SuperpositionalAdamW([p], lr=1.0, weight_decay=0.0, quantum_weight=1.0, response="gaussian", scope="all")
    before = p.detach().clone()
    adam_only = p.detach().clone() - 1.0  # the first Adam step moves every coordinate by -lr·g/|g|
    opt.step()
    q = -(p.detach() - adam_only)
    assert abs(q.pow(2).mean().sqrt().item() - math.sqrt(0.5)) < 0.01
    assert abs(q.mean().item()) < 0.01
    assert not torch.equal(before, p.detach())


def test_gaussian_noise_does_not_depend_on_how_coordinates_are_split():
    from qstudy.optim._superpositional import _noise

    whole = _noise(7, 0, 5, 0, 300_000, "cpu")
    parts = torch.cat(
        [_noise(7, 0, 5, lo, hi, "cpu") for lo, hi in [(0, 65_535), (65_535, 131_073), (131_073, 300_000)]]
    )
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, _noise(7, 0, 6, 0, 300_000, "cpu"))


@pytest.mark.parametrize(
    "response,scope,depth", [("sin", "leading", 0), ("sin", "all", 0), ("circuit", "all", 2), ("gaussian", "all", 0)]
)
def test_state_dict_resumes_bit_exactly(response, scope, depth):
    params, grads = _model(), _grads(_model(), 8)
    kw = dict(**HP, quantum_weight=0.5, n_qubits=3, circuit_depth=depth, response=response, scope=scope, seed=11)
    straight, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw), params, grads)
    half, opt = _run(lambda ps: SuperpositionalAdamW(ps, **kw), params, grads[:4])
    saved = copy.deepcopy(opt.state_dict())
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in half]
    opt2 = SuperpositionalAdamW(resumed, **{**kw, "seed": 0})  # the seed comes back from the state dict
    opt2.load_state_dict(saved)
    for step_grads in grads[4:]:
        for p, g in zip(resumed, step_grads):
            p.grad = g.clone()
        opt2.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_only_the_first_group_has_leading_coordinates_and_lambda_is_per_group():
    params, grads = _model(first_numel=6), _grads(_model(first_numel=6), 4)

    def factory(ps):
        return SuperpositionalAdamW(
            [{"params": ps[:1]}, {"params": ps[1:], "quantum_weight": 0.0}], **HP, quantum_weight=0.5
        )

    ours, _ = _run(factory, params, grads)
    adamw, _ = _run(lambda ps: torch.optim.AdamW(ps, **HP, fused=True), params, grads)
    diff = (_flat(ours) - _flat(adamw)).abs()
    assert (diff[:4] > 1e-4).all() and diff[4:].max() == 0


def test_bound_layout_with_padding_perturbs_the_same_coordinates():
    """A ZeRO-style flat tensor with alignment padding between parameters, bound with
    set_layout, is stepped exactly like the separate parameters."""
    params, grads = _model(), _grads(_model(), 5)
    kw = dict(**HP, quantum_weight=0.5, n_qubits=3, circuit_depth=1, response="circuit", scope="all")
    plain, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kw), params, grads)

    pad = 3
    pieces, segments, local, offset = [], [], 0, 0
    for p in params:
        pieces += [p.detach().reshape(-1), torch.zeros(pad)]
        segments.append(Segment(local, offset, p.numel()))
        local += p.numel() + pad
        offset += p.numel()
    flat = torch.nn.Parameter(torch.cat(pieces))
    opt = SuperpositionalAdamW([flat], **kw)
    opt.set_layout(flat, Layout(0, offset, tuple(segments)))
    for step_grads in grads:
        flat.grad = torch.cat([t for g in step_grads for t in (g.reshape(-1), torch.zeros(pad))])
        opt.step()
    got = torch.cat([flat.detach()[s.local_start : s.local_start + s.length] for s in segments])
    torch.testing.assert_close(got, _flat(plain).float(), rtol=0, atol=1e-7)


def test_bf16_parameters_update_in_fp32():
    params, grads = _model(), _grads(_model(), 4)
    bf16 = [torch.nn.Parameter(p.detach().bfloat16()) for p in params]
    bf16_grads = [[g.bfloat16() for g in gs] for gs in grads]
    # λ = 0: exactly torch's AdamW on bf16 parameters.
    ours, _ = _run(lambda ps: SuperpositionalAdamW(ps, **HP, quantum_weight=0.0), bf16, bf16_grads)
    theirs, _ = _run(lambda ps: torch.optim.AdamW(ps, **HP, fused=True), bf16, bf16_grads)
    assert all(torch.equal(a, b) and a.dtype == torch.bfloat16 for a, b in zip(ours, theirs))
    # λ > 0: close to the fp32 run, to bf16 resolution.
    for scope in ("leading", "all"):
        low, _ = _run(lambda ps, scope=scope: SuperpositionalAdamW(ps, **HP, scope=scope), bf16, bf16_grads)
        high, _ = _run(
            lambda ps, scope=scope: SuperpositionalAdamW(ps, **HP, scope=scope),
            [p.float() for p in bf16],
            [[g.float() for g in gs] for gs in bf16_grads],
        )
        torch.testing.assert_close(_flat(low), _flat(high), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"quantum_weight": -0.1}, "quantum_weight must be a finite number >= 0, got -0.1"),
        ({"n_qubits": 0}, "n_qubits must be an integer in [1, 20], got 0"),
        ({"n_qubits": 21}, "n_qubits must be an integer in [1, 20], got 21"),
        ({"circuit_depth": -1}, "circuit_depth must be an integer >= 0, got -1"),
        ({"response": "cos"}, "response must be one of sin, circuit, gaussian, none, got 'cos'"),
        ({"scope": "first"}, "scope must be one of leading, all, got 'first'"),
        ({"lr": -1.0}, "lr must be a finite number >= 0, got -1.0"),
        ({"betas": (0.9, 1.0)}, "betas[1] must be in [0, 1), got 1.0"),
        ({"betas": (0.9,)}, "betas must be a pair (beta1, beta2), each in [0, 1), got (0.9,)"),
        ({"eps": float("nan")}, "eps must be a finite number >= 0, got nan"),
        ({"weight_decay": -0.01}, "weight_decay must be a finite number >= 0, got -0.01"),
        ({"seed": -2}, "seed must be an integer >= 0, got -2"),
    ],
)
def test_bad_hyperparameters_name_argument_value_and_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        SuperpositionalAdamW([torch.nn.Parameter(torch.zeros(3))], **kwargs)
    assert str(err.value) == message


def test_bad_param_group_is_refused():
    opt = SuperpositionalAdamW([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match=r"quantum_weight must be a finite number >= 0, got -1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "quantum_weight": -1})


def test_optimizer_and_circuits_import_without_the_platform():
    code = (
        "import sys, qstudy.optim, qstudy.quantum\n"
        "heavy = [m for m in ('ray', 'mlflow', 'deepspeed', 'transformers', 'optuna') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _resumed_through_disk(device, fused, response="sin", steps=(3, 3)):
    """Params after steps[0] + steps[1] steps, the optimizer saved and reloaded (read onto
    the CPU, as a checkpoint is) in between; and the same run uninterrupted."""
    import io

    params0 = [p.detach().to(device) for p in _model(first_numel=6)]
    grads = [[g.to(device) for g in step] for step in _grads(params0, sum(steps))]
    kwargs = dict(lr=1e-2, quantum_weight=0.5, response=response, scope="all", fused=fused)
    whole, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kwargs), params0, grads)
    first, opt = _run(lambda ps: SuperpositionalAdamW(ps, **kwargs), params0, grads[: steps[0]])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu", weights_only=False)
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    opt = SuperpositionalAdamW(resumed, **kwargs)
    opt.load_state_dict(state)
    for step_grads in grads[steps[0] :]:
        for p, g in zip(resumed, step_grads):
            p.grad = g.clone()
        opt.step()
    return whole, resumed, opt


@pytest.mark.parametrize("response", ["sin", "gaussian"])
def test_resumed_from_a_saved_state_the_run_continues_exactly(response):
    whole, resumed, opt = _resumed_through_disk("cpu", fused=None, response=response)
    for a, b in zip(whole, resumed):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert {opt.state[p]["step"].device.type for p in resumed} == {"cpu"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("response", ["sin", "gaussian"])
def test_fused_cuda_step_resumed_from_a_cpu_read_checkpoint(response):
    """torch's load_state_dict leaves "step" on the CPU unless the group dict says fused,
    and ``fused`` is this optimizer's attribute: the step tensors must be moved to the
    parameters' device, or the fused CUDA kernel gets CPU step tensors."""
    whole, resumed, opt = _resumed_through_disk("cuda", fused=True, response=response)
    for a, b in zip(whole, resumed):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert {opt.state[p]["step"].device.type for p in resumed} == {"cuda"}


@pytest.mark.parametrize("response", ["sin", "gaussian", "circuit"])
def test_measured_step_reports_the_perturbation_next_to_adam_and_changes_nothing(response):
    params0 = _model(first_numel=6)
    grads = _grads(params0, 3)
    kwargs = dict(lr=1e-2, quantum_weight=0.5, n_qubits=3, circuit_depth=1, response=response, scope="all")
    plain, _ = _run(lambda ps: SuperpositionalAdamW(ps, **kwargs), params0, grads)
    params = [torch.nn.Parameter(p.detach().clone()) for p in params0]
    opt = SuperpositionalAdamW(params, **kwargs)
    adamw_params = [torch.nn.Parameter(p.detach().clone()) for p in params0]
    adamw = torch.optim.AdamW(adamw_params, lr=1e-2, weight_decay=0.01)
    for i, step_grads in enumerate(grads):
        before = [p.detach().clone() for p in params]
        for p, q, g in zip(params, adamw_params, step_grads):
            p.grad, q.grad = g.clone(), g.clone()
            q.data.copy_(p.data)  # AdamW alone from the same point, with the same moments so far
        opt.measure_perturbation = i == 2
        opt.step()
        adamw.step()
    stats = opt.perturbation_stats()
    for a, b in zip(plain, params):  # measuring changed no value
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    adam_step = torch.cat([(q.detach() - b).flatten() for q, b in zip(adamw_params, before)])
    perturbation = torch.cat([(q.detach() - p.detach()).flatten() for q, p in zip(adamw_params, params)])
    assert stats["perturbed"] == stats["nonzero"] == sum(p.numel() for p in params)
    assert stats["adam_sq"] == pytest.approx(float(adam_step.double().square().sum()), rel=1e-4)
    assert stats["perturbation_sq"] == pytest.approx(float(perturbation.double().square().sum()), rel=1e-4)
    assert opt.perturbation_stats() == {"perturbation_sq": 0.0, "adam_sq": 0.0, "nonzero": 0.0, "perturbed": 0.0}


def test_leading_scope_on_coordinates_without_gradient_perturbs_nothing():
    """``scope: leading`` touches the first n_qubits coordinates: an embedding row whose
    token never occurs has zero gradient there, so Q is zero and λ changes nothing."""
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    params[0].grad = torch.zeros(5, 3)
    params[0].grad[2:] = 1.0  # rows 0-1 (coordinates 0-5) get no gradient
    params[1].grad = torch.ones(4)
    opt = SuperpositionalAdamW(params, quantum_weight=0.5, n_qubits=4, scope="leading")
    opt.measure_perturbation = True
    opt.step()
    stats = opt.perturbation_stats()
    assert stats["perturbed"] == 4 and stats["nonzero"] == 0 and stats["perturbation_sq"] == 0.0
