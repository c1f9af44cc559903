"""The files of the model a run scores with (src/batch_scoring/model_files.py), packed
for the chunk tasks and unpacked by them."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_scoring.errors import ScoringError
from batch_scoring.model_files import pack_model, unpack_model


def test_a_models_files_travel_whole_and_stay_in_their_directory(tmp_path: Path) -> None:
    model = tmp_path / "downloaded"
    (model / "artifacts").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "artifacts" / "forward.npz").write_bytes(b"\x00weights")
    (model / "code").mkdir()
    (model / "code" / "big.py").write_text("not needed to score")
    files = pack_model(str(model), [str(model / "artifacts" / "forward.npz")])
    assert files == {"MLmodel": b"flavors: {}\n", "artifacts/forward.npz": b"\x00weights"}

    unpacked = Path(unpack_model(files, str(tmp_path / "task")))
    assert unpacked == tmp_path / "task" / "model"
    assert (unpacked / "artifacts" / "forward.npz").read_bytes() == b"\x00weights"
    assert not (unpacked / "code").exists()
    with pytest.raises(ScoringError, match="outside its directory"):
        unpack_model({"../escaped": b"x"}, str(tmp_path / "other"))
    assert not (tmp_path / "other" / "escaped").exists()
