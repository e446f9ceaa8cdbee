"""Reading a model folder without trusting it: nothing in it can run code, exhaust memory or leak a file.

Every file is read through `read_member`: a link that leads out of the folder, anything but a regular
file, and a file larger than its kind can be are refused before a byte is read. JSON is parsed with a size
and depth bound (`parse_json`); the weights file is walked in Python (`check_weights`) and the network
graph checked against the operators Biopsia's architectures use (`check_graph`), so MXNet's C++ loaders
only ever see files that already passed. Messages name the file and the problem, never its contents
(`describe` says what a value is without quoting text).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
from pathlib import Path

import numpy as np

from core.errors import ModelError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_FOLDER_BYTES = 4 * GIB
MAX_DEPTH = 32  # nesting of any JSON document in a model folder
MAX_ARRAYS = 10_000
MAX_DIM = 1 << 24
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# MXNet 1.x NDArray list file (src/c_api/c_api.cc, src/ndarray/ndarray.cc)
LIST_MAGIC = 0x112
NDARRAY_V2_MAGIC = 0xF993FAC9
FLOAT32 = 0
CPU_TYPES = {1, 2, 3, 5}  # cpu, gpu, cpu_pinned, cpu_shared

# The operators of `core.models.zoo` networks, and the attributes that set their sizes.
OPERATORS = {"null", "Convolution", "BatchNorm", "Activation", "Pooling", "FullyConnected", "Flatten",
             "Dropout", "elemwise_add", "_Plus", "_plus", "broadcast_add"}
TUPLE_ATTRS = {"kernel", "stride", "pad", "dilate"}
TUPLE_MAX = 64
COUNT_ATTRS = {"num_filter": 16_384, "num_hidden": 100_000, "num_group": 16_384}


CHANGED = ("the file is damaged or was changed after Biopsia saved it; copy the model folder again, or re-export "
           "the model")
REEXPORT = "the file is damaged or not one Biopsia wrote; re-export the model"


def unreadable(path: Path, what: str, reason: str, hint: str = REEXPORT) -> ModelError:
    """``<path>: <what> is unreadable: <reason> (<hint>)``; ``reason`` never quotes the file."""
    verb = "are" if what.endswith(("weights", "arrays")) else "is"
    return ModelError(f"{path}: {what} {verb} unreadable: {reason} ({hint})")


def describe(value) -> str:
    """What a JSON value is, for a message: numbers as they are, text and containers only by size."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else f"a number of {len(text)} digits"
    if isinstance(value, str):
        return f"a text of {len(value)} characters"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    return type(value).__name__


def is_number(value) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_member(folder: Path, name: str, limit: int, what: str, size: int | None = None,
                contents: bool = True) -> bytes:
    """The bytes of ``folder/name``, refusing links out of the folder, non-regular files and oversized ones.

    ``size``, when given, is the size ``model.json`` records: another size is refused before reading.
    With ``contents`` False the file is only checked (b"" is returned).

    Raises
    ------
    ModelError
        Missing, a link leading outside ``folder``, not a regular file (a FIFO, a device...), larger than
        ``limit`` bytes, or unreadable; the message names the file.
    """
    path = folder / name
    if path.is_symlink():
        inside = Path(os.path.realpath(folder))
        real = Path(os.path.realpath(path))
        if inside != real.parent and inside not in real.parents:
            raise ModelError(f"{path}: {what}: a link to a file outside the model folder; Biopsia reads "
                             "only files inside it (copy the file into the folder instead of linking it)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} file is missing (copy the whole model folder, or re-export "
                         "the model)") from None
    except OSError as err:
        raise unreadable(path, what, f"it cannot be opened ({err.strerror or err})", "check its permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise unreadable(path, what, "not a regular file", "a model folder holds plain files only")
        if info.st_size > limit:
            raise unreadable(path, what, f"{info.st_size:,} bytes, more than the {limit:,} such a file can be")
        if size is not None and info.st_size != size:
            raise unreadable(path, what, f"{info.st_size:,} bytes where model.json records {size:,}", CHANGED)
        if not contents:
            return b""
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(8 * MIB, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as err:
        raise unreadable(path, what, f"reading failed ({err.strerror or err})", "check the disk") from None
    finally:
        os.close(fd)
    if got > limit:
        raise unreadable(path, what, f"larger than the {limit:,} bytes such a file can be")
    return b"".join(chunks)


def parse_json(path: Path, data: bytes, what: str):
    """A JSON document from ``data``; deep nesting, bad text and bad syntax are a `ModelError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise unreadable(path, what, f"not UTF-8 text (a bad byte at offset {err.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise unreadable(path, what, f"not valid JSON (line {err.lineno}, column {err.colno})") from None
    except (ValueError, RecursionError) as err:  # a 5,000-digit integer; nesting past the parser's stack
        problem = "nested too deeply" if isinstance(err, RecursionError) else "a number out of range"
        raise unreadable(path, what, problem) from None
    if _depth(doc) > MAX_DEPTH:
        raise unreadable(path, what, f"nested more than {MAX_DEPTH} levels deep")
    return doc


def _depth(doc) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_files_record(path: Path, files) -> dict:
    """The ``files`` record of ``model.json``: ``{file name: {"sha256": hex, "bytes": n}}``, checked."""
    if not isinstance(files, dict) or not files or len(files) > 64:
        raise ModelError(f"{path}: 'files' must list the folder's files with their SHA-256 (found "
                         f"{describe(files)}); re-export the model")
    for name, entry in files.items():
        if not FILE_NAME.fullmatch(name) or name == "model.json":
            raise ModelError(f"{path}: 'files' names a file that cannot be in a model folder; re-export the model")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) and isinstance(entry.get("bytes"), int)
                and not isinstance(entry["bytes"], bool) and entry["bytes"] >= 0):
            raise ModelError(f"{path}: the 'files' entry of one file lacks a SHA-256 or size; re-export the model")
    if sum(entry["bytes"] for entry in files.values()) > MAX_FOLDER_BYTES:
        raise ModelError(f"{path}: 'files' records more than {MAX_FOLDER_BYTES:,} bytes; not a Biopsia model")
    return files


def verify(path: Path, data: bytes, entry: dict, what: str) -> None:
    """Raise ModelError unless ``data`` has the size and SHA-256 ``entry`` records."""
    if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
        raise unreadable(path, what, "its contents do not match the SHA-256 model.json records", CHANGED)


def check_weights(path: Path, data: bytes) -> dict[str, tuple[int, ...]]:
    """Walk an MXNet ``.params`` file in Python: ``{name: shape}`` of its float32 arrays.

    Every declared size must fit the file exactly and every value must be finite, so MXNet's loader only
    sees a well-formed file.

    Raises
    ------
    ModelError
        Another layout, sizes that do not add up, or NaN / infinite weights.
    """
    def bad(problem: str) -> ModelError:
        return unreadable(path, "weights", problem)

    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise bad(f"the file ends after {len(data):,} bytes, in the middle of a header")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values

    magic, _reserved = take("<QQ")
    if magic != LIST_MAGIC:
        raise bad("not an MXNet weights file")
    (count,) = take("<Q")
    if count == 0 or count > MAX_ARRAYS:
        raise bad(f"it declares {count:,} arrays")
    shapes, spans = [], []
    for _ in range(count):
        magic, stype = take("<Ii")
        if magic != NDARRAY_V2_MAGIC or stype != 0:
            raise bad("an array in a layout Biopsia does not write (sparse or another version)")
        (ndim,) = take("<i")
        if not 1 <= ndim <= 8:
            raise bad(f"an array of {ndim} dimensions")
        shape = take(f"<{ndim}q")
        if any(not 1 <= d <= MAX_DIM for d in shape):
            raise bad("an array of an impossible size")
        dev_type, _dev_id, dtype = take("<iii")
        if dev_type not in CPU_TYPES or dtype != FLOAT32:
            raise bad("an array that is not float32")
        nbytes = 4 * math.prod(shape)
        if pos + nbytes > len(data):
            raise bad(f"an array of {nbytes:,} bytes goes past the end of the file")
        shapes.append(tuple(shape))
        spans.append((pos, nbytes))
        pos += nbytes
    (n_names,) = take("<Q")
    if n_names != count:
        raise bad(f"{n_names:,} names for {count:,} arrays")
    names = []
    for _ in range(n_names):
        (length,) = take("<Q")
        if not 1 <= length <= 512 or pos + length > len(data):
            raise bad("an array name of an impossible length")
        try:
            name = data[pos:pos + length].decode("ascii")
        except UnicodeDecodeError:
            raise bad("an array name that is not plain text") from None
        if not name.isprintable():
            raise bad("an array name that is not plain text")
        names.append(name)
        pos += length
    if pos != len(data):
        raise bad(f"{len(data) - pos:,} bytes after the last array")
    if len(set(names)) != len(names):
        raise bad("two arrays of one name")
    for start, nbytes in spans:
        if not np.isfinite(np.frombuffer(data, np.float32, nbytes // 4, start)).all():
            raise bad("NaN or infinite values")
    return dict(zip(names, shapes))


def check_graph(path: Path, doc) -> set[str]:
    """Check an exported network graph (``model-symbol.json``); returns the names of its parameters.

    The graph may use only the operators of Biopsia's architectures, with bounded kernel, stride, padding
    and channel counts, and must read one input called ``data``.

    Raises
    ------
    ModelError
        Another structure, an operator Biopsia does not use, sizes out of bounds, no ``data`` input.
    """
    def bad(problem: str) -> ModelError:
        return unreadable(path, "network graph", problem)

    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or not isinstance(doc.get("heads"), list):
        raise bad("not an MXNet graph (no nodes and heads)")
    nodes = doc["nodes"]
    if not 2 <= len(nodes) <= 100_000:
        raise bad(f"{len(nodes):,} nodes")
    params, inputs = set(), 0
    for index, node in enumerate(nodes):
        if not (isinstance(node, dict) and isinstance(node.get("op"), str) and isinstance(node.get("name"), str)
                and isinstance(node.get("inputs", []), list)):
            raise bad(f"node {index} is malformed")
        op, name = node["op"], node["name"]
        if op not in OPERATORS:
            raise bad(f"node {index} is an operator Biopsia's networks do not use")
        attrs = node.get("attrs", node.get("param", {}))
        if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise bad(f"node {index} has malformed attributes")
        for link in node.get("inputs", []):
            if not (isinstance(link, list) and 2 <= len(link) <= 3 and all(isinstance(v, int) for v in link)
                    and 0 <= link[0] < index and 0 <= link[1] < 16):
                raise bad(f"node {index} has an input that is not an earlier node")
        for key, value in attrs.items():
            if key in TUPLE_ATTRS:
                numbers = re.fullmatch(r"\(\s*(\d{1,6}\s*(,\s*\d{1,6}\s*)*)?,?\s*\)", value)
                if not numbers or any(int(v) > TUPLE_MAX for v in re.findall(r"\d+", value)):
                    raise bad(f"node {index} has a {key} out of bounds")
            elif key in COUNT_ATTRS:
                if not re.fullmatch(r"\d{1,7}", value) or not 1 <= int(value) <= COUNT_ATTRS[key]:
                    raise bad(f"node {index} has a {key} out of bounds")
        if op == "null":
            if node.get("inputs"):
                raise bad(f"node {index} is a variable with inputs")
            if name == "data":
                inputs += 1
            else:
                params.add(name)
    if inputs != 1:
        raise bad("it does not read one input called 'data'")
    for head in doc["heads"]:
        if not (isinstance(head, list) and len(head) >= 2 and isinstance(head[0], int) and 0 <= head[0] < len(nodes)):
            raise bad("an output is malformed")
    return params
