"""cluster.yaml (docs/design.md §4, Cluster) against Ray 2.60's own cluster-config checks, the
pins of pyproject.toml and the paths of the GPU study file. No cloud call: what `ray up`
does before it touches AWS (prepare_config + validate_config), nothing after."""

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
GPU_TYPES = {"gpu_a100x8": ("p4d.24xlarge", 96), "gpu_h100x8": ("p5.48xlarge", 192)}


@pytest.fixture(scope="module")
def raw():
    with open(ROOT / "cluster.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def cluster(raw):
    # The order of ray.autoscaler._private.commands._bootstrap_config (`ray up`): defaults
    # merged, setup commands merged, then the JSON schema and the cross-field checks.
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


@pytest.fixture(scope="module")
def pins():
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    out = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        (spec,) = req.specifier  # every dependency is pinned with exactly one ==
        assert spec.operator == "==", line
        out[req.name] = spec.version
    out["python"] = project["requires-python"]
    return out


def _volumes(config):
    """``{container_path: host_path}`` of the docker ``--volume``/``-v`` run options."""
    out = {}
    for option in config["docker"].get("run_options", []):
        match = re.fullmatch(r"(?:--volume[= ]|-v )(\S+?):(\S+?)(?::\w+)?", option)
        if match:
            out[match.group(2)] = match.group(1)
    return out


def test_ray_schema_accepts_the_file(cluster):
    assert cluster["provider"]["type"] == "aws"
    assert cluster["head_node_type"] == "head_cpu"


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda c: c["available_node_types"]["gpu_a100x8"]["resources"].update(GPU=0.5), "GPU"),  # integers only
        (lambda c: c.update(worker_nodes_typo={}), "worker_nodes_typo"),  # no unknown top-level keys
        (lambda c: c["docker"].update(imgae="x"), "imgae"),
    ],
)
def test_ray_schema_rejects_a_broken_copy(raw, edit, where):
    """The validation above is live: the same checks refuse a copy with one mistake."""
    broken = copy.deepcopy(raw)
    edit(broken)
    with pytest.raises(jsonschema.ValidationError) as info:
        validate_config(prepare_config(broken))
    assert where in str(info.value)


def test_head_takes_no_trials(cluster):
    head = cluster["available_node_types"]["head_cpu"]
    assert head["resources"].get("CPU") == 0
    assert head["resources"].get("GPU", 0) == 0
    assert head["min_workers"] == head["max_workers"] == 0  # filled in by prepare_config
    assert not head["node_config"]["InstanceType"].startswith(("p", "g"))  # a CPU instance


@pytest.mark.parametrize("name", sorted(GPU_TYPES))
def test_gpu_worker_types(cluster, name):
    instance, vcpus = GPU_TYPES[name]
    node = cluster["available_node_types"][name]
    assert node["node_config"]["InstanceType"] == instance
    assert node["resources"] == {"CPU": vcpus, "GPU": 8}
    # Left out, Ray picks its default AMI: Ubuntu 18.04, CUDA 11.2, no H100 driver.
    assert node["node_config"]["ImageId"].startswith("ami-")
    assert 0 <= node["min_workers"] <= node["max_workers"]
    assert node["max_workers"] >= 1


def test_worker_counts_fit_the_global_cap_and_the_paper_study(cluster):
    types = cluster["available_node_types"]
    assert set(types) == {"head_cpu", *GPU_TYPES}
    assert sum(t["min_workers"] for t in types.values()) <= cluster["max_workers"]
    assert sum(types[n]["max_workers"] for n in GPU_TYPES) <= cluster["max_workers"]
    # The paper study runs max_concurrent trials of num_workers GPUs, one node each.
    with open(ROOT / "search_spaces/paper_gsm8k_llama1b.yaml") as f:
        study = yaml.safe_load(f)
    res = study["trial"]["resources"]
    for name, (_, vcpus) in GPU_TYPES.items():
        assert res["num_workers"] <= 8 and res["num_workers"] * res["cpus_per_worker"] <= vcpus
        assert types[name]["max_workers"] >= study["max_concurrent"], name


def test_repo_is_mounted_and_installed(cluster):
    (remote,) = [r for r, local in cluster["file_mounts"].items() if (ROOT / local).resolve() == ROOT]
    # `ray submit` runs its script from ~: a `qstudy` folder in ~ would be imported as
    # a namespace package in place of the installed one.
    assert Path(remote) != Path("/home/ray/qstudy")
    assert f"pip install --quiet -e {remote}" in cluster["worker_setup_commands"]
    assert f"pip install --quiet -e {remote}" in cluster["head_setup_commands"]
    assert ".gitignore" in cluster["rsync_filter"]  # keeps .venv, mlruns.db, qstudy_runs local


def test_image_and_setup_pin_pyproject_versions(cluster, pins):
    image = cluster["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<py>\d)(?P<minor>\d+)-gpu", image)
    assert match, image
    assert match["ray"] == pins["ray"]
    assert f"{match['py']}.{match['minor']}" in SpecifierSet(pins["python"])
    setup = " ".join(cluster["worker_setup_commands"])
    for name in ("torch", "deepspeed"):
        assert f'"{name}=={pins[name]}"' in setup, name
    # Nothing in setup re-installs ray at another version than the image's.
    assert re.findall(r"\bray(?:\[[^\]]*\])?==([\d.]+)", setup) in ([], [pins["ray"]])


def test_study_paths_resolve_to_shared_storage(cluster):
    """The GPU study's storage_path, model and data paths are one EFS-backed volume on
    every node: Ray 2.60 does not sync checkpoints to the head."""
    with open(ROOT / "search_spaces/paper_gsm8k_llama1b.yaml") as f:
        study = yaml.safe_load(f)
    volumes = _volumes(cluster)
    paths = [study["storage_path"], study["trial"]["model"]["path"]]
    paths += [study["trial"]["data"][k] for k in ("train_path", "eval_path")]
    for path in paths:
        mounts = [c for c in volumes if Path(path).is_relative_to(c)]
        assert mounts, f"{path} is on no shared volume: {volumes}"
        assert volumes[mounts[0]].startswith("/shared"), volumes[mounts[0]]
    init = " ".join(cluster["initialization_commands"])
    assert "mount -t nfs4" in init and " /shared" in init


def test_head_runs_the_mlflow_server(cluster):
    start = " ".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in start
    assert re.search(r"mlflow server .*--backend-store-uri sqlite:////\S+ .*--port 5000", start)
    assert "--host 0.0.0.0" in start  # reachable from the forwarded port and other nodes
    assert any("boto3" in c for c in cluster["head_setup_commands"])  # the autoscaler needs it
