from pathlib import Path

import pytest

from humanstyle.daemon import config
from humanstyle.daemon.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def load_text(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.load(path)


def test_defaults_need_no_file(tmp_path):
    s = load_text(tmp_path, "")
    assert s.metrics.listen == "127.0.0.1:9108"
    assert s.detect.weights == "DEFAULT" and s.classify.weights == "DEFAULT"
    assert s.train.enabled is True
    assert s.domains == ("movie", "game")


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    s = load_text(tmp_path, '[paths]\nwatch_dir = "w"\ndata_dir = "/abs/d"\n')
    assert s.paths.watch_dir == tmp_path / "w"
    assert s.paths.data_dir == Path("/abs/d")


@pytest.mark.parametrize("text, fragment", [
    ("[detect]\nscore_threshold = 1.5\n", "detect.score_threshold = 1.5"),
    ("[detect]\nscore_threshold = \"high\"\n", "detect.score_threshold"),
    ("[detect]\nbatch_size = 2.5\n", "expected an integer"),
    ("[train]\nenabled = 1\n", "train.enabled = 1: expected true or false"),
    ("[detect]\nscore_treshold = 0.5\n", "unknown key detect.score_treshold"),
    ("[detector]\nweights = 'none'\n", "unknown section [detector]"),
    ("[metrics]\nlisten = \"9108\"\n", "metrics.listen = '9108'"),
    ("[queues]\ntransport = \"udp\"\n", "queues.transport = 'udp': expected one of ipc, tcp"),
    ("[watch]\ndomains = [\"movie\"]\n", "watch.domains"),
    ("[watch]\ndomains = [\"movie\", \"../etc\"]\n", "not a plain folder name"),
    ("[detect]\ndevice = \"gpu\"\n", "detect.device = 'gpu'"),
    ("detect = 3\n", "expected a [detect] table"),
    ("[detect\n", "not valid TOML"),
    # Keys that moved are refused with their new place, never silently ignored (the index's own section).
    ("[watch]\nmax_in_flight = 4\n", "watch.max_in_flight is now index.max_in_flight: move it to the [index] section"),
    ("[watch]\nstall_timeout_s = 60\n", "watch.stall_timeout_s is now index.stall_timeout_s"),
    ("[pair]\nsave_rejected = false\n", "pair.save_rejected is now index.save_rejected"),
])
def test_bad_values_name_the_key(tmp_path, text, fragment):
    with pytest.raises(config.ConfigError) as err:
        load_text(tmp_path, text)
    assert fragment in str(err.value)


def test_cli_exits_2_with_one_line_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[detect]\nscore_threshold = -1\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "detect.score_threshold" in err


def test_check_config_prints_effective_settings(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[detect]\nscore_threshold = 0.25\n")
    assert main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    reparsed = config.from_dict(__import__("tomllib").loads(out.split("\n", 1)[1]), tmp_path)
    assert reparsed.detect.score_threshold == 0.25


def test_shipped_config_is_the_documented_defaults():
    shipped = (ROOT / "config.toml").read_text()
    assert shipped == config.default_toml(), "regenerate config.toml from daemon.config.default_toml()"
    s = config.load(ROOT / "config.toml")
    assert s.detect == config.DetectSettings() and s.train == config.TrainSettings()
    for key, _default, _range, help_ in config.describe():
        assert help_, f"{key} has no description"
        assert f"\n{key.split('.')[1]} = " in shipped


def test_an_unusable_data_folder_stops_the_daemon_before_it_starts(tmp_path, capsys):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[paths]\ndata_dir = "{blocker}/data"\n[detect]\nweights = "none"\n[classify]\nweights = "none"\n')
    assert main(["run", "--config", str(cfg)]) == 2
    assert "paths.data_dir" in capsys.readouterr().err
