"""Pure pieces of the Android support: profiles, device-side checks, command lines, facts."""

from __future__ import annotations

import hashlib
import re

import pytest

from agent.android import command, device_facts, push
from agent.android.adb import split_exit_marker, with_exit_marker
from agent.formats.binary import BinaryFormatError, check_program, elf_abi
from agent.wire.protocol import CellSpec
from agent.wire.records import Settings
from controller import profiles
from controller.profiles import ProfileError


def write(tmp_path, body: str):
    path = tmp_path / "phone.toml"
    path.write_text('transport = "adb"\n' + body)
    return path


def test_shipped_android_profiles_parse():
    tcp, usb = profiles.load("android_tcp"), profiles.load("android_usb")
    assert tcp.android.adb_address == "192.168.1.20:5555" and tcp.android.taskset == "f0"
    assert usb.android.adb_serial and usb.android.adb_address is None
    assert tcp.android.via == usb.android.via == "local"
    assert tcp.android.benchmark_binary == tcp.path.parent / "bin" / "benchmark_model_android_arm64"


@pytest.mark.parametrize("body, message", [
    ('benchmark_binary = "b"\n', "needs adb_address (HOST:PORT) or adb_serial"),
    ('adb_serial = "X"\n', "needs benchmark_binary"),
    ('adb_serial = "X"\nbenchmark_binary = "b"\ntaskset = "big"\n', "hexadecimal CPU mask"),
    ('adb_serial = "X"\nbenchmark_binary = "b"\nvia = "phone"\n', "via must name the agent's profile"),
])
def test_bad_android_profiles_are_one_line_errors(tmp_path, body, message):
    with pytest.raises(ProfileError, match=re.escape(message)):
        profiles.parse(write(tmp_path, body))


def test_remote_check_output_by_sha256_md5_or_size(tmp_path):
    data = b"model bytes"
    path = tmp_path / "m"
    path.write_bytes(data)
    local = push.LocalFile(path, hashlib.sha256(data).hexdigest(), len(data))
    assert push.matches(local, push.parse_check(f"11\n{local.sha256}  /data/x\n"))
    assert push.matches(local, push.parse_check(f"11\n{hashlib.md5(data).hexdigest()}  /data/x\n"))
    assert push.matches(local, push.parse_check("11\n"))  # no hash tool: size alone
    assert not push.matches(local, push.parse_check(f"12\n{local.sha256}  /data/x\n"))
    assert not push.matches(local, push.parse_check("11\n" + "0" * 64 + "  /data/x\n"))
    assert not push.matches(local, push.parse_check(""))


def test_exit_marker_round_trip():
    assert with_exit_marker("ls") == "ls; echo __EDGEBENCH_EXIT__=$?"
    result = split_exit_marker("a\nb\n__EDGEBENCH_EXIT__=3\n")
    assert (result.output, result.exit_code) == ("a\nb\n", 3)
    assert split_exit_marker("cut off").exit_code is None


def test_command_line_and_exit_statuses():
    spec = CellSpec(model_sha256="0" * 64, model_name="m", delegate="gpu", threads=4,
                    settings=Settings(warmup_runs=2, num_runs=30, min_secs=0.5, max_secs=10, run_delay=0))
    flags = command.benchmark_flags(spec, "/data/local/tmp/edgebench/models/m.tflite")
    line = command.device_command("/data/local/tmp/edgebench/bin/abc", flags, 140, "f0")
    assert line.startswith("taskset f0 timeout -k 5 140 /data/local/tmp/edgebench/bin/abc ")
    assert "--use_gpu=true" in line and "--num_threads=4" in line and "--num_runs=30" in line
    assert "--min_secs=0.5" in line and line.endswith(" 2>&1")
    assert command.exit_status_error(0, "", 10) is None
    assert command.exit_status_error(124, "", 10) == "benchmark_model timed out after 10 s on the phone"
    assert command.exit_status_error(139, "", 10) == "benchmark_model died with SIGSEGV"
    assert command.exit_status_error(126, "sh: ./b: Exec format error", 10).startswith("benchmark binary is for "
                                                                                       "another ABI")
    with pytest.raises(command.UnsupportedCell):
        command.benchmark_flags(CellSpec(model_sha256="0" * 64, model_name="m", delegate="coral", threads=1,
                                         settings=Settings()), "m")


def test_binary_checks():
    check_program(b"#!/bin/sh\n")
    check_program(b"\x7fELF\x02\x01")
    with pytest.raises(BinaryFormatError):
        check_program(b"TFL3....")
    arm = b"\x7fELF\x01\x01\x01" + b"\0" * 9 + b"\x02\x00\x28\x00" + b"\0" * 40
    assert elf_abi(arm) == "armeabi-v7a"
    assert elf_abi(b"#!/bin/sh") is None


def test_facts_pieces():
    assert device_facts.count_cpus(["0-3,6-7"]) == 6
    assert device_facts.count_cpus(["junk"]) is None
    assert device_facts.celsius(41500) == 41.5 and device_facts.celsius(312) == 31.2
    assert device_facts.celsius(45) == 45.0
    assert device_facts.cpu_temp_c(["battery 30000", "gpu 50000", "cpu-1-0 43000"]) == 43.0
    assert device_facts.cpu_temp_c(["battery 30000", "gpu 50000"]) == 50.0
    facts = device_facts.parse_facts("@@props\n[ro.build.version.release]: [9]\n", "phone 1.2.3.4:5555")
    assert facts.os == "Android 9" and facts.hostname == "phone 1.2.3.4:5555" and facts.cpu.count == 0
