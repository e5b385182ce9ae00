"""TOML files every part reads: a broken or missing file is one line naming it."""

from __future__ import annotations

import pytest

from agent.config import ConfigError
from agent.config import load as load_config
from agent.formats.preprocess import PreprocessError, load_spec
from agent.formats.tomlfile import TomlFileError, read_toml
from controller.profiles import ProfileError, load_fleet


def test_a_table_is_read(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('devices = ["pi4"]\n')
    assert read_toml(path) == {"devices": ["pi4"]}


def test_missing_and_broken_files_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("devices = [\n")
    with pytest.raises(TomlFileError, match=r"^cannot read .*missing\.toml: No such file") as missing:
        read_toml(tmp_path / "missing.toml")
    with pytest.raises(TomlFileError, match=r"broken\.toml: not valid TOML: ") as invalid:
        read_toml(broken)
    assert "\n" not in str(missing.value) + str(invalid.value)
    # Each reader keeps its own error type and the same line.
    for reader, error in ((load_config, ConfigError), (load_spec, PreprocessError), (load_fleet, ProfileError)):
        with pytest.raises(error, match=r"broken\.toml: not valid TOML"):
            reader(broken)
