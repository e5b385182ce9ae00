"""What a job may make the agent load or reach: the agent's configuration decides."""

from __future__ import annotations

import os

import pytest

from agent.trust import NotAllowed, check_phone, delegate_library
from agent.wire.protocol import AndroidTarget


@pytest.fixture
def layout(tmp_path):
    libs, data = tmp_path / "libs", tmp_path / "data"
    (data / "models").mkdir(parents=True)
    libs.mkdir()
    for name in ("libedgetpu.so.1", "libother.so"):
        (libs / name).write_bytes(b"\x7fELF")
    upload = data / "models" / ("a" * 64 + ".bin")
    upload.write_bytes(b"\x7fELF")
    return libs, data, upload


def test_listed_paths_names_and_directories_are_granted(layout):
    libs, data, _ = layout
    listed = [str(libs / "libedgetpu.so.1")]
    assert delegate_library(str(libs / "libedgetpu.so.1"), listed, data) == listed[0]
    assert delegate_library("libedgetpu.so.1", listed, data) == listed[0]  # by file name
    assert delegate_library("libother.so", str(libs), data) == str(libs / "libother.so")  # a directory
    assert delegate_library("libm.so.6", ["libm.so.6"], data) == "libm.so.6"  # the loader's own search


def test_anything_else_is_refused(layout):
    libs, data, upload = layout
    listed = [str(libs / "libedgetpu.so.1")]
    for requested in (str(libs / "libother.so"), str(upload), "libother.so", "../libs/libedgetpu.so.1"):
        with pytest.raises(NotAllowed, match="delegate_libraries"):
            delegate_library(requested, listed, data)
    # An allowed directory that holds the data directory still never yields an upload.
    with pytest.raises(NotAllowed, match="data directory"):
        delegate_library(str(upload), str(data.parent), data)
    # Nor does a symlink in an allowed directory that points at an upload.
    os.symlink(upload, libs / "libsneaky.so")
    with pytest.raises(NotAllowed):
        delegate_library(str(libs / "libsneaky.so"), str(libs), data)


def test_phones_default_to_usb_and_loopback():
    check_phone(AndroidTarget(serial="R58M123ABCD"), None)
    check_phone(AndroidTarget(address="127.0.0.1:5555"), None)
    check_phone(AndroidTarget(address="[::1]:5555"), None)
    with pytest.raises(NotAllowed, match="phones"):
        check_phone(AndroidTarget(address="192.0.2.7:5555"), None)
    listed = ["R58M123ABCD", "192.0.2.7:5555"]
    check_phone(AndroidTarget(address="192.0.2.7:5555"), listed)
    for target in (AndroidTarget(serial="OTHER"), AndroidTarget(address="127.0.0.1:5555"), AndroidTarget()):
        with pytest.raises(NotAllowed, match="phones"):
            check_phone(target, listed)
