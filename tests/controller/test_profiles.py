import pytest

from controller import profiles
from controller.profiles import ProfileError


def test_shipped_profiles_load():
    local = profiles.load("local")
    assert local.transport == "local" and set(local.delegates) == {"cpu", "xnnpack"}
    for name in ("pi4", "pi5"):
        profile = profiles.load(name)
        assert profile.transport == "zmq" and profile.address.startswith("tcp://")
        assert profile.threads == [1, 2, 4]
        assert profile.thermal.cooldown_below_c is not None
        assert profile.server_public_key.parent == profile.path.parent / "keys"


def test_env_directory_comes_first(tmp_path, monkeypatch):
    (tmp_path / "local.toml").write_text('transport = "local"\nthreads = [3]\n')
    (tmp_path / "lab.toml").write_text('transport = "zmq"\naddress = "tcp://127.0.0.1:1"\n')
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(tmp_path))
    assert profiles.load("local").threads == [3]
    assert profiles.available()[:2] == ["lab", "local"]
    assert "pi4" in profiles.available()


@pytest.mark.parametrize("text, message", [
    ('transport = "zmq"\n', "needs an address"),
    ('transport = "pigeon"\n', "transport must be one of"),
    ('transport = "local"\nthread = [1]\n', "unknown key(s) thread"),
    ('transport = "local"\nthreads = [0]\n', "positive integers"),
    ('transport = "local"\n[thermal]\ncooldown = 1\n', "[thermal] takes"),
    ('transport = "local\n', "line 1"),
])
def test_bad_profiles_are_one_clear_line(tmp_path, monkeypatch, text, message):
    (tmp_path / "bad.toml").write_text(text)
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(tmp_path))
    with pytest.raises(ProfileError) as info:
        profiles.load("bad")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ProfileError, match=r"known: .*local"):
        profiles.load("pi9")


def test_user_config_directory_comes_after_the_env_one(private_dirs, tmp_path, monkeypatch):
    # private_dirs points XDG_CONFIG_HOME into the test's directory.
    user = private_dirs / "config" / "edgebench" / "profiles"
    user.mkdir(parents=True)
    (user / "desk.toml").write_text('transport = "local"\nthreads = [5]\n')
    (user / "local.toml").write_text('transport = "local"\nthreads = [6]\n')
    assert profiles.load("desk").threads == [5]
    assert profiles.load("local").threads == [6]  # the user's own wins over the shipped one
    env = tmp_path / "env"
    env.mkdir()
    (env / "local.toml").write_text('transport = "local"\nthreads = [7]\n')
    monkeypatch.setenv("EDGEBENCH_PROFILES", str(env))
    assert profiles.load("local").threads == [7]
    assert profiles.search_dirs()[:2] == [env, user]
