"""After training under DeepSpeed, a no-grad eval and greedy generation see the trained
circuit angles: they equal those of a fresh model loaded with the same weights.

DeepSpeed writes updated weights back into the parameters' storage without bumping their
version counter; a cache of Φ's series keyed on storage and version served step 0's
angles to every later eval (eval loss off by 3e-2 with gates at 3). One real process per
ZeRO stage (``_fresh_eval_worker.py``, gloo, ``DS_ACCELERATOR=cpu``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "_fresh_eval_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("preset", ["zero0", "zero2", "zero3"])
def test_eval_and_generation_equal_a_fresh_model_with_the_same_weights(tmp_path, preset):
    out = tmp_path / "result.json"
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_SIZE="1",
        OMP_NUM_THREADS="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))
    done = subprocess.run(
        [sys.executable, str(WORKER), preset, str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["angles_moved"] > 1e-2  # the circuit did change
    assert abs(result["trained"]["eval_loss"] - result["before"]["eval_loss"]) > 1e-3  # and so did the model
    assert result["trained"]["eval_loss"] == pytest.approx(result["fresh"]["eval_loss"], abs=1e-6, rel=1e-6)
    assert result["trained"]["logits_sum"] == pytest.approx(result["fresh"]["logits_sum"], rel=1e-6)
    assert result["trained"]["generated"] == result["fresh"]["generated"]
