"""The network built for one slide is kept for the next slide of the same files, and never for changed ones."""

from __future__ import annotations

import shutil

import pytest

from core.demo import DEMO_MODEL
from core.errors import ModelError
from core.inference.engines import load_model
from core.models.engine import engine


def test_the_same_files_give_the_same_network_and_changed_files_are_checked_again(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEMO_MODEL, folder)
    first = engine().run(load_model, folder, "cpu")
    assert engine().run(load_model, folder, "cpu") is first  # a cohort's next slide: no second load
    assert engine().run(load_model, folder, "cpu", "onnx") is not first  # another engine: its own network
    params = folder / "model-0000.params"
    data = bytearray(params.read_bytes())
    data[-1] ^= 0xFF
    params.write_bytes(bytes(data))  # tampered after the first load: refused, not served from the cache
    with pytest.raises(ModelError, match="model-0000.params"):
        engine().run(load_model, folder, "cpu")
