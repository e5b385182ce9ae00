"""The Android runner against the emulated phone, through the real adb-shell client."""

from __future__ import annotations

import hashlib
import shutil
import statistics
import time
from pathlib import Path

import pytest

from agent.android.runner import AndroidRunner
from agent.cache import ModelCache
from agent.jobs import cell_template
from agent.wire.protocol import AndroidTarget, CellSpec
from agent.wire.records import Settings
from tests.support import EXAMPLE_MODELS
from tests.support.phone import emulated_phone

QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0, max_secs=1)


def cached(cache: ModelCache, path: Path, kind: str = "model") -> str:
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cache.path(sha, kind).write_bytes(data)
    return sha


@pytest.fixture
def model_sha(cache) -> str:
    return cached(cache, EXAMPLE_MODELS / "digits_cnn_fp32.tflite")


@pytest.fixture
def cache(tmp_path) -> ModelCache:
    return ModelCache(tmp_path / "agent" / "models")


def direct_p50(model: Path, threads: int, runs: int = 20) -> float:
    """The median invoke time in us of the model run here with LiteRT, for a sanity factor."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        times.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(times)


def spec(sha: str, delegate: str = "xnnpack", threads: int = 2) -> CellSpec:
    return CellSpec(model_sha256=sha, model_name="digits.tflite", delegate=delegate, threads=threads,
                    settings=QUICK)


def run(runner: AndroidRunner, target: AndroidTarget, cell_spec: CellSpec):
    return runner.run(target, cell_spec, cell_template(cell_spec, 1234))


@pytest.fixture
def runner(cache, tmp_path):
    running = AndroidRunner(cache, tmp_path / "agent" / "adb", auth_timeout_s=1, init_allowance_s=10)
    yield running
    running.close()


def test_cells_run_with_their_flags_and_files_are_pushed_once(phone, runner, cache, stand_in, model_sha):
    target = AndroidTarget(address=phone.address, binary_sha256=cached(cache, stand_in, "binary"), taskset="1")
    ok = run(runner, target, spec(model_sha, "xnnpack", 2))
    assert ok.status == "ok", ok.error
    assert ok.runtime == "benchmark_model" and ok.settings == QUICK
    lat = ok.latency_us
    assert lat.count == 5 and lat.min <= lat.p50 <= lat.max  # the stand-in ran the real interpreter 5 times
    assert ok.init_ms > 0 and ok.memory_mb.overall is not None
    assert ok.memory_mb.peak_rss is None  # the tool prints no periodic peak unless asked
    assert ok.device_state.temp_c_start == pytest.approx(41.5)
    assert ok.device_state.cpu_freq_mhz_end == pytest.approx(2400)
    assert ok.model_size_bytes == 1234 and ok.delegate == "xnnpack" and ok.threads == 2

    gpu = run(runner, target, spec(model_sha, "gpu", 1))
    assert gpu.status == "failed" and gpu.error == "Failed to apply GPU delegate."  # no GPU delegate here

    nnapi = run(runner, target, spec(model_sha, "nnapi", 1))
    assert nnapi.status == "failed" and nnapi.error == "Failed to apply NNAPI delegate."

    after = run(runner, target, spec(model_sha, "cpu", 1))
    assert after.status == "ok" and after.delegate == "cpu"  # "Use xnnpack: [0]" and no delegate line
    assert after.latency_us.count == 5 and after.latency_us.min <= after.latency_us.p50 <= after.latency_us.max

    pushes = [c for c in phone.commands if c.startswith("mv -f")]
    assert len(pushes) == 2  # the binary and the model, once each
    runs = [c for c in phone.commands if "--graph=" in c]
    assert len(runs) == 4 and all(c.startswith("taskset 1 timeout -k 5 ") for c in runs)
    assert "--num_threads=2" in runs[0] and "--use_xnnpack=true" in runs[0] and "--num_runs=5" in runs[0]
    assert "--use_gpu=true" in runs[1] and "--use_nnapi=true" in runs[2] and "--use_xnnpack=false" in runs[3]
    model_on_phone = phone.device_path(f"/data/local/tmp/edgebench/models/{model_sha}.tflite")
    assert model_on_phone.read_bytes() == cache.path(model_sha).read_bytes()
    assert phone.connections == 1  # one connection for all cells


def test_phone_p50_is_within_a_factor_of_a_direct_interpreter_run(phone, runner, cache, stand_in):
    model = EXAMPLE_MODELS / "mobilenet_v2_035_96_fp32.tflite"
    target = AndroidTarget(address=phone.address, binary_sha256=cached(cache, stand_in, "binary"))
    settings = Settings(warmup_runs=2, warmup_min_secs=0, num_runs=20, min_secs=0, max_secs=10)
    cell_spec = CellSpec(model_sha256=cached(cache, model), model_name=model.name, delegate="xnnpack", threads=1,
                         settings=settings)
    cell = run(runner, target, cell_spec)
    assert cell.status == "ok", cell.error
    assert cell.latency_us.count == 20
    direct = direct_p50(model, 1)  # the same model, timed here in the same test
    assert direct / 10 <= cell.latency_us.p50 <= direct * 10


def test_phone_facts_have_the_contract_shape(phone, runner):
    facts = runner.facts(AndroidTarget(address=phone.address))
    assert facts.board == "Google Pixel Emul" and facts.machine == "x86_64"
    assert facts.os == "Android 13 (API 33)" and facts.runtime == "benchmark_model"
    assert facts.cpu.count == 8 and facts.cpu.model == "4x Cortex-A55 + 4x Cortex-X1"
    assert facts.cpu.max_freq_mhz == pytest.approx(2803.2) and facts.cpu.governor == "schedutil"
    assert facts.memory_mb == 7649 and facts.temp_c == pytest.approx(41.5)
    android = facts.android
    assert (android.soc, android.sdk, android.abis) == ("SM8250", 33, ["x86_64", "x86"])
    assert android.battery_temp_c == pytest.approx(31.2) and android.serial == "EMUL0001"


def test_key_is_generated_once_and_an_unauthorized_phone_fails_the_cell(tmp_path, cache, stand_in, model_sha):
    key_dir = tmp_path / "agent" / "adb"
    with emulated_phone(tmp_path, authorized_keys=[]) as device:
        target = AndroidTarget(address=device.address, binary_sha256=cached(cache, stand_in, "binary"))
        runner = AndroidRunner(cache, key_dir, auth_timeout_s=0.5)
        cell = run(runner, target, spec(model_sha))
        assert cell.status == "failed"
        assert "unauthorized" in cell.error and "\n" not in cell.error
        assert str(key_dir / "adbkey.pub") in cell.error
        key = (key_dir / "adbkey").read_bytes()
        # the owner allows this computer once; from then on the same key is let in without asking
        device.settings.authorized_keys.append((key_dir / "adbkey.pub").read_bytes())
        assert run(runner, target, spec(model_sha)).status == "ok"
        assert (key_dir / "adbkey").read_bytes() == key
        runner.close()


def test_phone_not_found(tmp_path, runner, cache, stand_in, model_sha):
    with emulated_phone(tmp_path) as device:
        address = device.address
    cell = run(runner, AndroidTarget(address=address, binary_sha256=cached(cache, stand_in, "binary")),
               spec(model_sha))
    assert cell.status == "failed"
    assert cell.error.startswith(f"phone {address} not reachable: ConnectionRefusedError")


def test_disconnect_during_push_fails_the_cell_and_the_next_cell_recovers(tmp_path, runner, cache, stand_in,
                                                                          model_sha):
    with emulated_phone(tmp_path, drop_push_after=4096) as device:
        target = AndroidTarget(address=device.address, binary_sha256=cached(cache, stand_in, "binary"))
        dropped = run(runner, target, spec(model_sha))
        assert dropped.status == "failed"
        assert dropped.error.startswith(f"phone {device.address}: connection lost while pushing")
        device.settings.drop_push_after = None
        again = run(runner, target, spec(model_sha))
        assert again.status == "ok", again.error
        assert device.connections == 2


def test_missing_binary_and_unknown_delegate(phone, runner, cache, model_sha):
    target = AndroidTarget(address=phone.address, binary_sha256="f" * 64)
    missing = run(runner, target, spec(model_sha))
    assert missing.error == "benchmark binary benchmark_model was not transferred to the agent"
    none = run(runner, AndroidTarget(address=phone.address), spec(model_sha))
    assert none.error == "no benchmark binary: set benchmark_binary in the device profile"
    odd = run(runner, target, spec(model_sha, "edgetpu"))
    assert odd.status == "failed" and "edgetpu" in odd.error and "benchmark_model" in odd.error


def test_binary_that_is_not_executable_on_the_phone(tmp_path, cache, stand_in, model_sha):
    # A phone whose chmod does nothing, as on a noexec mount.
    with emulated_phone(tmp_path) as device:
        shim = device.sandbox / "system" / "bin" / "chmod"
        shim.write_text("#!/bin/sh\nexit 0\n")
        shim.chmod(0o755)
        runner = AndroidRunner(cache, tmp_path / "keys", init_allowance_s=10)
        target = AndroidTarget(address=device.address, binary_sha256=cached(cache, stand_in, "binary"))
        cell = run(runner, target, spec(model_sha))
        runner.close()
    assert cell.status == "failed"
    assert cell.error.startswith("benchmark binary is not executable on the phone:")
    assert "Permission denied" in cell.error


def test_binary_for_the_wrong_abi(phone, runner, cache, model_sha, tmp_path):
    arm64 = tmp_path / "benchmark_model_arm64"
    # An ELF header for AArch64 (e_machine 183): the emulated phone is x86_64.
    arm64.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 100)
    target = AndroidTarget(address=phone.address, binary_sha256=cached(cache, arm64, "binary"),
                           binary_name="benchmark_model_arm64")
    cell = run(runner, target, spec(model_sha))
    assert cell.status == "failed"
    assert cell.error == (f"benchmark binary benchmark_model_arm64 is built for arm64-v8a; phone {phone.address} "
                          "runs x86_64, x86")


def test_hung_run_is_ended_by_the_phone_side_timeout(tmp_path, cache, stand_in, model_sha):
    with emulated_phone(tmp_path, env={"FAKE_BENCHMARK_HANG": "1"}) as device:
        runner = AndroidRunner(cache, tmp_path / "keys", init_allowance_s=1)
        target = AndroidTarget(address=device.address, binary_sha256=cached(cache, stand_in, "binary"))
        cell = run(runner, target, spec(model_sha))
        runner.close()
    assert cell.status == "failed"
    assert cell.error == "benchmark_model timed out after 3 s on the phone"


def test_model_the_binary_cannot_read(phone, runner, cache, stand_in, tmp_path):
    bogus = tmp_path / "bogus.tflite"
    shutil.copy(EXAMPLE_MODELS / "digits_cnn_int8.tflite", bogus)
    data = bytearray(bogus.read_bytes())
    data[4:8] = b"XXXX"
    bogus.write_bytes(bytes(data))
    target = AndroidTarget(address=phone.address, binary_sha256=cached(cache, stand_in, "binary"))
    cell = run(runner, target, spec(cached(cache, bogus)))
    assert cell.status == "failed" and cell.error.startswith("Failed to mmap model")
