"""A study on a running two-node Ray cluster: `ray start --head` plus a second
`ray start --address=...` on this machine, each node with 1 CPU. A study of 1-CPU trials
run two at a time must then put its trials on both nodes; the same study also goes
through `ray job submit`, as the README's cluster section does.

The cluster is the test's own: its temp dir (and with it `ray_current_cluster`), its
ports and its auth token file. Each `ray start --block` leads a process group of its own,
holding every process of that node; teardown ends those two groups and nothing else
(never `ray stop`, which would end every Ray on the machine).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120


@dataclass
class Cluster:
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    head_node: str
    worker_node: str
    logs: list[Path]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_ports() -> list[str]:
    """Ports of one node's own processes: two raylets on one host must not share them."""
    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port"]  # fmt: skip
    return [f"--{name}={_free_port()}" for name in names] + ["--min-worker-port=0", "--max-worker-port=0"]


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [str(VENV_BIN / "ray"), "start", "--block", "--num-cpus=1", "--num-gpus=0",
               f"--object-store-memory={256 * 1024**2}", "--disable-usage-stats", *_node_ports(), *args]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _end(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node's process group, then SIGKILL what is left of it (a blocked
    `ray start` can hang in its graceful shutdown)."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children outlive a killed `ray start`
        except ProcessLookupError:
            pass
        proc.wait()


def _nodes(cluster_env: dict[str, str], address: str, count: int) -> dict[str, dict[str, float]]:
    """Alive node id -> resources, once ``count`` nodes are alive (in a subprocess: this
    test process never joins the cluster, so the local-Ray tests around it are untouched)."""
    script = f"""
import json, time, ray
ray.init(address={address!r}, log_to_driver=False)
deadline = time.monotonic() + {START_TIMEOUT_S}
while True:
    alive = {{n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}}
    if len(alive) >= {count} or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print("NODES=" + json.dumps(alive))
"""
    out = subprocess.run([sys.executable, "-c", script], env=cluster_env, capture_output=True, text=True,
                         timeout=START_TIMEOUT_S + 60)  # fmt: skip
    line = [x for x in out.stdout.splitlines() if x.startswith("NODES=")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[-1][len("NODES=") :])


def _log_tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs if p.exists())


@pytest.fixture(scope="module")
def two_node_ray():
    # A short temp dir: Ray's unix socket paths under it must stay within 107 characters.
    base = Path(tempfile.mkdtemp(prefix="qs2n-", dir="/tmp"))
    token = base / "auth_token"
    token.write_text(secrets.token_hex(32))
    # Token auth with the test's own token file: Ray 2.60 turns it on for a head wherever
    # ~/.ray/auth_token exists, and a joining node must then be told so explicitly.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
           "DS_ACCELERATOR": "cpu", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    port, dashboard = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    logs = [base / "head.log", base / "worker.log"]
    procs = []
    try:
        procs.append(_ray_start(
            ["--head", f"--port={port}", f"--temp-dir={base}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard}", "--resources", json.dumps({"qstudy_test_head": 1})],
            env, logs[0],
        ))  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (base / "ray_current_cluster").exists():  # written once the head is up
            assert procs[0].poll() is None and time.monotonic() < deadline, _log_tails(logs)
            time.sleep(0.5)
        # The second node gets a temp dir of its own, as a real second machine has: nodes
        # sharing one unpack a job's working_dir into the same folder, and the second
        # unpack pulls the folder from under the running driver (its cwd vanishes).
        procs.append(_ray_start(
            [f"--address={address}", f"--temp-dir={base / 'w'}", "--resources", json.dumps({"qstudy_test_worker": 1})],
            env, logs[1],
        ))  # fmt: skip
        nodes = _nodes(env, address, 2)
        assert len(nodes) == 2, f"{nodes}\n{_log_tails(logs)}"
        head = next(node for node, res in nodes.items() if "qstudy_test_head" in res)
        worker = next(node for node, res in nodes.items() if "qstudy_test_worker" in res)
        yield Cluster(address, f"http://127.0.0.1:{dashboard}", env, head, worker, logs)
    finally:
        _end(procs)
        shutil.rmtree(base, ignore_errors=True)


def _cluster_study(tmp_path: Path, name: str) -> Path:
    """Three 1-CPU trials, two at a time; absolute paths, as a cluster's study file has."""
    return write_study(
        tmp_path, name, storage_path=str(tmp_path / "runs"), **{"tracking.uri": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    )


def _assert_ran_on_both_nodes(tmp_path: Path, name: str, cluster: Cluster) -> None:
    _, parents, children = study_runs(tmp_path, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    assert all(r.data.tags["qstudy.status"] == "completed" for r in children)
    nodes = {r.data.tags["qstudy.trial_id"]: r.data.tags["qstudy.worker_nodes"] for r in children}
    assert set(nodes.values()) <= {cluster.head_node, cluster.worker_node}, nodes  # one worker: one node each
    assert set(nodes.values()) == {cluster.head_node, cluster.worker_node}, nodes


def test_study_on_a_two_node_cluster_uses_both_nodes(two_node_ray, tmp_path):
    path = _cluster_study(tmp_path, "twonode")
    proc = sweep(path, tmp_path, address=two_node_ray.gcs_address, env=two_node_ray.env)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:] + _log_tails(two_node_ray.logs)
    assert "study twonode: 3/3 trials" in out
    _assert_ran_on_both_nodes(tmp_path, "twonode", two_node_ray)


def test_the_same_study_through_ray_job_submit(two_node_ray, tmp_path):
    path = _cluster_study(tmp_path, "viajob")
    # The README's command: the checkout as the job's working directory, the driver on the
    # head, `--address auto` (the job's RAY_ADDRESS) to find the cluster.
    command = [str(VENV_BIN / "ray"), "job", "submit", "--address", two_node_ray.dashboard_url, "--working-dir", str(ROOT),
               "--submission-id", f"qstudy-test-{secrets.token_hex(4)}", "--",
               "python", "-m", "qstudy.cli", "sweep", str(path), "--address", "auto"]  # fmt: skip
    out = subprocess.run(command, env=two_node_ray.env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:] + _log_tails(two_node_ray.logs)
    assert "succeeded" in text and "study viajob: 3/3 trials" in text
    _assert_ran_on_both_nodes(tmp_path, "viajob", two_node_ray)
