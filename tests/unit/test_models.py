"""The quantum attention installed into HuggingFace Llama (docs/design.md §3)."""

import copy

import pytest
import torch
import transformers  # a hard dependency: an import failure is an error, not a skip

from qstudy.models import QUANTUM_ATTENTION, attention_modules, install_quantum_attention, load_quantum_llama
from qstudy.quantum import attention_response, quantum_attention, response_series

VOCAB = 97


def _llama(attn="sdpa", kv_heads=2, layers=2, seed=0):
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.set_attn_implementation(attn)
    return model.eval()


def _batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (3, 10), generator=generator)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    mask[2, 7:] = 0  # right padding
    return ids, mask


def _set_gates(model, value=0.7):
    with torch.no_grad():
        for module in attention_modules(model).values():
            if hasattr(module, "quantum_gate"):
                module.quantum_gate.copy_(torch.linspace(-value, value, module.quantum_gate.numel()))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_logits_equal_stock_llama_at_init(attn, kv_heads):
    stock = _llama(attn, kv_heads)
    quantum = install_quantum_attention(copy.deepcopy(stock))
    assert quantum.config._attn_implementation == QUANTUM_ATTENTION
    ids, mask = _batch()
    with torch.no_grad():
        for kwargs in ({"attention_mask": mask}, {}):
            expected, got = stock(ids, **kwargs).logits, quantum(ids, **kwargs).logits
            keep = kwargs.get("attention_mask", torch.ones_like(ids)).bool()
            assert torch.isfinite(got).all()
            assert (got - expected)[keep].abs().max() < 1e-5


def test_parameters_are_real_seeded_and_gates_start_at_zero():
    model = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=5)
    names = {name: p for name, p in model.named_parameters() if "quantum" in name}
    assert sorted(names) == sorted(
        f"model.layers.{i}.self_attn.quantum_{v}" for i in range(2) for v in ("a", "b", "gate")
    )
    assert names["model.layers.0.self_attn.quantum_a"].shape == (2, 3)
    assert names["model.layers.1.self_attn.quantum_gate"].tolist() == [0.0] * 4
    again = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=5)
    torch.testing.assert_close(again.model.layers[1].self_attn.quantum_b, names["model.layers.1.self_attn.quantum_b"])
    other = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=6)
    assert not torch.equal(other.model.layers[1].self_attn.quantum_b, names["model.layers.1.self_attn.quantum_b"])
    only_one = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=5, layers=[1])
    assert not hasattr(only_one.model.layers[0].self_attn, "quantum_a")
    torch.testing.assert_close(
        only_one.model.layers[1].self_attn.quantum_a, names["model.layers.1.self_attn.quantum_a"]
    )


def test_quantum_attention_matches_reference_with_gqa_and_mask():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    gate = torch.tensor([0.5, -1.0, 0.3, 2.0])
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool).tril()
    mask[1, :, 2:, :2] = False  # padding-like holes; every row keeps its diagonal
    series, omega = response_series(a, b)
    got = quantum_attention(query, key, value, series, omega, gate, attn_mask=mask, scale=0.3)
    k, v = key.repeat_interleave(2, dim=1), value.repeat_interleave(2, dim=1)
    scores = query @ k.transpose(-1, -2) * 0.3
    logits = scores + gate.view(4, 1, 1) * attention_response(scores, a, b)
    expected = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1) @ v
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    causal = quantum_attention(query, key, value, series, omega, gate, is_causal=True, scale=0.3)
    tril = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(
        causal, quantum_attention(query, key, value, series, omega, gate, attn_mask=tril, scale=0.3)
    )
    assert (causal - got)[1].abs().max() > 1e-3  # the holes in batch 1's mask mattered


def test_masked_positions_stay_masked_with_open_gates():
    model = install_quantum_attention(_llama())
    _set_gates(model)
    ids, mask = _batch()
    changed = ids.clone()
    changed[1, :3] = (changed[1, :3] + 5) % VOCAB  # padded tokens
    changed[0, 8:] = (changed[0, 8:] + 5) % VOCAB  # future tokens of positions < 8
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        other = model(changed, attention_mask=mask).logits
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(other[1, 3:], logits[1, 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(other[0, :8], logits[0, :8], atol=1e-5, rtol=0)
    assert (other[0, 8:] - logits[0, 8:]).abs().max() > 1e-3  # the change was seen where allowed


def test_gate_changes_outputs():
    model = install_quantum_attention(_llama())
    ids, _ = _batch()
    with torch.no_grad():
        before = model(ids).logits
        _set_gates(model)
        after = model(ids).logits
    assert (after - before).abs().max() > 1e-3


def test_generate_with_kv_cache_matches_full_forward():
    model = install_quantum_attention(_llama(kv_heads=2))
    _set_gates(model)
    ids, mask = _batch()
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        prefill = model(ids[:, :6], attention_mask=mask[:, :6], use_cache=True)
        cache, steps = prefill.cache, [prefill.logits]
        for position in range(6, 10):
            out = model(
                ids[:, position : position + 1], attention_mask=mask[:, : position + 1], cache=cache, use_cache=True
            )
            cache = out.cache
            steps.append(out.logits)
        incremental = torch.cat(steps, dim=1)
        keep = mask.bool()
        assert (incremental - full)[keep].abs().max() < 1e-4
        generated = model.generate(ids[:1, :5], max_new_tokens=6, do_sample=False)
        no_cache = model.generate(ids[:1, :5], max_new_tokens=6, do_sample=False, use_cache=False)
    assert generated.shape == (1, 11)
    assert torch.equal(generated, no_cache)


@pytest.mark.parametrize("simulator", ["torch", "aer"])
def test_training_moves_gate_and_angles(simulator):
    model = install_quantum_attention(_llama(), simulator=simulator)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask = _batch()
    attention = model.model.layers[0].self_attn
    a0, b0 = attention.quantum_a.detach().clone(), attention.quantum_b.detach().clone()
    for step in range(2):
        optimizer.zero_grad()
        model(ids, attention_mask=mask, labels=ids).loss.backward()
        if step == 0:
            assert attention.quantum_gate.grad.abs().min() > 0
        else:  # γ ≠ 0 now, so the circuit angles get gradients
            assert attention.quantum_a.grad.abs().max() > 0 and attention.quantum_b.grad.abs().max() > 0
        optimizer.step()
    assert attention.quantum_gate.detach().abs().min() > 0
    assert not torch.equal(attention.quantum_a.detach(), a0) and not torch.equal(attention.quantum_b.detach(), b0)


def test_aer_and_torch_simulators_give_the_same_gradients():
    grads = {}
    for simulator in ("torch", "aer"):
        model = install_quantum_attention(_llama(), simulator=simulator)
        _set_gates(model)
        ids, mask = _batch()
        model(ids, attention_mask=mask, labels=ids).loss.backward()
        attention = model.model.layers[1].self_attn
        grads[simulator] = torch.cat([attention.quantum_a.grad.flatten(), attention.quantum_b.grad.flatten()])
    assert grads["torch"].abs().max() > 0
    torch.testing.assert_close(grads["aer"], grads["torch"], atol=1e-6, rtol=1e-4)


def test_save_and_load_keep_the_layer_and_its_values(tmp_path):
    model = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=1, layers=[1], seed=4)
    _set_gates(model)
    with torch.no_grad():
        model.model.layers[1].self_attn.quantum_a.add_(0.25)
    ids, mask = _batch()
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
    model.save_pretrained(tmp_path)
    loaded = load_quantum_llama(tmp_path).eval()
    assert type(loaded) is transformers.LlamaForCausalLM
    assert loaded.config._attn_implementation == QUANTUM_ATTENTION
    assert loaded.config.quantum_attention["layers"] == [1]
    assert not hasattr(loaded.model.layers[0].self_attn, "quantum_a")
    for name in ("quantum_a", "quantum_b", "quantum_gate"):
        torch.testing.assert_close(
            getattr(loaded.model.layers[1].self_attn, name), getattr(model.model.layers[1].self_attn, name)
        )
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, attention_mask=mask).logits, expected, atol=1e-6, rtol=0)


def test_load_refuses_a_checkpoint_without_the_layer(tmp_path):
    _llama().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no 'quantum_attention' entry"):
        load_quantum_llama(tmp_path)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n_qubits": 0}, "n_qubits must be an integer in [1, 12], got n_qubits=0"),
        ({"n_qubits": 13}, "n_qubits must be an integer in [1, 12], got n_qubits=13"),
        ({"circuit_depth": 0}, "circuit_depth must be an integer >= 1, got circuit_depth=0"),
        ({"simulator": "qpu"}, "simulator must be one of ['torch', 'aer'], got simulator='qpu'"),
        ({"layers": [0, 5]}, "layers must be indices in [0, 1], got layers=[0, 5]"),
        ({"layers": []}, "layers must be None (all) or a non-empty list of layer indices, got layers=()"),
    ],
)
def test_bad_options_name_argument_value_and_range(kwargs, message):
    with pytest.raises(ValueError) as error:
        install_quantum_attention(_llama(), **kwargs)
    assert message in str(error.value)


def test_installing_twice_is_refused():
    model = install_quantum_attention(_llama())
    with pytest.raises(ValueError, match="already has the quantum attention"):
        install_quantum_attention(model)


def _with_compile(model):
    for module in model.modules():
        if hasattr(module, "quantum_options"):
            module.quantum_options = type(module.quantum_options)(compile=True)
    return model


def test_compiled_attention_equals_eager(monkeypatch):
    import qstudy.models as models

    monkeypatch.setitem(models._COMPILE_STATE, "function", None)
    monkeypatch.setitem(models._COMPILE_STATE, "failed", False)
    eager = install_quantum_attention(_llama())
    _set_gates(eager)
    compiled = _with_compile(copy.deepcopy(eager))
    ids, mask = _batch()
    results = []
    for model in (eager, compiled):
        out = model(ids, attention_mask=mask, labels=ids)
        out.loss.backward()
        results.append((out.logits.detach(), model.model.layers[0].self_attn.quantum_a.grad))
    assert models._COMPILE_STATE["function"] is not None and not models._COMPILE_STATE["failed"]
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-6, rtol=1e-4)


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    import qstudy.models as models

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setitem(models._COMPILE_STATE, "function", broken)
    monkeypatch.setitem(models._COMPILE_STATE, "failed", False)
    model = install_quantum_attention(_llama())
    _set_gates(model)
    ids, mask = _batch()
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits
        got = _with_compile(model)(ids, attention_mask=mask).logits
    torch.testing.assert_close(got, expected)
    assert models._COMPILE_STATE["failed"]
    assert "no C++ compiler" in caplog.text


# ------------------------------------------------------------- build_model under ZeRO-3
def _build_trial(preset="zero3", **model):
    from qstudy.config import TrialConfig

    return TrialConfig.model_validate(
        {
            "model": {"preset": "llama-tiny", **model},
            "quantum": {"n_qubits": 3, "circuit_depth": 2, "seed": 7},
            "deepspeed": {"preset": preset},
            "train": {"global_batch_size": 4, "micro_batch_size": 4},
        }
    )


def _trial_data():
    from types import SimpleNamespace

    return SimpleNamespace(kind="causal_lm", vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _ds_config(trial):
    from qstudy.train import deepspeed_config

    return deepspeed_config(trial, use_gpu=False)


@pytest.fixture(scope="module")
def single_rank_group(tmp_path_factory):
    """A one-process gloo group: zero.Init partitions over it (DeepSpeed wraps it, DS_ACCELERATOR=cpu).

    zero.Init reads LOCAL_RANK; Ray Train sets it (and RANK, WORLD_SIZE) in its workers.
    """
    import torch.distributed as dist

    with pytest.MonkeyPatch.context() as env:
        for name, value in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}.items():
            env.setenv(name, value)
        store = dist.FileStore(str(tmp_path_factory.mktemp("dist") / "store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        yield
        dist.destroy_process_group()


def _gathered(model) -> dict[str, torch.Tensor]:
    import deepspeed

    params = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values())):
        return {name: p.detach().clone() for name, p in params.items()}


def test_zero3_config_builds_a_partitioned_model(single_rank_group):
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from qstudy.models import build_model

    trial = _build_trial()
    eager = build_model(trial, _trial_data())
    torch.manual_seed(0)
    model = build_model(trial, _trial_data(), deepspeed_config=_ds_config(trial))
    assert not is_deepspeed_zero3_enabled()  # the HfDeepSpeedConfig global is gone
    assert model.config._attn_implementation == QUANTUM_ATTENTION
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(name for name, _ in eager.named_parameters())
    assert [name for name, p in params.items() if not hasattr(p, "ds_id")] == []  # quantum ones included
    assert {name: p.ds_numel for name, p in params.items()} == {name: p.numel() for name, p in eager.named_parameters()}
    values = _gathered(model)
    # Initialised by transformers' ZeRO-3 path, not left as uninitialised storage; the
    # quantum angles keep their own seeded draw.
    assert values["model.norm.weight"].tolist() == [1.0] * 64
    assert 0.015 < float(values["model.embed_tokens.weight"].std()) < 0.025  # initializer_range 0.02
    for name in ("quantum_a", "quantum_b", "quantum_gate"):
        key = f"model.layers.1.self_attn.{name}"
        torch.testing.assert_close(values[key], dict(eager.named_parameters())[key].detach())
    # Same seed, same weights: rank 0 initialises from the global generator.
    torch.manual_seed(0)
    again = _gathered(build_model(trial, _trial_data(), deepspeed_config=_ds_config(trial)))
    assert all(torch.equal(values[name], again[name]) for name in values)


def test_zero3_checkpoint_loads_into_partitions(single_rank_group, tmp_path):
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from qstudy.models import build_model

    saved = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=1, seed=4)
    _set_gates(saved)
    saved.save_pretrained(tmp_path)
    trial = _build_trial(path=str(tmp_path))
    trial = trial.model_copy(
        update={"quantum": trial.quantum.model_copy(update={"circuit_depth": 1})}
    )  # the checkpoint's
    model = build_model(trial, _trial_data(), deepspeed_config=_ds_config(trial))
    assert not is_deepspeed_zero3_enabled()
    assert all(hasattr(p, "ds_id") for p in model.parameters())
    values = _gathered(model)
    expected = dict(saved.named_parameters())
    assert sorted(values) == sorted(expected)
    for name, value in values.items():  # the trained gates too, not the layer's initial zeros
        torch.testing.assert_close(value, expected[name].detach(), atol=0, rtol=0, msg=name)


def test_other_stages_build_the_whole_model_as_before():
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from qstudy.models import build_model, llama_config_kwargs

    trial = _build_trial("zero2")
    torch.manual_seed(0)
    model = build_model(trial, _trial_data(), deepspeed_config=_ds_config(trial))
    assert not is_deepspeed_zero3_enabled()
    assert not any(hasattr(p, "ds_id") for p in model.parameters())
    kwargs = llama_config_kwargs("llama-tiny")
    kwargs.update(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    plain = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**kwargs)
    )  # the constructor build_model used to call
    got = dict(model.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.equal(got[name], p), name
    assert sorted(set(got) - {name for name, _ in plain.named_parameters()}) == sorted(
        f"model.layers.{i}.self_attn.quantum_{v}" for i in range(2) for v in ("a", "b", "gate")
    )


# ------------------------------------------------------------- the series cache
def test_no_grad_forward_sees_angles_written_behind_autograds_back():
    """DeepSpeed writes trained weights into the parameters' storage without bumping their
    version counter (``.data`` writes do the same): a no-grad forward must still use the
    current angles, as a freshly built model with the same weights does."""
    model = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=1)
    _set_gates(model, 3.0)
    ids, mask = _batch()
    with torch.no_grad():
        before = model(ids, attention_mask=mask).logits  # fills the cache
    attention = model.model.layers[0].self_attn
    version = attention.quantum_a._version
    attention.quantum_a.data.add_(0.5)  # storage and version unchanged
    assert attention.quantum_a._version == version
    fresh = install_quantum_attention(_llama(), n_qubits=3, circuit_depth=2, seed=1)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        after, expected = model(ids, attention_mask=mask).logits, fresh.eval()(ids, attention_mask=mask).logits
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, atol=0, rtol=0)


# ------------------------------------------------------------- checkpoints saved with the layer
def test_checkpoint_quantum_mismatches_name_each_differing_setting():
    from qstudy.config import QuantumConfig
    from qstudy.models import checkpoint_quantum_mismatches

    saved = {"n_qubits": 3, "circuit_depth": 1, "layers": [1], "simulator": "torch", "seed": 4, "compile": False}
    same = QuantumConfig(n_qubits=3, circuit_depth=1, layers=[1], simulator="aer", seed=9, compile=True)
    assert checkpoint_quantum_mismatches(saved, same) == []  # simulator, compile and seed are the trial's
    other = QuantumConfig(n_qubits=4, circuit_depth=2, layers=None)
    assert checkpoint_quantum_mismatches(saved, other) == [
        ("n_qubits", 3, 4),
        ("circuit_depth", 1, 2),
        ("layers", [1], None),
    ]
    assert checkpoint_quantum_mismatches(saved, QuantumConfig(enabled=False)) == [("enabled", True, False)]


def _quantum_checkpoint(tmp_path):
    from qstudy.data import byte_tokenizer

    tok = byte_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
    )
    model = install_quantum_attention(transformers.LlamaForCausalLM(config), n_qubits=3, circuit_depth=1, seed=4)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_a_checkpoints_circuit_must_match_the_trials(tmp_path):
    from qstudy.config import TrialConfig
    from qstudy.models import build_model
    from qstudy.train._preflight import check_paths

    path = _quantum_checkpoint(tmp_path)
    trial = TrialConfig.model_validate({"model": {"path": str(path)}, "quantum": {"n_qubits": 4, "circuit_depth": 1}})
    problems = check_paths(trial, "t.yaml")
    assert problems == [
        f"t.yaml: quantum.n_qubits: must match the checkpoint's quantum attention (3 in {path / 'config.json'}), got 4"
    ]
    with pytest.raises(ValueError, match=r"quantum.n_qubits is 4, the checkpoint has 3"):
        build_model(trial, _trial_data())
    matching = trial.model_copy(
        update={"quantum": trial.quantum.model_copy(update={"n_qubits": 3, "simulator": "aer"})}
    )
    assert check_paths(matching, "t.yaml") == []
    model = build_model(matching, _trial_data())
    options = {m.quantum_options for m in attention_modules(model).values()}
    assert {(o.n_qubits, o.circuit_depth, o.simulator) for o in options} == {(3, 1, "aer")}  # the trial's simulator ran


def test_attention_modules_are_every_layer_with_or_without_the_circuit():
    model = install_quantum_attention(_llama(layers=3), n_qubits=2, circuit_depth=1, layers=[1])
    modules = attention_modules(model)
    assert list(modules) == [0, 1, 2]
    assert [hasattr(m, "quantum_gate") for m in modules.values()] == [False, True, False]
    assert modules[2] is model.model.layers[2].self_attn
    with pytest.raises(ValueError, match="found no Llama-style attention modules in Linear"):
        attention_modules(torch.nn.Linear(2, 2))


def test_llama_config_kwargs_is_the_presets_architecture_with_its_depth_override():
    from qstudy.config import MODEL_PRESETS
    from qstudy.models import LLAMA_PRESETS, llama_config_kwargs

    assert set(LLAMA_PRESETS) == set(MODEL_PRESETS)  # every preset a config accepts can be built
    eight = llama_config_kwargs("llama-3.1-8b")
    assert (eight["hidden_size"], eight["num_hidden_layers"], eight["num_key_value_heads"]) == (4096, 32, 8)
    shallow = llama_config_kwargs("llama-3.1-8b", num_hidden_layers=2)
    assert shallow == {**eight, "num_hidden_layers": 2}
    shallow["hidden_size"] = 1  # a copy: the caller may change it
    assert LLAMA_PRESETS["llama-3.1-8b"]["hidden_size"] == 4096
