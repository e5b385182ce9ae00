"""Command-line habits: --verbose/--quiet through logging, one clear line for database problems."""

from __future__ import annotations

import logging

import pytest

from controller.cli import build_parser, log_level
from tests.support import controller


@pytest.mark.parametrize("argv, level", [
    (["report"], logging.WARNING),
    (["-v", "report"], logging.INFO),
    (["report", "-v"], logging.INFO),
    (["-vv", "report"], logging.DEBUG),
    (["report", "--quiet"], logging.ERROR),
    (["-q", "report", "-v"], logging.ERROR),
])
def test_verbosity_flags_go_before_or_after_the_command(argv, level):
    args = build_parser().parse_args(argv)
    assert log_level(args.verbose, args.quiet) == level


def test_verbose_logs_the_database_and_its_migration(tmp_path):
    db = tmp_path / "new.sqlite"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = controller("import", "-v", str(empty), db=db)
    assert result.returncode == 0, result.stderr
    assert f"controller: INFO: results database: {db}" in result.stderr
    assert f"controller: INFO: {db}: schema version 0 -> 1" in result.stderr
    quiet = controller("-q", "export", "--all", db=db)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_a_database_url_is_never_taken_for_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a URL taken for a relative path would become folders
    env_url = "postgresql://nobody@127.0.0.1:1/none"
    result = controller("report", db=env_url)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("controller: error: cannot connect to postgresql://nobody@127.0.0.1:1/none")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "postgresql:").exists()
