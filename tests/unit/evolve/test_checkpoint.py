"""Atomic files, model files, the candidate log."""

from __future__ import annotations

import pytest
import torch
from evolve_helpers import conv_model

from evolve import checkpoint
from evolve.errors import ConfigError
from evolve.logs import CandidateLog


def test_json_is_written_atomically(tmp_path):
    checkpoint.write_json(tmp_path / "state.json", {"generation": 3})
    checkpoint.write_json(tmp_path / "state.json", {"generation": 4})
    assert checkpoint.read_json(tmp_path / "state.json") == {"generation": 4}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    (tmp_path / "broken.json").write_text('{"generation": ')
    with pytest.raises(ConfigError, match=r"broken\.json is corrupt"):
        checkpoint.read_json(tmp_path / "broken.json")


def test_models_round_trip_and_only_named_ones_are_removed(tmp_path):
    mm = conv_model()
    mm.resize(mm.layers()[0], 2)
    models = tmp_path / "models"
    models.mkdir()
    checkpoint.save_model(mm, models / "7")
    checkpoint.save_model(conv_model(seed=1), models / "8")
    (models / "notes").mkdir()  # not the run's: never touched
    loaded = checkpoint.load_model(models / "7", growth="net2net")
    x = torch.randn(2, 1, 16)
    assert torch.equal(loaded(x), mm(x)) and loaded.growth == "net2net" and not loaded.training
    assert loaded.layers() == mm.layers()
    checkpoint.remove_models(models, [8, 9])
    assert sorted(p.name for p in models.iterdir()) == ["7", "notes"]
    checkpoint.save_model(conv_model(seed=1), models / "7")  # replaces the run's own folder
    assert not torch.equal(checkpoint.load_model(models / "7")(x), mm(x))


def test_removal_never_follows_a_symbolic_link(tmp_path):
    victim = tmp_path / "victim"
    (victim / "3").mkdir(parents=True)
    models = tmp_path / "run" / "models"
    models.parent.mkdir()
    models.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        checkpoint.remove_models(models, [3])
    assert (victim / "3").is_dir()


def test_read_json_refuses_what_is_not_json(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        checkpoint.read_json(tmp_path / "deep.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match=r"binary\.json is corrupt"):
        checkpoint.read_json(tmp_path / "binary.json")


def test_candidate_log_rolls_back_to_an_offset(tmp_path):
    log = CandidateLog(tmp_path / "c.jsonl")
    log.append({"id": 0})
    mark = log.offset()
    log.append({"id": 1})
    log.truncate(mark)
    log.append({"id": 2})
    assert [r["id"] for r in log.read()] == [0, 2]
