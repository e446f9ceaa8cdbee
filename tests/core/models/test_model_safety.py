"""Model folders that are damaged, tampered with or hostile: refused with a clear message, before MXNet sees them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelError
from core.models.bundle import ModelInfo, read_info, resolve_bundle, save_bundle
from core.models.loading import load_bundle
from core.models.engine import engine
from core.models.zoo import build, compact_cnn

DEMO_MODEL = Path(__file__).resolve().parents[3] / "resources" / "demo-model"
TILE = 32


def _export(folder: Path, net=None, tile_px: int = TILE, **info) -> Path:
    def job():
        import mxnet as mx

        model = net() if net else build("cnn")
        model.initialize(mx.init.Xavier())
        model.hybridize()
        model(mx.nd.zeros((1, 3, TILE, TILE)))
        return save_bundle(folder, model, ModelInfo("cnn", ["Non-tumour", "Tumour"], tile_px, **info))

    return engine().run(job)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One small bundle; tests copy it before changing anything."""
    return _export(tmp_path_factory.mktemp("bundle") / "model", mpp=0.5)


@pytest.fixture
def bundle(saved, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    return copy


def _load(folder):
    return engine().run(load_bundle, folder)


def _edit(folder: Path, change) -> None:
    path = folder / "model.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _rehash(folder: Path) -> None:
    """Record the files' present size and SHA-256 in model.json, as a forger would."""
    def change(doc):
        for name, entry in doc["files"].items():
            data = (folder / name).read_bytes()
            entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

    _edit(folder, change)


@pytest.fixture
def no_mxnet_loading(monkeypatch):
    """Fail the test if MXNet is asked to build a graph or read weights."""
    import mxnet as mx

    def refuse(*_args, **_kwargs):
        raise AssertionError("MXNet saw a model that should have been refused before")

    monkeypatch.setattr(mx.sym, "load_json", refuse)
    monkeypatch.setattr(mx.nd, "load_frombuffer", refuse)


def test_a_saved_bundle_records_the_hash_of_each_file(bundle):
    doc = json.loads((bundle / "model.json").read_text())
    assert doc["format_version"] == 2
    assert set(doc["files"]) == {"model-symbol.json", "model-0000.params"}
    for name, entry in doc["files"].items():
        data = (bundle / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert read_info(bundle).verified and _load(bundle).info.verified


def test_the_demo_model_is_verified_by_its_hashes():
    info = read_info(DEMO_MODEL)
    assert info.verified and info.tile_px == 128 and info.mpp == 1.0


def test_a_format_1_bundle_without_hashes_still_loads_unverified(bundle):
    _edit(bundle, lambda doc: (doc.pop("files"), doc.update(format_version=1)))
    info = read_info(bundle)
    assert not info.verified
    assert _load(bundle).predict(np.zeros((1, TILE, TILE, 3), np.uint8)).shape == (1, 2)


def test_a_format_2_bundle_whose_hashes_were_removed_is_refused(bundle):
    _edit(bundle, lambda doc: doc.pop("files"))
    with pytest.raises(ModelError, match="model.json: 'files' must list the folder's files with their SHA-256"):
        read_info(bundle)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["input"].update(mean=[float("nan"), 0.4, 0.4]), r"input\.mean must be three finite numbers"),
    (lambda d: d["input"].update(std=[float("inf"), 0.2, 0.2]), r"input\.std must be three finite numbers"),
    (lambda d: d["input"].update(std=[1e-5, 0.2, 0.2]), r"input\.std values must lie from 0\.001 to 10"),
    (lambda d: d["input"].update(mean=[0.5, 300, 0.5]), r"input\.mean values must lie from 0 to 1"),
    (lambda d: d.update(tile_px=20000), "tile_px must be a whole number of pixels from 16 to 1024, got 20000"),
    (lambda d: d.update(tile_px=8), "tile_px must be .* from 16 to 1024, got 8"),
    (lambda d: d.update(tile_px=True), "tile_px must be .*, got true"),
    (lambda d: d.update(mpp=float("nan")), r"mpp must be a number of µm/px from 0\.05 to 50, or null, got nan"),
    (lambda d: d.update(mpp=float("inf")), "mpp must be .*, got inf"),
    (lambda d: d.update(mpp=1e-9), "mpp must be .*, got 1e-09"),
    (lambda d: d.update(classes=["Tumour", "Tumour"]), "classes must be a list of 2 to 1000 different names"),
    (lambda d: d.update(training=[1, 2]), "training must be a JSON object"),
    (lambda d: d.update(format_version=0), "format_version is missing or not a positive whole number"),
])
def test_values_out_of_bounds_are_refused_before_mxnet(bundle, no_mxnet_loading, change, message):
    _edit(bundle, change)
    with pytest.raises(ModelError, match=f"model.json: {message}"):
        read_info(bundle)
    with pytest.raises(ModelError, match=message):
        _load(bundle)


def test_a_flipped_byte_in_the_weights_is_refused(bundle, no_mxnet_loading):
    params = bundle / "model-0000.params"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0x10  # one weight changes a little: it would load and predict
    params.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model-0000\.params: weights are unreadable: its contents do not match "
                                         "the SHA-256 model.json records"):
        _load(bundle)
    with pytest.raises(ModelError, match="its contents do not match"):
        read_info(bundle)
    assert read_info(bundle, verify=False).tile_px == TILE  # the quick look for lists: model.json and sizes only
    params.write_bytes(bytes(data[:-1]))
    with pytest.raises(ModelError, match=r"weights are unreadable: 1,56\d,\d{3} bytes where model.json records"):
        read_info(bundle, verify=False)


def test_a_relu_turned_sigmoid_is_refused_by_the_graph_hash(bundle, no_mxnet_loading):
    symbol = bundle / "model-symbol.json"
    text = symbol.read_text()
    assert '"act_type": "relu"' in text
    symbol.write_text(text.replace('"act_type": "relu"', '"act_type": "sigmoid"', 1))
    with pytest.raises(ModelError, match=r"model-symbol\.json: network graph is unreadable"):
        _load(bundle)


def test_deeply_nested_or_huge_or_binary_model_json_is_a_model_error(bundle):
    meta = bundle / "model.json"
    good = json.loads(meta.read_text())
    for text, message in (
        ('{"format_version": 2, "training": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        (json.dumps({**good, "training": {"a": json.loads("[" * 40 + "]" * 40)}}), "nested more than 32 levels"),
        (json.dumps({**good, "pad": "x" * (2 << 20)}), "2,09.* bytes, more than the 1,048,576 such"),
        (json.dumps(good).replace('"tile_px": 32', '"tile_px": ' + "9" * 5000), "a number out of range"),
    ):
        meta.write_text(text)
        with pytest.raises(ModelError, match=f"model.json: model description is unreadable: {message}"):
            read_info(bundle)
    meta.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ModelError, match="model.json: model description is unreadable: not UTF-8") as err:
        read_info(bundle)
    assert "\\x" not in str(err.value) and "\x00" not in str(err.value)


def test_messages_never_quote_the_file(bundle, tmp_path):
    secret = "SECRET-" + "k" * 40
    _edit(bundle, lambda d: d.update(architecture=secret))
    with pytest.raises(ModelError, match=r"the architecture \(a text of 47 characters\) is not one") as err:
        read_info(bundle)
    assert secret not in str(err.value)
    (bundle / "model.json").write_text('{"format_version": 2, "note": "' + secret + '", ]')
    with pytest.raises(ModelError, match=r"not valid JSON \(line 1, column") as err:
        read_info(bundle)
    assert secret not in str(err.value)


def test_links_out_of_the_folder_are_refused(bundle, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text('{"password": "SECRET"}')
    meta = bundle / "model.json"
    kept = meta.read_bytes()
    meta.unlink()
    meta.symlink_to(outside)
    with pytest.raises(ModelError, match="model.json: model description: a link to a file outside the model "
                                         "folder") as err:
        read_info(bundle)
    assert "SECRET" not in str(err.value)
    meta.unlink()
    meta.write_bytes(kept)
    params = bundle / "model-0000.params"
    (bundle / "weights.bin").write_bytes(params.read_bytes())
    params.unlink()
    params.symlink_to("weights.bin")  # a link inside the folder is fine
    assert read_info(bundle).verified
    params.unlink()
    params.symlink_to(Path("..") / bundle.name / ".." / "elsewhere.params")
    (tmp_path / "elsewhere.params").write_bytes((bundle / "weights.bin").read_bytes())
    with pytest.raises(ModelError, match="a link to a file outside the model folder"):
        read_info(bundle)


def test_a_fifo_in_place_of_the_weights_does_not_hang(bundle):
    params = bundle / "model-0000.params"
    params.unlink()
    os.mkfifo(params)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_raises(read_info, bundle)), daemon=True)
    thread.start()
    thread.join(60)
    assert outcome and isinstance(outcome[0], ModelError), outcome
    assert "weights are unreadable: not a regular file" in str(outcome[0])


def _raises(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # returned for the assertion
        return exc
    return None


def test_hostile_graphs_with_matching_hashes_are_refused(bundle, no_mxnet_loading):
    symbol = bundle / "model-symbol.json"
    good = json.loads(symbol.read_text())
    conv = next(n for n in good["nodes"] if n["op"] == "Convolution")

    def hostile(change):
        doc = json.loads(json.dumps(good))
        change(doc)
        symbol.write_text(json.dumps(doc))
        _rehash(bundle)
        with pytest.raises(ModelError, match=r"model-symbol\.json: network graph is unreadable") as err:
            _load(bundle)
        return str(err.value)

    index = good["nodes"].index(conv)
    assert "operator Biopsia's networks do not use" in hostile(
        lambda d: d["nodes"][index].update(op="_zeros", attrs={"shape": "(100000, 100000)"}))
    assert "pad out of bounds" in hostile(lambda d: d["nodes"][index]["attrs"].update(pad="(100000, 100000)"))
    assert "num_filter out of bounds" in hostile(lambda d: d["nodes"][index]["attrs"].update(num_filter="99999999"))
    assert "not an earlier node" in hostile(lambda d: d["nodes"][index].update(inputs=[[index + 5, 0, 0]]))
    assert "one input called 'data'" in hostile(lambda d: d["nodes"][0].update(name="input"))


def test_a_network_too_large_for_its_tiles_is_refused_before_allocating(tmp_path):
    """8,192 filters on 1024 px tiles: 1 MB of weights but 32 GiB for one tile's first layer."""
    folder = _export(tmp_path / "wide", net=lambda: compact_cnn(2, widths=(8192,)), tile_px=1024)
    with pytest.raises(ModelError, match=r"model-symbol\.json: the network would need \d+\.\d GiB for one 1024 px "
                                         "tile"):
        _load(folder)


def test_nan_weights_are_refused_even_with_matching_hashes(bundle):
    params = bundle / "model-0000.params"
    data = bytearray(params.read_bytes())
    first_value = 16 + 8 + 12 + 4 * 8 + 12  # list header, count, array header, 4 dimensions, context and type
    data[first_value:first_value + 4] = np.float32("nan").tobytes()  # the first weight of the first convolution
    params.write_bytes(bytes(data))
    _rehash(bundle)
    with pytest.raises(ModelError, match="weights are unreadable: NaN or infinite values"):
        read_info(bundle)


def test_a_model_with_the_wrong_number_of_classes_is_refused(bundle):
    _edit(bundle, lambda d: d.update(classes=["a", "b", "c"]))
    with pytest.raises(ModelError, match=r"model.json: the network gives \(2,\) outputs but 3 classes are named"):
        _load(bundle)


def test_resolve_bundle_names_what_is_missing(tmp_path):
    with pytest.raises(ModelError, match="model folder does not exist"):
        resolve_bundle(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="not a model: no model.json"):
        resolve_bundle(tmp_path)
