"""Cells on a phone: push benchmark_model and the model, run it through ADB, parse its log.

One `AndroidRunner` lives in the agent's job thread and keeps one connection per phone,
reconnecting after a failure. Whatever goes wrong with a phone (unauthorized, not
found, disconnected mid-push, a binary that cannot run, a delegate that fails, a run
that hangs) becomes a failed cell with one line; the agent and later cells go on.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import msgspec

from agent.android import command, device_facts, push
from agent.android.adb import AUTH_TIMEOUT_S, AdbError, Phone, describe
from agent.cache import ModelCache
from agent.formats import benchmark_log
from agent.formats.binary import elf_abi
from agent.wire import protocol
from agent.wire.protocol import AndroidTarget, CellSpec
from agent.wire.records import Cell, DeviceState, Facts

log = logging.getLogger("edgebench.agent")

# Time a run may take beyond twice its `max_secs` (model load, delegate init).
INIT_ALLOWANCE_S = int(protocol.INIT_ALLOWANCE_S)
# Extra time the ADB read waits beyond the device-side timeout, so the phone's own
# `timeout` is always what ends a hung run.
READ_MARGIN_S = 30


class AndroidRunner:
    """Runs cells and reads facts on phones; one connection per phone, kept between cells."""

    def __init__(self, cache: ModelCache, key_dir: Path, auth_timeout_s: float = AUTH_TIMEOUT_S,
                 init_allowance_s: int = INIT_ALLOWANCE_S):
        self.cache = cache
        self.key_dir = Path(key_dir)
        self.auth_timeout_s = auth_timeout_s
        self.init_allowance_s = init_allowance_s
        self._phones: dict[tuple, Phone] = {}
        self._abis: dict[tuple, list[str]] = {}

    def close(self) -> None:
        """Close every phone connection this runner opened."""
        for phone in self._phones.values():
            phone.close()
        self._phones.clear()

    def _phone(self, target: AndroidTarget) -> Phone:
        key = (target.address, target.serial)
        phone = self._phones.get(key)
        if phone is None or not phone.connected:
            phone = Phone(target, self.key_dir, auth_timeout_s=self.auth_timeout_s)
            phone.connect()
            self._phones[key] = phone
            abilist = phone.shell("getprop ro.product.cpu.abilist; getprop ro.product.cpu.abi").output
            self._abis[key] = list(dict.fromkeys(
                abi for line in abilist.splitlines() for abi in line.strip().split(",") if abi))
        return phone

    def facts(self, target: AndroidTarget) -> Facts:
        """The phone's facts; AdbError when it cannot be reached."""
        phone = self._phone(target)
        result = phone.shell(device_facts.FACTS_SCRIPT)
        return device_facts.parse_facts(result.output, target.address or target.serial or "android")

    def run(self, target: AndroidTarget, spec: CellSpec, template: Cell) -> Cell:
        """Measure one cell on the phone; never raises for what the phone or the binary does."""
        template = msgspec.structs.replace(template, runtime=benchmark_log.RUNTIME, settings=spec.settings)
        try:
            return self._run(target, spec, template)
        except (AdbError, command.UnsupportedCell) as exc:
            self._forget(target)
            return msgspec.structs.replace(template, status="failed", error=str(exc))

    def _forget(self, target: AndroidTarget) -> None:
        phone = self._phones.pop((target.address, target.serial), None)
        if phone is not None:
            phone.close()

    def _run(self, target: AndroidTarget, spec: CellSpec, template: Cell) -> Cell:
        remote_model = push.remote_path("models", spec.model_sha256, ".tflite")
        flags = command.benchmark_flags(spec, remote_model)
        model = self.cache.path(spec.model_sha256)
        if not model.exists():
            return _failed(template, f"model {spec.model_name} was not transferred to the agent")
        if not target.binary_sha256:
            return _failed(template, "no benchmark binary: set benchmark_binary in the device profile")
        binary = self.cache.path(target.binary_sha256, "binary")
        if not binary.exists():
            return _failed(template, f"benchmark binary {target.binary_name} was not transferred to the agent")

        phone = self._phone(target)
        with open(binary, "rb") as f:
            abi = elf_abi(f.read(64))
        abis = self._abis.get((target.address, target.serial), [])
        if abi and abis and abi not in abis:
            return _failed(template, f"benchmark binary {target.binary_name} is built for {abi}; "
                                     f"{describe(target)} runs {', '.join(abis)}")
        remote_binary = push.remote_path("bin", target.binary_sha256)
        # Pushed as a plain file: the mode a push sets is not honoured everywhere, chmod is.
        push.ensure(phone, push.LocalFile(binary, target.binary_sha256, binary.stat().st_size), remote_binary)
        chmod = phone.shell(f"chmod 755 {shlex.quote(remote_binary)}")
        if chmod.exit_code != 0:
            return _failed(template, f"cannot make the benchmark binary executable: {chmod.output.strip()}")
        push.ensure(phone, push.LocalFile(model, spec.model_sha256, model.stat().st_size), remote_model)

        timeout_s = int(spec.settings.max_secs * 2) + self.init_allowance_s
        state = device_facts.parse_state(phone.shell(device_facts.STATE_SCRIPT).output)
        line = command.device_command(remote_binary, flags, timeout_s, target.taskset)
        log.info("%s: %s", phone.name, line)
        result = phone.shell(line, timeout_s=timeout_s + READ_MARGIN_S)
        end = device_facts.parse_state(phone.shell(device_facts.STATE_SCRIPT).output)

        cell = benchmark_log.to_cell(benchmark_log.parse(result.output), template)
        problem = command.exit_status_error(result.exit_code, result.output, timeout_s)
        if problem and cell.status == "ok":
            cell = msgspec.structs.replace(cell, status="failed", error=problem)
        elif problem and result.exit_code in (124, 126, 127):
            cell = msgspec.structs.replace(cell, error=problem)  # clearer than the log's last line
        return msgspec.structs.replace(cell, device_state=DeviceState(
            temp_c_start=state.temp_c_start, temp_c_end=end.temp_c_start,
            cpu_freq_mhz_start=state.cpu_freq_mhz_start, cpu_freq_mhz_end=end.cpu_freq_mhz_start,
            throttle_problem=state.throttle_problem))


def _failed(template: Cell, error: str) -> Cell:
    return msgspec.structs.replace(template, status="failed", error=error)

