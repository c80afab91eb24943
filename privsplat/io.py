"""Small file helpers shared by every writer: nothing is ever half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    path = Path(path)
    if path.is_dir():
        from .errors import PrivsplatError

        raise PrivsplatError(f"{path} is a folder; pass a file path to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; move it to `path` only on success.

    Refuses to replace an existing non-empty directory unless `overwrite` is set.
    """
    from .errors import PrivsplatError

    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise PrivsplatError(f"output folder {path} exists and is not empty; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- PLY headers

PLY_TYPE_SIZES = {
    "char": 1,
    "uchar": 1,
    "int8": 1,
    "uint8": 1,
    "short": 2,
    "ushort": 2,
    "int16": 2,
    "uint16": 2,
    "int": 4,
    "uint": 4,
    "int32": 4,
    "uint32": 4,
    "float": 4,
    "float32": 4,
    "double": 8,
    "float64": 8,
}
PLY_MAX_HEADER = 1 << 16


def check_ply_header(path: str | Path, what: str = "PLY file") -> dict[str, int]:
    """Element counts of a PLY file, refused unless the file is long enough to hold them.

    A PLY header states how many vertices and faces follow; readers allocate for that number
    before reading a byte of data, so a 200-byte file claiming 1e11 vertices asks for terabytes
    (MemoryError, or worse, inside the reader). Each element needs at least its properties'
    sizes in binary (a list at least its count field) and two characters per property in ASCII,
    so the claimed counts must fit in the bytes that follow the header.
    """
    from .errors import PrivsplatError

    path = Path(path)

    def bad(why: str) -> PrivsplatError:
        return PrivsplatError(f"{what} {path} is not a valid PLY file: {why}; re-export it (binary or ASCII PLY)")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(PLY_MAX_HEADER)
    except OSError as e:
        raise PrivsplatError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise bad("no 'ply ... end_header' header at its start")
    body_start = head.find(b"\n", end)
    body_start = len(head) if body_start < 0 else body_start + 1
    lines = head[:end].decode("ascii", errors="replace").splitlines()
    fmt, counts, minimum = None, {}, {}
    current = None
    for line in lines[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format" and len(tok) >= 2:
            fmt = tok[1]
        elif tok[0] == "element" and len(tok) == 3:
            if not tok[2].isdigit():
                raise bad(f"element {tok[1]} has count {tok[2]!r}")
            current = tok[1]
            counts[current], minimum[current] = int(tok[2]), 0
        elif tok[0] == "property" and current is not None:
            kind = tok[2] if tok[1] == "list" and len(tok) >= 5 else tok[1]
            if kind not in PLY_TYPE_SIZES:
                raise bad(f"property type {kind!r} is unknown")
            minimum[current] += 2 if fmt == "ascii" else PLY_TYPE_SIZES[kind]
        else:
            raise bad(f"unexpected header line {line.strip()[:60]!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise bad(f"format {fmt!r} is not ascii or binary")
    needed = sum(counts[e] * minimum[e] for e in counts) - (1 if fmt == "ascii" else 0)
    if needed > size - body_start:
        claimed = ", ".join(f"{n} {e}" for e, n in counts.items())
        raise bad(
            f"its header claims {claimed}, which need at least {needed} bytes, but only "
            f"{size - body_start} follow the header (truncated, or a forged header)"
        )
    return counts
