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


def test_models_round_trip_and_are_pruned(tmp_path):
    mm = conv_model()
    mm.resize(mm.layers()[0], 2)
    models = tmp_path / "models"
    models.mkdir()
    checkpoint.save_model(mm, models / "7")
    checkpoint.save_model(conv_model(seed=1), models / "8")
    (models / ".9.abc.tmp").mkdir()  # left by a killed run
    loaded = checkpoint.load_model(models / "7", growth="net2net")
    x = torch.randn(2, 1, 16)
    assert torch.equal(loaded(x), mm(x)) and loaded.growth == "net2net" and not loaded.training
    assert loaded.layers() == mm.layers()
    checkpoint.prune_models(models, keep=[7])
    assert [p.name for p in models.iterdir()] == ["7"]


def test_candidate_log_rolls_back_to_an_offset(tmp_path):
    log = CandidateLog(tmp_path / "c.jsonl")
    log.append({"id": 0})
    mark = log.offset()
    log.append({"id": 1})
    log.truncate(mark)
    log.append({"id": 2})
    assert [r["id"] for r in log.read()] == [0, 2]
