"""Stain colour: HED colour deconvolution, stain augmentation and stain normalisation of uint8 RGB tiles.

Real slides differ by lab and scanner in how much haematoxylin and eosin they hold and how they were
scanned. Two remedies, both in numpy (any thread, no MXNet):

* **Augmentation** (training only): `hed_jitter` scales and shifts each tile's haematoxylin, eosin and
  DAB concentrations after colour deconvolution (Tellez et al., 2018/2019), so the network sees stains
  it will meet elsewhere; `light_jitter` is Biopsia's earlier mild per-channel RGB jitter.
* **Normalisation** (training and prediction alike): `StainNormaliser` maps every tile to a target
  stain appearance fitted on the training tiles (or a stated reference): Reinhard (mean and standard
  deviation of each CIELAB channel) or Macenko (the stain vectors and 99th-percentile concentrations in
  optical density). A model records its normaliser in ``model.json`` under ``"stain"``
  (`StainNormaliser.to_json`), and `core.models.loading.preprocess` applies it before every prediction.

Colour deconvolution uses scikit-image 0.24's matrix (``skimage.color.hed_from_rgb``, Ruifrok and
Johnston, 2001), vectorised over a whole batch: concentrations here are optical densities in natural
log units, ``-ln(max(I / 255, 1e-6)) @ HED_FROM_RGB``, which is ``skimage.color.rgb2hed`` times
``ln(1e6)`` before scikit-image clips negative values to 0. Not clipping keeps the round trip exact
(within one grey level), which jittering needs.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from core.errors import DatasetError, ModelError

# scikit-image 0.24 skimage.color.colorconv.rgb_from_hed (rows: H, E, DAB stain vectors in OD space)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_HED_FROM_RGB32, _RGB_FROM_HED32 = HED_FROM_RGB.astype(np.float32), RGB_FROM_HED.astype(np.float32)

_FLOOR = 1e-6  # scikit-image's floor on I / 255 before the logarithm
_OD_LUT = (-np.log(np.maximum(np.arange(256) / 255.0, _FLOOR))).astype(np.float32)  # uint8 → optical density

STAIN_AUGMENTS = ("hed", "light", "none")
#: The stain jitter of training tiles unless another is asked for (``train``, the training panel, its jobs).
DEFAULT_STAIN_AUGMENT = "light"
STAIN_NORMALISE = ("none", "reinhard", "macenko")
METHODS = ("reinhard", "macenko")
HED_SIGMA, HED_BIAS = 0.05, 0.05  # Tellez et al. 2019 "HED light": alpha in 1 +- 0.05, beta in +- 0.05 OD


def _as_batch(images) -> tuple[np.ndarray, bool]:
    arr = np.asarray(images)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB tiles shaped (N, H, W, 3) or (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr, single


def rgb_to_hed(images) -> np.ndarray:
    """Haematoxylin, eosin and DAB optical densities of uint8 RGB pixels, float32, same shape.

    ``-ln(max(I / 255, 1e-6)) @ HED_FROM_RGB``: `skimage.color.rgb2hed` times ``ln(1e6)``, not clipped at 0.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 RGB pixels (..., 3), got {arr.dtype} {arr.shape}")
    flat = _OD_LUT[arr.reshape(-1, 3)]  # 2-D, so the product runs in BLAS (a 4-D one loops in numpy)
    return (flat @ _HED_FROM_RGB32).reshape(arr.shape)


def hed_to_rgb(hed) -> np.ndarray:
    """uint8 RGB from optical densities (`rgb_to_hed`'s units), rounded and clipped to 0..255."""
    hed = np.asarray(hed, np.float32)
    od = hed.reshape(-1, 3) @ _RGB_FROM_HED32
    np.negative(od, out=od)
    np.exp(od, out=od)
    od *= 255.0
    np.rint(od, out=od)
    return np.clip(od, 0, 255).astype(np.uint8).reshape(hed.shape)


def hed_jitter(tiles, rng: np.random.Generator, sigma: float = HED_SIGMA, bias: float = HED_BIAS) -> np.ndarray:
    """Stain augmentation: each tile's H, E and DAB densities times ``U(1 - sigma, 1 + sigma)`` plus ``U(-bias, bias)``.

    Parameters
    ----------
    tiles : numpy.ndarray
        uint8 RGB, one tile ``(H, W, 3)`` or a batch ``(N, H, W, 3)``; each tile gets its own draw.
    rng : numpy.random.Generator
    sigma, bias : float
        Largest relative change of each stain's concentration, and largest added optical density.

    Returns
    -------
    numpy.ndarray
        uint8, the shape of ``tiles``.
    """
    batch, single = _as_batch(tiles)
    n = batch.shape[0]
    alpha = rng.uniform(1.0 - sigma, 1.0 + sigma, (n, 1, 1, 3)).astype(np.float32)
    beta = rng.uniform(-bias, bias, (n, 1, 1, 3)).astype(np.float32)
    hed = rgb_to_hed(batch)
    hed *= alpha
    hed += beta
    out = hed_to_rgb(hed)
    return out[0] if single else out


def light_jitter(tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Biopsia's earlier mild jitter of one tile: per-channel scale 0.96..1.04, shift +-5 plus brightness +-5."""
    # mild, as "light" stain augmentation in the literature: stronger jitter hid the darker, denser
    # nuclei of tumour on the synthetic slides and cost cross-slide specificity (0.79 against 0.88)
    scale = rng.uniform(0.96, 1.04, 3)
    shift = rng.uniform(-5, 5, 3) + rng.uniform(-5, 5)
    return np.clip(tile.astype(np.float32) * scale + shift, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- normalisation

_LAB_STD_FLOOR = 0.5  # LAB units: a flat tile (glass) is not stretched into noise
_MACENKO_IO = 255.0
_MACENKO_BETA = 0.15  # pixels of a smaller optical density (vector length) are glass (Macenko et al., 2009)
_MACENKO_ALPHA = 1.0  # percentile of the angle for robust extreme stain vectors
_MACENKO_MIN_PIXELS = 64  # a tile with fewer stained pixels keeps its colours
_FIT_PIXELS = 500_000  # pixels sampled from the training tiles to fit Macenko's reference
_TILE_PIXELS = 16_384  # pixels sampled evenly from a tile to estimate its stains (a 128 px tile: all)


# OpenCV's 8-bit CIELAB (L * 255 / 100, a + 128, b + 128) goes through lookup tables: about ten times
# faster than its float conversion, at a quantisation (0.4 L, 1 a/b) below what Reinhard's mapping moves
_LAB8_SCALE = np.array([100.0 / 255.0, 1.0, 1.0])
_LAB8_OFFSET = np.array([0.0, -128.0, -128.0])


def _tile_lab_stats(tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One uint8 RGB tile's 8-bit LAB image, and its CIELAB mean and standard deviation (3,)."""
    lab8 = cv2.cvtColor(np.ascontiguousarray(tile), cv2.COLOR_RGB2Lab)
    mean8, std8 = cv2.meanStdDev(lab8)
    return lab8, mean8.ravel() * _LAB8_SCALE + _LAB8_OFFSET, std8.ravel() * _LAB8_SCALE


def lab_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile CIELAB mean and standard deviation, each ``(N, 3)`` float64 (L 0..100)."""
    batch, _ = _as_batch(images)
    stats = [_tile_lab_stats(tile)[1:] for tile in batch]
    return np.array([m for m, _ in stats]), np.array([s for _, s in stats])


def _od(pixels: np.ndarray) -> np.ndarray:
    """Macenko's optical density of uint8 pixels ``(..., 3)``: ``-ln((I + 1) / Io)``."""
    return -np.log((pixels.astype(np.float32) + 1.0) / _MACENKO_IO)


def macenko_stains(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Macenko's H and E stain vectors (rows, unit length, H first) and 99th-percentile concentrations.

    ``pixels`` is uint8 ``(M, 3)``; None when fewer than `_MACENKO_MIN_PIXELS` are stained.
    """
    od = _od(pixels.reshape(-1, 3)).astype(np.float64)
    # the length of the OD vector, not each channel: pure eosin absorbs little red and would all be dropped
    od = od[np.linalg.norm(od, axis=1) > _MACENKO_BETA]
    if od.shape[0] < _MACENKO_MIN_PIXELS:
        return None
    _, vecs = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = vecs[:, 1:3]  # the two largest eigenvalues' vectors
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, _MACENKO_ALPHA), np.percentile(phi, 100 - _MACENKO_ALPHA)
    v1 = plane @ np.array([math.cos(lo), math.sin(lo)])
    v2 = plane @ np.array([math.cos(hi), math.sin(hi)])
    # haematoxylin is the bluer one: more red absorbed (first OD component) relative to eosin
    stains = np.array([v1, v2]) if v1[0] > v2[0] else np.array([v2, v1])
    stains *= np.where(stains.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # densities are positive
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    conc = _concentrations(od, stains)
    return stains, np.percentile(conc, 99, axis=0)


def _concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Least-squares H and E concentrations ``(M, 2)`` of optical densities ``(M, 3)``."""
    return od @ np.linalg.pinv(stains)


class StainNormaliser:
    """Map tiles to one stain appearance, fitted on training tiles (or a reference) and kept in the model.

    Parameters
    ----------
    method : {"reinhard", "macenko"}
    params : dict, optional
        The fitted numbers, as `to_json` writes them (``target_mean``/``target_std`` for Reinhard,
        ``stain_matrix``/``max_conc`` for Macenko); None until `fit`.
    fitted_on : str
        What the target was fitted on, recorded for people reading ``model.json``.

    Examples
    --------
    >>> norm = StainNormaliser("reinhard").fit(train_tiles)      # doctest: +SKIP
    >>> same = StainNormaliser.from_json(norm.to_json()).apply(tiles)  # doctest: +SKIP
    """

    def __init__(self, method: str, params: dict | None = None, fitted_on: str = ""):
        if method not in METHODS:
            raise ValueError(f"unknown stain normalisation {method!r}; choose one of {', '.join(METHODS)}")
        self.method, self.params, self.fitted_on = method, params, fitted_on

    def fit(self, images, fitted_on: str | None = None) -> "StainNormaliser":
        """Fit the target on uint8 RGB tiles ``(N, H, W, 3)`` (or one reference image); returns self.

        Reinhard's target is the mean of the tiles' CIELAB means and of their standard deviations;
        Macenko's stain vectors and concentrations come from up to 500,000 pixels sampled evenly from all tiles.

        Raises
        ------
        ValueError
            When Macenko finds too few stained pixels to fit on, or the fitted numbers are out of the
            range a model may record (a single-stain image).
        """
        batch, _ = _as_batch(images)
        if self.method == "reinhard":
            means, stds = lab_stats(batch)
            self.params = {"target_mean": means.mean(axis=0).tolist(),
                           "target_std": np.maximum(stds.mean(axis=0), _LAB_STD_FLOOR).tolist()}
        else:
            pixels = batch.reshape(-1, 3)
            step = max(1, pixels.shape[0] // _FIT_PIXELS)
            found = macenko_stains(pixels[::step])
            if found is None:
                raise ValueError("too few stained pixels to fit a Macenko stain normalisation")
            stains, max_conc = found
            self.params = {"stain_matrix": stains.tolist(), "max_conc": max_conc.tolist()}
        self.fitted_on = fitted_on if fitted_on is not None else f"{batch.shape[0]} tiles"
        try:  # what is saved must load: the checks `from_json` makes on model.json
            StainNormaliser.from_json(self.to_json())
        except ModelError as err:
            self.params = None
            raise ValueError(f"the fitted numbers are out of range: {err}") from None
        return self

    def apply(self, images) -> np.ndarray:
        """Normalised uint8 tiles, the shape of ``images`` (one tile or a batch); each tile on its own statistics."""
        if self.params is None:
            raise ValueError("the stain normaliser has not been fitted")
        batch, single = _as_batch(images)
        out = self._reinhard(batch) if self.method == "reinhard" else self._macenko(batch)
        return out[0] if single else out

    def _reinhard(self, batch: np.ndarray) -> np.ndarray:
        t_mean = np.asarray(self.params["target_mean"], np.float64)
        t_std = np.asarray(self.params["target_std"], np.float64)
        out = np.empty_like(batch)
        for i, tile in enumerate(batch):
            lab8, mean, std = _tile_lab_stats(tile)
            gain = t_std / np.maximum(std, _LAB_STD_FLOOR)  # the same in CIELAB and 8-bit units
            # in 8-bit units: target - mean * gain, per channel; cv2.transform rounds and saturates to uint8
            offset = (t_mean - _LAB8_OFFSET) / _LAB8_SCALE - (mean - _LAB8_OFFSET) / _LAB8_SCALE * gain
            matrix = np.hstack([np.diag(gain), offset[:, None]]).astype(np.float32)
            out[i] = cv2.cvtColor(cv2.transform(lab8, matrix), cv2.COLOR_Lab2RGB)
        return out

    def _macenko(self, batch: np.ndarray) -> np.ndarray:
        t_stains = np.asarray(self.params["stain_matrix"], np.float64)
        t_max = np.asarray(self.params["max_conc"], np.float64)
        out = batch.copy()
        for i, tile in enumerate(batch):
            pixels = tile.reshape(-1, 3)
            found = macenko_stains(pixels[::max(1, pixels.shape[0] // _TILE_PIXELS)])
            if found is None:
                continue  # glass or nearly so: nothing to normalise
            stains, max_conc = found
            conc = _concentrations(_od(pixels).astype(np.float64), stains)
            conc *= t_max / np.maximum(max_conc, 1e-6)
            rgb = _MACENKO_IO * np.exp(-conc @ t_stains) - 1.0
            out[i] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(tile.shape)
        return out

    def to_json(self) -> dict:
        """The ``"stain"`` block of ``model.json``."""
        if self.params is None:
            raise ValueError("the stain normaliser has not been fitted")
        return {"method": self.method, **{k: np.asarray(v).tolist() for k, v in self.params.items()},
                "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, doc, path: Path | str | None = None) -> "StainNormaliser":
        """The normaliser a ``"stain"`` block describes, every number checked.

        Raises
        ------
        ModelError
            When ``doc`` is not an object, names an unknown method, or its numbers are missing, not
            finite, out of range or of the wrong shape; the message names ``path``.
        """
        where = f"{path}: " if path is not None else ""
        hint = " (re-export the model from Biopsia, or remove the \"stain\" block to predict without normalisation)"

        def bad(problem: str) -> ModelError:
            return ModelError(f"{where}stain: {problem}{hint}")

        if not isinstance(doc, dict):
            raise bad(f"must be a JSON object, got {type(doc).__name__}")
        method = doc.get("method")
        if method not in METHODS:
            raise bad(f"unknown method {method!r}; Biopsia knows {', '.join(METHODS)}")
        shapes = ({"target_mean": ((3,), -200.0, 200.0), "target_std": ((3,), _LAB_STD_FLOOR, 200.0)}
                  if method == "reinhard" else {"stain_matrix": ((2, 3), -1.0, 1.0), "max_conc": ((2,), 1e-3, 50.0)})
        params = {}
        for key, (shape, low, high) in shapes.items():
            value = doc.get(key)
            arr = _numbers(value, shape)
            if arr is None:
                raise bad(f"{key} must be {' x '.join(map(str, shape))} finite numbers, got {str(value)[:80]}")
            if not np.all((arr >= low) & (arr <= high)):
                raise bad(f"{key} values must lie from {low:g} to {high:g}, got {arr.tolist()}")
            params[key] = arr.tolist()
        if method == "macenko":
            norms = np.linalg.norm(np.asarray(params["stain_matrix"]), axis=1)
            if not np.allclose(norms, 1.0, atol=1e-3):
                raise bad(f"stain_matrix rows must be unit vectors, got lengths {norms.round(4).tolist()}")
        fitted_on = doc.get("fitted_on", "")
        if not isinstance(fitted_on, str):
            raise bad("fitted_on must be a text")
        return cls(method, params, fitted_on[:200])


def _numbers(value, shape: tuple) -> np.ndarray | None:
    """``value`` as a float64 array of ``shape`` when it is nested lists of finite real numbers, else None."""
    def ok(v):
        if isinstance(v, list):
            return all(ok(x) for x in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(value, list) or not ok(value):
        return None
    try:
        arr = np.asarray(value, np.float64)
    except ValueError:  # ragged lists
        return None
    return arr if arr.shape == shape else None


def read_reference(path) -> np.ndarray:
    """A stain reference image as uint8 RGB ``(1, H, W, 3)`` (PNG, JPEG, TIFF; alpha dropped, 16-bit scaled).

    Raises
    ------
    DatasetError
        When the file is missing or not an image OpenCV reads.
    """
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if path.is_file() else None
    if image is None:
        raise DatasetError(f"{path}: cannot read the stain reference image (give a PNG, JPEG or TIFF of stained tissue)")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise DatasetError(f"{path}: the stain reference must be an 8- or 16-bit RGB image, got {image.dtype}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None]


def normaliser_from_model(doc, path: Path | str | None = None) -> StainNormaliser | None:
    """The normaliser a model's ``"stain"`` entry records (None or absent: none); see `StainNormaliser.from_json`."""
    return None if doc is None else StainNormaliser.from_json(doc, path)
