"""Bad flags, profile keys and databases: one line naming the culprit, exit 2, no device contacted."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller import cli
from controller.commands import keys

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "digits_cnn_int8.tflite"

BAD_FLAGS = [
    (["--min-secs", "-1"], "--min-secs"),
    (["--min-secs", "nan"], "--min-secs"),
    (["--max-secs", "inf"], "--max-secs"),
    (["--max-secs", "0"], "--max-secs"),
    (["--run-delay", "-1"], "--run-delay"),
    (["--warmup-min-secs", "nan"], "--warmup-min-secs"),
    (["--warmup-runs", "-1"], "--warmup-runs"),
    (["--num-runs", "0"], "--num-runs"),
    (["--rounds", "0"], "--rounds"),
    (["--threads", "2000"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--delegates", ","], "--delegates"),
    (["--min-secs", "5", "--max-secs", "1"], "--min-secs"),
    (["--accuracy-tolerance", "nan"], "--accuracy-tolerance"),
]


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def no_agent(tmp_path, monkeypatch):
    """A profile dir with a zmq device nobody listens on: contacting it would hang, not fail fast."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "nobody.toml").write_text('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\n')
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(profiles))
    monkeypatch.setenv("EDGEBENCH_DB", str(tmp_path / "runs.sqlite"))
    return profiles


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_naming_it(flags, named, no_agent, capsys):
    code, lines = run_cli(["run", "--device", "nobody", "--models", str(MODEL), *flags], capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert named in lines[0], lines[0]
    assert "Traceback" not in lines[0]


def test_local_threads_above_cores_times_four(no_agent, capsys):
    import os
    too_many = len(os.sched_getaffinity(0)) * 4 + 1
    code, lines = run_cli(["run", "--device", "local", "--models", str(MODEL), "--threads", str(too_many)], capsys)
    assert code == 2 and len(lines) == 1 and "--threads" in lines[0], lines


BAD_PROFILES = [
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\ndelegates = 5\n', "delegates"),
    ('transport = "zmq"\naddress = "not a url"\n', "address"),
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\n[thermal]\ncooldown_below_c = "hot"\n', "cooldown_below_c"),
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\nthreads = []\n', "threads"),
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\nthreads = [1, "2"]\n', "threads"),
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\nthreads = [64000]\n', "threads"),
    ('transport = "zmq"\naddress = "tcp://127.0.0.1:9"\n[thermal]\nmax_cooldown_s = nan\n', "max_cooldown_s"),
    ('transport = "zmq"\naddress = 7\n', "address"),
]


@pytest.mark.parametrize(("text", "named"), BAD_PROFILES, ids=[n for _, n in BAD_PROFILES])
def test_bad_profile_key_is_one_line_naming_it(text, named, no_agent, capsys):
    (no_agent / "broken.toml").write_text(text)
    code, lines = run_cli(["run", "--device", "broken", "--models", str(MODEL)], capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert named in lines[0] and "broken.toml" in lines[0], lines[0]


def test_db_that_is_a_directory_or_not_sqlite(no_agent, tmp_path, capsys):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n")
    for db in (tmp_path, text_file):
        code, lines = run_cli(["run", "--device", "nobody", "--models", str(MODEL), "--db", str(db)], capsys)
        assert code == 2 and len(lines) == 1 and "--db" in lines[0], lines
    assert text_file.read_text() == "not a database\n"
    real = tmp_path / "real.sqlite"
    sqlite3.connect(real).execute("CREATE TABLE t (x)").connection.close()
    from controller import preflight
    preflight.check_db(str(real))  # a real SQLite file passes


def test_keys_generate_force_writes_a_private_secret(tmp_path):
    public, secret = tmp_path / "controller.key", tmp_path / "controller.key_secret"
    args = ["-m", "controller", "keys", "generate", str(tmp_path)]
    subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=60)
    secret.chmod(0o644)  # a copy that lost its mode
    subprocess.run([sys.executable, *args, "--force"], check=True, capture_output=True, timeout=60)
    assert secret.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    assert keys.KEY_NAME == "controller"
