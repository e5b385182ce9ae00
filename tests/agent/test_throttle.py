"""vcgencmd output, decoded: every throttle bit, now and since boot."""

import pytest

from agent import throttle
from agent.facts import SysRoot
from agent.wire.records import Throttled


@pytest.mark.parametrize("bit, name", [(0, "under-voltage"), (1, "frequency-capped"), (2, "throttled"),
                                       (3, "soft-temp-limit")])
def test_every_bit_now_and_since_boot(bit, name):
    assert throttle.decode_throttled(1 << bit) == Throttled(raw=hex(1 << bit), now=[name], since_boot=[])
    assert throttle.decode_throttled(1 << (bit + 16)).since_boot == [name]


def test_real_output_formats():
    assert throttle.parse_get_throttled("throttled=0x50005\n") == 0x50005
    assert throttle.parse_get_throttled("throttled=0x0") == 0
    assert throttle.parse_measure_temp("temp=48.7'C\n") == 48.7
    assert throttle.parse_get_throttled("VCHI initialization failed") is None
    decoded = throttle.decode_throttled(0x50005)
    assert decoded.now == ["under-voltage", "throttled"]
    assert decoded.since_boot == ["under-voltage", "throttled"]


def test_throttling_during_a_cell():
    calm = throttle.decode_throttled(0x0)
    assert throttle.throttled_during(calm, calm) == (False, [])
    assert throttle.throttled_during(calm, throttle.decode_throttled(0x40000)) == (True, ["throttled"])
    assert throttle.throttled_during(throttle.decode_throttled(0x8), calm) == (True, ["soft-temp-limit"])
    # A since-boot flag already set at the start is history, not this cell.
    old = throttle.decode_throttled(0x50000)
    assert throttle.throttled_during(old, old) == (False, [])
    # Neither end readable: unknown, never "not throttled".
    assert throttle.throttled_during(None, None) == (None, [])


def test_sysfs_word_formats():
    # The kernel prints the firmware word with %x; some trees carry a 0x prefix.
    assert throttle.parse_sysfs_word("50000\n") == 0x50000
    assert throttle.parse_sysfs_word("0x50005") == 0x50005
    assert throttle.parse_sysfs_word("0") == 0
    assert throttle.parse_sysfs_word("") is None


def test_the_firmware_node_of_newer_device_trees(tmp_path):
    # Device trees with addressed bus nodes name the firmware soc@ADDRESS:firmware.
    node = tmp_path / "sys/devices/platform/soc@107c000000/soc@107c000000:firmware"
    node.mkdir(parents=True)
    (node / "get_throttled").write_text("80008\n")
    reading = throttle.read_throttled(SysRoot(str(tmp_path)))
    assert reading.value.raw == "0x80008" and reading.value.now == ["soft-temp-limit"]
    assert reading.value.source == "sysfs:/sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled"
