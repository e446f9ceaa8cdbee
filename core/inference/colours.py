"""Colour maps and the one rule that turns a tumour probability into a heatmap pixel, without Qt.

Everything that draws a heatmap takes its colours from here: the CLI's images (`core.inference.heatmap`), the
report, and the window's heatmap layer (which only packs these tables for ``QImage``).

The tables are the published 256-entry maps, each channel rounded to the nearest 8-bit value: viridis, magma
and cividis as matplotlib's ``_cm_listed.py`` has them (CC0; van der Walt, Smith and Firing; cividis contributed
there by its authors, Nuñez, Anderton and Renslow, PLoS ONE 13(7): e0199239; the paper's supplementary table
differs by up to 23/255 and is not used), and turbo as Google published it (Apache-2.0; Mikhailov, 2019). Viridis,
magma and cividis are perceptually uniform (cividis also for red-green colour blindness); turbo is a rainbow.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Colour map names, default first (argparse ``choices`` and the window's list).
COLORMAPS = ("viridis", "magma", "cividis", "turbo")
DEFAULT_COLORMAP = "viridis"
#: What a person choosing a colour map reads.
COLORMAP_LABELS = {"viridis": "Viridis (uniform)", "magma": "Magma (uniform)",
                   "cividis": "Cividis (colour-blind safe)", "turbo": "Turbo (rainbow, not uniform)"}

# 256 RGB triples per map, 2 hex digits a channel, entry 0 for probability 0 and entry 255 for 1.
_HEX_TABLES = {
    "viridis": (
        "44015444025645045745055946075a46085c460a5d460b5e470d60470e6147106347116447136548146748166848176948186a481a6c"
        "481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a472d7b472e7c472f7d46307e"
        "46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85424086424186414287414487404588404688"
        "3f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b3b528b3a538b3a548c39558c39568c38588c38598c375a8c"
        "375b8d365c8d365d8d355e8d355f8d34608d34618d33628d33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e"
        "2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e"
        "277e8e277f8e27808e26818e26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d"
        "218f8d21908d21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
        "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad8128ae8029af7f"
        "2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc743fbc7340bd7242be7144bf70"
        "46c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc8635ec96260ca6063cb5f65cb5e67cc5c69cd5b"
        "6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d84d44b86d54989d5488bd6468ed64590d74393d74195d840"
        "98d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021"
        "c8e020cae11fcde11dd0e11cd2e21bd5e21ad8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61e"
        "f6e620f8e621fbe723fde725"
    ),
    "magma": (
        "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a07061c08071e0907200a08220b0924"
        "0c09260d0a290e0b2b100b2d110c2f120d31130d34140e36150e38160f3b180f3d19103f1a10421c10441d11471e114920114b21114e"
        "22115024125325125527125829115a2a115c2c115f2d11612f116331116533106734106936106b38106c390f6e3b0f703d0f713f0f72"
        "400f74420f75440f764510774710784910784a10794c117a4e117b4f127b51127c52137c54137d56147d57157e59157e5a167e5c167f"
        "5d177f5f187f601880621980641a80651a80671b80681c816a1c816b1d816d1d816e1e81701f81721f81732081752181762181782281"
        "7922827b23827c23827e24828025828125818326818426818627818827818928818b29818c29818e2a81902a81912b81932b80942c80"
        "962c80982d80992d809b2e7f9c2e7f9e2f7fa02f7fa1307ea3307ea5317ea6317da8327daa337dab337cad347cae347bb0357bb2357b"
        "b3367ab5367ab73779b83779ba3878bc3978bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071cf4070"
        "d0416fd2426fd3436ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67e24d66e34e65e44f64e55064e75263e85362"
        "e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5ef05f5ef1605df2625df2645cf3655cf4675cf4695cf56b5cf66c5cf66e5cf7705c"
        "f7725cf8745cf8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb8560fb8761fc8961fc8a62fc8c63fc8e64fc9065fd9266"
        "fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfea16efea36ffea571fea772fea973feaa74feac76feae77feb078feb27afeb47b"
        "feb67cfeb77efeb97ffebb81febd82febf84fec185fec287fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597"
        "fed799fed89afdda9cfddc9efddea0fde0a1fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecaefceeb0fcf0b2fcf2b4fcf4b6fcf6b8"
        "fcf7b9fcf9bbfcfbbdfcfdbf"
    ),
    "cividis": (
        "00224e00234f00245100255300255400265600275800285900285b00295d002a5f002a61002b62002c64002c66002d68002e6a002e6c"
        "002f6d00306f0030700031700031710132710533710833700c34700f357012357014367016377018376f1a386f1c396f1e3a6f203a6f"
        "213b6e233c6e243c6e263d6e273e6e293f6e2a3f6d2b406d2d416d2e416d2f426d31436d32436d33446d34456c35456c36466c38476c"
        "39486c3a486c3b496c3c4a6c3d4a6c3e4b6c3f4c6c404c6c414d6c424e6c434e6c444f6c45506c46516c47516c48526c49536c4a536c"
        "4b546c4c556c4d556c4e566c4f576c50576c51586d52596d535a6d545a6d555b6d555c6d565c6d575d6d585e6d595e6e5a5f6e5b606e"
        "5c616e5d616e5e626e5e636f5f636f60646f61656f62656f636670646770656870656870666970676a71686a71696b716a6c716b6d72"
        "6c6d726c6e726d6f726e6f736f70737071737172747272747273747374757474757575757676767777767777777878777979777a7a78"
        "7b7a787c7b787d7c787e7c787e7d787f7e78807f78817f788280798381798482798582798683798784788885788985788a86788b8778"
        "8c88788d88788e89788f8a78908b78918b78928c78928d78938e78948e77958f779690779791779892779992779a93769b94769c9576"
        "9d95769e96769f9775a09875a19975a29975a39a74a49b74a59c74a69c74a79d73a89e73a99f73aaa073aba072aca172ada272aea371"
        "afa471b0a571b1a570b3a670b4a76fb5a86fb6a96fb7a96eb8aa6eb9ab6dbaac6dbbad6dbcae6cbdae6cbeaf6bbfb06bc0b16ac1b26a"
        "c2b369c3b369c4b468c5b568c6b667c7b767c8b866c9b965cbb965ccba64cdbb63cebc63cfbd62d0be62d1bf61d2c060d3c05fd4c15f"
        "d5c25ed6c35dd7c45cd9c55cdac65bdbc75adcc859ddc858dec958dfca57e0cb56e1cc55e2cd54e4ce53e5cf52e6d051e7d150e8d24f"
        "e9d34eead34cebd44bedd54aeed649efd748f0d846f1d945f2da44f3db42f5dc41f6dd3ff7de3ef8df3cf9e03afbe138fce236fde334"
        "fee434fee535fee636fee838"
    ),
    "turbo": (
        "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b973f3e9c4040a24143a7"
        "4146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da4666dd4669e0466be3476ee64771e94773eb"
        "4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe4294ff4196ff4099ff3e9bfe3d9efe3ba0fd"
        "3aa3fc38a5fb37a8fa35abf833adf731aff52fb2f42eb4f22cb7f02ab9ee28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda"
        "1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc518ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac"
        "22ebaa25eca727eea42aefa12cf09e2ff19b32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb73"
        "5dfc6f61fc6c65fd6969fd666dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe40"
        "9ffd3fa1fd3da4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
        "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13aeecf3aefcd3a"
        "f1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35fdac34fea933fea732fea431"
        "fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122fb7e21fa7b1ff9781ef9751df8721cf76f1a"
        "f66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530feb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109"
        "df3f08dd3d08dc3b07da3907d83706d63506d43305d23105d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002"
        "b91e02b71d02b41b01b21a01af1801ac1701a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b0902880802"
        "8507028106027e05027a0403"
    ),
}


def _table(hex_rgb: str) -> np.ndarray:
    table = np.frombuffer(bytes.fromhex(hex_rgb), np.uint8).reshape(256, 3).copy()
    table.flags.writeable = False  # shared by every caller: nobody recolours a map in place
    return table


_TABLES = {name: _table("".join(parts)) for name, parts in _HEX_TABLES.items()}


def colormap(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The RGB lookup table of a colour map.

    Parameters
    ----------
    name : str
        One of `COLORMAPS`.

    Returns
    -------
    ndarray of uint8, (256, 3)
        Read-only; row ``i`` is the colour of `colour_index` ``i``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the choices).
    """
    try:
        return _TABLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}") from None


def colour_index(probs) -> np.ndarray:
    """Table rows of probabilities: ``round(255 * p)`` (half to even), clipped to [0, 1] first, NaN as 0.

    Parameters
    ----------
    probs : array_like of float
        Probabilities, any shape.

    Returns
    -------
    ndarray of uint8
        Same shape as ``probs``.
    """
    values = np.asarray(probs, np.float32)
    if values.size == 0:
        return np.zeros(values.shape, np.uint8)
    clipped = np.empty(values.shape, np.float32)
    np.fmax(values, np.float32(0.0), out=clipped)  # fmax drops NaN: it becomes 0
    np.fmin(clipped, np.float32(1.0), out=clipped)
    # one pass in OpenCV (the smooth heatmap maps 1.4 million of these a paint): float32 multiply, round to even
    return cv2.convertScaleAbs(clipped.reshape(-1, 1), alpha=255).reshape(values.shape)


def shown_cells(probs, threshold: float = 0.0) -> np.ndarray:
    """Where a heatmap is drawn: cells with a probability (not NaN) at or above ``threshold``.

    Parameters
    ----------
    probs : array_like of float
        Probabilities, any shape; NaN for cells without one.
    threshold : float
        Probabilities below it are left transparent.

    Returns
    -------
    ndarray of bool
        Same shape as ``probs``.
    """
    probs = np.asarray(probs)
    with np.errstate(invalid="ignore"):
        return np.isfinite(probs) & (probs >= threshold)


def colour_probabilities(probs, name: str = DEFAULT_COLORMAP, threshold: float = 0.0) -> np.ndarray:
    """Heatmap pixels of probabilities: the colour map's colour, opaque, where `shown_cells`; else ``(0, 0, 0, 0)``.

    Transparent pixels are all zero, so the result is also valid premultiplied RGBA.

    Parameters
    ----------
    probs : array_like of float
        Probabilities, any shape; NaN for cells without one.
    name : str
        One of `COLORMAPS`.
    threshold : float
        Probabilities below it are transparent.

    Returns
    -------
    ndarray of uint8, ``probs.shape + (4,)``
        RGBA.
    """
    probs = np.asarray(probs)
    table = colormap(name)
    shown = shown_cells(probs, threshold)
    rgba = np.zeros(probs.shape + (4,), np.uint8)
    rgba[..., :3] = table[colour_index(probs)]
    rgba[~shown] = 0
    rgba[..., 3] = np.where(shown, 255, 0)
    return rgba


def colour_at(name: str, probability: float) -> tuple[int, int, int]:
    """RGB that ``probability`` gets in colour map ``name`` (as every heatmap draws it)."""
    return tuple(int(v) for v in colormap(name)[colour_index(probability)])


def blend_over(base_rgb: np.ndarray, rgba: np.ndarray, opacity: float) -> np.ndarray:
    """Heatmap pixels laid over a picture at ``opacity``: ``base * (1 - a) + colour * a``, ``a = opacity * alpha``.

    Parameters
    ----------
    base_rgb : ndarray of uint8, (..., 3)
        The picture under the heatmap (a slide thumbnail).
    rgba : ndarray of uint8, (..., 4)
        Heatmap pixels of the same size (`colour_probabilities` or an image made from them).
    opacity : float
        The heatmap's opacity, 0 to 1.

    Returns
    -------
    ndarray of uint8, (..., 3)
        The blended picture, rounded.
    """
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0 * float(np.clip(opacity, 0.0, 1.0))
    out = base_rgb.astype(np.float32) * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return out.round().astype(np.uint8)
