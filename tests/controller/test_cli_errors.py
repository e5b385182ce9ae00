"""Mistakes on the command line: one line naming the flag or the file at fault, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.formats.tomlfile import TomlFileError, read_toml
from tests.controller.test_exchange import fill
from tests.support import EXAMPLE_MODELS, QUICK, controller
from tests.support import benchmark_logs as logs

MODEL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"


def one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The single stderr line of a command that failed with exit 2; it must hold `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def db(tmp_path) -> Path:
    """A results file with two runs (r1, r2) and a regression check between them."""
    path = tmp_path / "results.sqlite"
    fill(path)
    return path


# --- device profiles -----------------------------------------------------------------


@pytest.fixture
def latin1_profiles(tmp_path, monkeypatch) -> Path:
    """A profile directory holding one profile saved as Latin-1, not UTF-8."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "cafe.toml").write_bytes('transport = "local"\ndescription = "caf\u00e9"\n'.encode("latin-1"))
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(directory))
    return directory / "cafe.toml"


def test_a_toml_file_that_is_not_utf8_is_one_line_naming_it(latin1_profiles):
    with pytest.raises(TomlFileError) as caught:
        read_toml(latin1_profiles)
    assert str(caught.value) == f"{latin1_profiles}: not UTF-8 text (byte 0xe9 at offset 38)"


def test_devices_reports_a_profile_that_is_not_utf8_and_lists_the_others(latin1_profiles):
    result = controller("devices", "--json")
    assert result.returncode == 0, result.stderr
    statuses = {status["name"]: status for status in json.loads(result.stdout)}
    assert statuses["cafe"]["reachable"] is False
    assert statuses["cafe"]["error"] == f"{latin1_profiles}: not UTF-8 text (byte 0xe9 at offset 38)"
    assert statuses["local"]["reachable"] is True and statuses["pi4"]["transport"] == "zmq"
    table = controller("devices")
    assert table.returncode == 0 and "Traceback" not in table.stderr
    assert "cafe" in table.stdout and "UTF-8" in table.stdout


def test_a_missing_agent_key_is_named_as_the_profile_key(tmp_path, monkeypatch):
    directory = tmp_path / "profiles"
    directory.mkdir()
    profile = directory / "far.toml"
    profile.write_text('transport = "zmq"\naddress = "tcp://127.0.0.1:1"\nserver_public_key = "keys/far.key"\n')
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(directory))
    # Neither the agent's key nor this controller's own pair exists: the profile's file is named.
    result = controller("devices", "--json")
    assert result.returncode == 0, result.stderr
    (far,) = [status for status in json.loads(result.stdout) if status["name"] == "far"]
    assert far["error"] == (f"{profile}: server_public_key {directory / 'keys' / 'far.key'} is not a file "
                            "(the agent's public key: copy the .key file `agent keys generate` made on the device)")


# --- output files ----------------------------------------------------------------------


@pytest.mark.parametrize("flag, where", [
    ("--html", "missing"), ("--html", "directory"),
    ("--csv", "missing"), ("--csv", "directory"),
    ("--markdown", "missing"), ("--markdown", "directory"),
])
def test_report_names_an_output_path_it_cannot_write(tmp_path, db, flag, where):
    path = tmp_path / "no" / "such" / "out.txt" if where == "missing" else tmp_path
    line = one_line(controller("report", flag, str(path), db=db))
    if where == "missing":
        assert line == f"error: {flag} {path}: directory {path.parent} does not exist"
    else:
        assert line == f"error: {flag} {path} is a directory, not a file"


@pytest.mark.parametrize("flag", ["--junit", "--markdown"])
def test_regress_names_an_output_path_it_cannot_write(tmp_path, db, flag):
    missing = tmp_path / "nowhere" / "out.txt"
    assert one_line(controller("regress", "--baseline", "r1", "--candidate", "r2", flag, str(missing), db=db)) == (
        f"error: {flag} {missing}: directory {missing.parent} does not exist")
    assert one_line(controller("regress", "--baseline", "r1", "--candidate", "r2", flag, str(tmp_path), db=db)) == (
        f"error: {flag} {tmp_path} is a directory, not a file")


# --- flags -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["regress", "compare"])
@pytest.mark.parametrize("flag, value", [
    ("--threshold", "abc"), ("--memory-threshold", "abc"), ("--accuracy-threshold", "abc"),
    ("--accuracy-threshold", "nan"), ("--model-threshold", "m.tflite=abc"), ("--model-threshold", "abc"),
])
def test_a_malformed_threshold_names_its_flag(db, command, flag, value):
    target = (["--baseline", "r1", "--candidate", "r2"] if command == "regress" else
              ["--baseline-model", str(MODEL), "--candidate-model", str(MODEL), "--device", "local"])
    line = one_line(controller(command, *target, flag, value, db=db))
    assert line.startswith(f"controller {command}: error: argument {flag}: expected ")
    assert repr(value) in line


def test_history_names_a_malformed_min_effect(db):
    line = one_line(controller("history", "--min-effect", "abc", db=db))
    assert line.startswith("controller history: error: argument --min-effect: expected ") and "'abc'" in line


@pytest.mark.parametrize("command", ["run", "compare"])
def test_threads_with_an_empty_item_are_refused(tmp_path, command):
    target = (["--models", str(MODEL)] if command == "run" else
              ["--baseline-model", str(MODEL), "--candidate-model", str(MODEL)])
    line = one_line(controller(command, "--device", "nosuch", *target, "--threads", "1,,2", db=tmp_path / "r.sqlite"))
    assert line == (f"controller {command}: error: argument --threads: expected comma-separated integers, "
                    "got '1,,2' (an empty item)")


@pytest.mark.parametrize("flags, message", [
    (["--device", "pixel\n7"], 'error: --device: "pixel\\x0a7" holds a control character'),
    (["--device", ""], "error: --device: empty"),
    (["--device", "pixel7", "--tag", "night\x1b[2Jly"], 'error: --tag: "night\\x1b[2Jly" holds a control character'),
    (["--device", "pixel7", "--threads", "5000"], "error: --threads: 5000 is outside 1 to 1024"),
])
def test_import_log_refuses_names_and_counts_no_stored_run_may_hold(tmp_path, flags, message):
    log = tmp_path / "console.log"
    log.write_text(logs.NEW_INFO)
    db = tmp_path / "r.sqlite"
    assert one_line(controller("import-log", str(log), "--model", str(MODEL), *flags, db=db)) == message
    assert not db.exists()


# --- nothing measured ----------------------------------------------------------------


def test_a_run_where_no_cell_is_ok_exits_2_and_still_prints_its_document(tmp_path):
    result = controller("run", "--device", "local", "--models", str(MODEL), "--delegates", "nosuch", "--threads",
                        "1", *QUICK, "--json", db=tmp_path / "r.sqlite")
    assert result.returncode == 2, result.stderr
    (cell,) = json.loads(result.stdout)["cells"]
    assert cell["status"] == "failed" and cell["delegate"] == "nosuch"
    assert "error: nothing was measured: no cell finished ok" in result.stderr.splitlines()


# --- a results file that cannot be written -------------------------------------------


def unprivileged(tmp_path: Path) -> list[str]:
    """A command prefix under which file modes bind: none for an ordinary user; for root,
    `setpriv` dropping CAP_DAC_OVERRIDE (without it root obeys a file's mode like its owner)."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, which writes read-only files, and setpriv (util-linux) is missing")
        prefix = [setpriv, "--bounding-set=-dac_override", "--inh-caps=-dac_override"]
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0o444)
    tried = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'a')"],
                           capture_output=True, text=True, check=False)
    if tried.returncode == 0:
        pytest.skip(f"this process writes a file of mode 0444 even with {prefix or 'no privileges'}")
    return prefix


def controller_as(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    """`controller ARGS` run under `prefix`."""
    return subprocess.run([*prefix, sys.executable, "-m", "controller", *args],
                          capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture
def read_only(db):
    """The results file made read-only (mode 0444); its mode is restored afterwards."""
    db.chmod(0o444)
    yield db
    db.chmod(0o644)


def test_a_read_only_results_file_is_named_by_commands_that_write(tmp_path, read_only):
    prefix = unprivileged(tmp_path)
    exported = controller("export", "--all", db=read_only)
    dump = tmp_path / "runs.jsonl"
    dump.write_text(exported.stdout.replace('"r1"', '"r3"').replace('"r2"', '"r4"'))
    expected = (f"controller: error: {read_only} cannot be written (attempt to write a readonly database): "
                "the file or its directory is read-only")
    assert one_line(controller_as(prefix, "import", str(dump), "--db", str(read_only))) == expected
    ran = controller_as(prefix, "run", "--device", "local", "--models", str(MODEL), *QUICK, "--db", str(read_only))
    assert one_line(ran) == expected
    # Reading needs no write: the report of a read-only file works.
    report = controller_as(prefix, "report", "--run", "r2", "--csv", "-", "--db", str(read_only))
    assert report.returncode == 0, report.stderr
    assert report.stdout.count("\n") == 7  # a header and six cells


def test_a_results_file_in_a_read_only_directory_is_named(tmp_path, db):
    prefix = unprivileged(tmp_path)
    directory = tmp_path / "locked"
    directory.mkdir()
    inside = directory / "results.sqlite"
    shutil.copy(db, inside)
    dump = tmp_path / "runs.jsonl"
    dump.write_text(controller("export", "--all", db=db).stdout)
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        for target in (inside, directory / "new.sqlite"):
            line = one_line(controller_as(prefix, "import", str(dump), "--db", str(target)))
            assert line.startswith(f"controller: error: {target}"), line
        below = directory / "sub" / "new.sqlite"
        assert one_line(controller_as(prefix, "import", str(dump), "--db", str(below))) == (
            f"controller: error: {below}: cannot create directory {below.parent}: Permission denied")
    finally:
        directory.chmod(0o755)
