from controller import models


def test_expand_files_dirs_globs_and_reports_each_problem(tmp_path):
    (tmp_path / "a.tflite").write_bytes(b"x")
    (tmp_path / "b.tflite").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    paths, errors = models.expand([
        str(tmp_path / "a.tflite"), str(tmp_path), str(tmp_path / "*.tflite"),
        str(tmp_path / "nope.tflite"), str(tmp_path / "z*.tflite"), str(tmp_path / "empty"),
    ])
    assert paths == [tmp_path / "a.tflite", tmp_path / "b.tflite"]
    assert errors == [f"{tmp_path / 'nope.tflite'}: no such file",
                      f"{tmp_path / 'z*.tflite'}: no file matches",
                      f"{tmp_path / 'empty'}: directory holds no .tflite files"]


def test_resolve_reads_sha_size_and_variant(family):
    sources, errors = models.resolve([str(family["int8"]), str(family["fp16"])])
    assert errors == []
    assert [s.variant for s in sources] == ["int8", "fp16"]
    assert all(len(s.sha256) == 64 and s.size == s.path.stat().st_size for s in sources)


def test_resolve_with_nothing_says_so():
    assert models.resolve([]) == ([], ["no models given"])
