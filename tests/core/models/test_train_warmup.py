"""The learning-rate warm-up is on by default (1 epoch, or 10 % of a shorter run) and can be set or turned off."""

import json
import math

import numpy as np
import pytest

from cli.app import build_parser, main
from core.errors import ModelError
from core.models.train import default_warmup, train
from core.tiles.arrays import TileArrays


def _tiles(n: int, seed: int) -> TileArrays:
    """Dark tiles are tumour, pale ones not: learnt in an epoch or two."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = np.where(labels[:, None, None, None] == 1, 90, 200) + rng.integers(-20, 20, (n, 24, 24, 3))
    return TileArrays(np.clip(images, 0, 255).astype(np.uint8), labels, ["Non-tumour", "Tumour"])


def test_the_default_warm_up_is_one_epoch_or_a_tenth_of_a_short_run():
    assert default_warmup(10) == 1.0 and default_warmup(40) == 1.0
    assert default_warmup(5) == pytest.approx(0.5) and default_warmup(1) == pytest.approx(0.1)


@pytest.mark.parametrize("epochs, given, recorded", [(2, None, 0.2), (2, 0, 0.0), (2, 1.5, 1.5)])
def test_train_records_the_warm_up_it_used(tmp_path, epochs, given, recorded):
    extra = {} if given is None else {"warmup_epochs": given}
    result = train(_tiles(32, 0), _tiles(16, 1), tmp_path, epochs=epochs, batch_size=8, device="cpu", **extra)
    settings = json.loads((result.bundle / "model.json").read_text())["training"]["settings"]
    assert settings["warmup_epochs"] == pytest.approx(recorded)


@pytest.mark.parametrize("bad", [-0.5, 3, math.nan, math.inf, "1"])
def test_a_bad_warm_up_is_refused(tmp_path, bad):
    with pytest.raises(ModelError, match="warm-up must be 0 to 2 epochs"):
        train(_tiles(8, 0), _tiles(8, 1), tmp_path, epochs=2, warmup_epochs=bad)


def test_train_warmup_from_the_command_line(tmp_path, capsys):
    args = build_parser().parse_args(["train", "d", "--out", "m"])
    assert args.warmup is None  # train's default
    assert build_parser().parse_args(["train", "d", "--out", "m", "--warmup", "0"]).warmup == 0
    for bad in ("-1", "nan", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "d", "--out", "m", "--warmup", bad])
        assert "--warmup" in capsys.readouterr().err


def test_train_refuses_a_warm_up_longer_than_the_run(tmp_path, capsys):
    folder = tmp_path / "patches"
    tiles = _tiles(16, 0)
    import cv2
    for i, (image, label) in enumerate(zip(tiles.images, tiles.labels)):
        (folder / tiles.classes[label]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / tiles.classes[label] / f"{i}.png"), image)
    code = main(["train", str(folder), "--out", str(tmp_path / "m"), "--epochs", "2", "--warmup", "5",
                 "--patch-mpp", "1", "--device", "cpu"])
    assert code == 1
    assert "warm-up must be 0 to 2 epochs" in capsys.readouterr().err
