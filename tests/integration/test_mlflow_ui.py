"""Comparing a study's trials in the MLflow UI, in a real (headless) Chromium.

A finished study of 3 trials; `qstudy ui` serves its store on a free port of 127.0.0.1 (in
its own process group, ended here) and prints the links; the browser opens them:

- the runs page lists the study's trial runs, with the searched params and the objective
  as columns (the study's shared view), in "Model training" mode;
- the compare view of the trials names each searched param once, under its dotted name,
  and shows the objective;
- the parent run's description (``mlflow.note.content``) renders the summary table.

Screenshots go under the test's tmp folder; with ``QSTUDY_UPDATE_DOCS=1`` one of each page
is copied into ``docs/images/`` for the README. The browser is Debian's ``chromium`` and
``chromium-driver`` (``make test`` installs them where missing): nothing downloads a
browser at run time.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _studies import study_runs, sweep, write_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEARCHED = ["optimizer.quantum_weight", "quantum.circuit_depth"]
PAGE_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: `make browser` installs them "
            f"(found chromium={chromium}, chromedriver={driver})"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=2200,1400",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait_text(browser, wanted, timeout_s=PAGE_TIMEOUT_S) -> str:
    """The page's text once it holds every string of ``wanted``."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = browser.find_element(By.TAG_NAME, "body").text
        if all(w in text for w in wanted):
            return text
        time.sleep(1)
    pytest.fail(
        f"{browser.current_url}: the page never showed {[w for w in wanted if w not in text]}; it shows:\n{text[:3000]}"
    )


def _exact(browser, text: str) -> int:
    """How many elements have exactly ``text`` as their own text."""
    from selenium.webdriver.common.by import By

    return len(browser.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']"))


def _ui(path, cwd, port):
    """`qstudy ui path --port port`: its links once the UI answers, and the process."""
    log = open(cwd / "ui.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qstudy.cli", "ui", str(path), "--port", str(port), "--no-browser"],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            time.sleep(1)
    out = (cwd / "ui.log").read_text()
    assert proc.poll() is None, f"qstudy ui ended with {proc.returncode}:\n{out}"
    links = dict(re.findall(r"^  (runs|compare|study):\s+(\S+)$", out, re.M))
    return proc, links, out


def test_the_ui_shows_the_trials_the_compare_view_and_the_description(tmp_path):
    path = write_study(
        tmp_path, "ui",
        space={"optimizer.quantum_weight": {"type": "float", "low": 0.1, "high": 1.0},
               "quantum.circuit_depth": {"type": "int", "low": 1, "high": 2}},
        # λ on every coordinate, so that the trials' losses differ (scope leading perturbs
        # coordinates whose gradient is ~0 here, as in the smoke study).
        **{"trial.quantum.enabled": True, "trial.optimizer.response": "sin", "trial.optimizer.scope": "all"},
    )  # fmt: skip
    proc = sweep(path, tmp_path)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    client, parents, children = study_runs(tmp_path, "ui")
    assert len(children) == 3
    # The closing summary prints the links too (at qstudy ui's default port).
    eid = parents[0].info.experiment_id
    assert f"  runs:    http://127.0.0.1:5000/#/experiments/{eid}/runs?workflowType=machine_learning" in out
    assert "  compare: http://127.0.0.1:5000/#/compare-runs?runs=" in out

    port = _free_port()
    ui, links, ui_out = _ui(path, tmp_path, port)
    browser = None
    shots = {}
    try:
        assert set(links) == {"runs", "compare", "study"}, ui_out
        assert all(link.startswith(f"http://127.0.0.1:{port}/#/") for link in links.values()), links
        browser = _browser()

        browser.get(links["runs"])
        names = [r.info.run_name for r in children]
        text = _wait_text(browser, [*names, *SEARCHED, "eval_loss"])
        assert "ui/trial_0000" in text
        shots["runs"] = tmp_path / "mlflow-runs.png"
        browser.save_screenshot(str(shots["runs"]))

        browser.get(links["compare"])
        text = _wait_text(browser, ["Parallel Coordinates", *SEARCHED, "eval_loss"])
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        # The plot draws after the runs load: its axes carry the params' names.
        WebDriverWait(browser, PAGE_TIMEOUT_S).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .parcoords, .js-plotly-plot svg")
        )
        time.sleep(2)
        for name in SEARCHED:
            short = name.rsplit(".", 1)[-1]
            assert _exact(browser, short) == 0, f"{short}: a second name of {name} on the compare view"
        shots["compare"] = tmp_path / "mlflow-compare.png"
        browser.save_screenshot(str(shots["compare"]))

        browser.get(links["study"])
        _wait_text(browser, ["Description", "trial_0000"])

        for button in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
            button.click()  # the UI folds a long description
        _wait_text(browser, ["trial_0000", "trial_0002", "best:"])

        tables = [t.text for t in browser.find_elements(By.TAG_NAME, "table")]
        summary = [t for t in tables if "trial_0001" in t and "eval_loss" in t]
        assert summary, f"no rendered summary table on the study's run page; tables: {tables}"
        shots["study"] = tmp_path / "mlflow-study.png"
        browser.save_screenshot(str(shots["study"]))
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    if os.environ.get("QSTUDY_UPDATE_DOCS") == "1":
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        for shot in shots.values():
            shutil.copy(shot, REPO / "docs" / "images" / shot.name)
