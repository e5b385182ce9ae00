"""The agent on the Raspberry Pi's architecture: an arm64 Debian bookworm Python 3.11
root under qemu-user, edgebench installed into it the way the README tells a Pi user
(a wheelhouse built here with `controller wheelhouse`, installed offline into a venv),
measured by this host's controller over loopback ZeroMQ.

Timings under emulation mean nothing: the test checks that the install works, the cells
are ok, the runtime reports aarch64, and that the outputs on a fixed input equal an x86
agent's. Skipped where this machine cannot run qemu-user (not root, no qemu-user-static,
no arm64 package lists, no binfmt_misc).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.wire.protocol import CellSpec, Evaluation
from agent.wire.records import Settings
from controller import wheelhouse
from controller.client import AgentClient
from controller.local_agent import LocalAgent, read_line
from tests.support import EXAMPLE_MODELS, ROOT, arm64_root

START_TIMEOUT_S = 300.0  # the emulated agent imports numpy and pyzmq at a tenth of native speed
INSTALL_TIMEOUT_S = 600
MODELS = {"mobilenet_v2_035_96_fp32.tflite": 1e-4, "digits_cnn_int8.tflite": None}  # None: one quantum
QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=2, min_secs=0)


@pytest.fixture(scope="session")
def arm64_venv(tmp_path_factory) -> Path:
    """The root, and edgebench installed into a venv in it from a host-built wheelhouse."""
    if os.geteuid() != 0:
        pytest.skip("needs root: registering qemu's binfmt_misc handler and unpacking packages")
    try:
        arm64_root.check_host()
    except arm64_root.RootUnavailable as exc:
        pytest.skip(f"cannot run aarch64 programs under qemu-user here: {exc}")
    base = tmp_path_factory.mktemp("arm64")
    root = base / "root"
    python = arm64_root.assemble(root, base / "debs")
    house = wheelhouse.build(wheelhouse.TARGETS["bookworm-aarch64"], base / "wheelhouse")
    env = arm64_root.environment(root)
    venv = root / "opt" / "edgebench"
    # The README's steps 2 and 3 on the Pi; the venv gets its pip from Debian's own wheel
    # (ensurepip under emulation would take minutes for the same pip).
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], env=env, check=True,
                   timeout=INSTALL_TIMEOUT_S)
    (pip_wheel,) = (root / "usr" / "share" / "python-wheels").glob("pip-*.whl")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "--no-index",
         "--find-links", ".", f"./{house.wheel.name}[{house.extra}]"],
        cwd=house.directory, env={**env, "PYTHONPATH": str(pip_wheel)}, capture_output=True, text=True,
        timeout=INSTALL_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return venv


class EmulatedAgent:
    """`agent serve` from the venv's console script, running under qemu-aarch64."""

    def __init__(self, venv: Path, data_dir: Path):
        root = venv.parents[1]
        self.log = data_dir.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(venv / "bin" / "agent"), "serve", "--bind", "tcp://127.0.0.1:*", "--insecure",
                 "--data-dir", str(data_dir)],
                env=arm64_root.environment(root), stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        line = read_line(self.process.stdout, START_TIMEOUT_S)
        if not line.startswith("edgebench agent listening on "):
            self.stop()
            raise AssertionError(f"the emulated agent did not start: {line!r}\n{self.log.read_text()[-2000:]}")
        self.endpoint = line.split()[-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture(scope="session")
def emulated_agent(arm64_venv, tmp_path_factory):
    agent = EmulatedAgent(arm64_venv, tmp_path_factory.mktemp("arm64-agent") / "data")
    yield agent
    agent.stop()


def _outputs(endpoint: str, model: Path) -> Evaluation:
    """The model's outputs on the agent's fixed random inputs (seed 7), XNNPACK, one thread."""
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    done = []
    with AgentClient(endpoint) as client:
        client.hello(timeout_s=120)
        client.push_model(str(model), sha, model.stat().st_size, model.name)
        client.run_job(f"outputs-{model.stem}", [CellSpec(
            model_sha256=sha, model_name=model.name, delegate="xnnpack", threads=1, settings=QUICK,
            seed=7, evaluate=True)], on_cell=done.append)
    (result,) = done
    assert result.cell.status == "ok", result.cell.error
    return result.evaluation


def _output_quantum(model: Path) -> float:
    from ai_edge_litert.interpreter import Interpreter

    scale, _ = Interpreter(model_path=str(model)).get_output_details()[0]["quantization"]
    return float(scale)


def test_controller_run_through_the_emulated_agent(emulated_agent, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "pi-emulated.toml").write_text(
        f'name = "pi-emulated"\ntransport = "zmq"\naddress = "{emulated_agent.endpoint}"\n'
        'threads = [1]\ndelegates = ["cpu", "xnnpack"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--device", "pi-emulated", "--models",
         str(EXAMPLE_MODELS / "digits_cnn_int8.tflite"), "--warmup-runs", "1", "--warmup-min-secs", "0",
         "--num-runs", "3", "--min-secs", "0", "--json", "--db", str(tmp_path / "history.sqlite")],
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads(result.stdout)
    device = run["devices"]["pi-emulated"]
    assert device["facts"]["machine"] == "aarch64"
    assert device["facts"]["python_arch"] == "aarch64-linux-gnu 64-bit"
    assert device["facts"]["cpu"]["model"] == "Cortex-A72"  # the captured Pi's cores, under the root
    assert device["runtime"] == "ai-edge-litert"
    assert [(c["delegate"], c["status"]) for c in run["cells"]] == [("cpu", "ok"), ("xnnpack", "ok")], \
        [c["error"] for c in run["cells"]]
    assert all(c["latency_us"]["count"] >= 3 for c in run["cells"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_outputs_on_aarch64_equal_the_x86_outputs(emulated_agent, tmp_path, name):
    model = EXAMPLE_MODELS / name
    with LocalAgent(tmp_path / "x86") as native:
        expected = _outputs(native.endpoint, model)
    emulated = _outputs(emulated_agent.endpoint, model)
    assert emulated.inputs == expected.inputs == "random:7:16"
    arm = np.frombuffer(emulated.outputs, dtype="<f4")
    x86 = np.frombuffer(expected.outputs, dtype="<f4")
    assert arm.shape == x86.shape and arm.size == expected.samples * expected.values
    tolerance = MODELS[name] if MODELS[name] is not None else _output_quantum(model) * 1.001
    assert np.max(np.abs(arm - x86)) <= tolerance
