"""Named vectors in word2vec's text format: a ``count dim`` line, then ``name v1 v2 ... vdim``.

The format of ``word2vec -binary 0``, gensim's ``save_word2vec_format`` and most released entity
embeddings (OpenKE, Wikipedia2Vec text dumps). A file without the header line (GloVe) is read
too. Names hold no whitespace; multi-word names are usually written with ``_`` (``New_York``).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import UserError, require_file
from ..io import atomic_write_text
from ..textio import open_text


def _header(fields: list[str]) -> tuple[int, int] | None:
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def read_vectors(path: str, what: str = "vector file") -> tuple[list[str], np.ndarray]:
    """Names and a float32 matrix [count, dim]; a malformed line ends with ``path:line`` and
    what was expected there."""
    require_file(path, what)
    names: list[str] = []
    rows: list[np.ndarray] = []
    declared: tuple[int, int] | None = None
    dim: int | None = None
    seen: dict[str, int] = {}
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if number == 1 and (declared := _header(fields)) is not None:
                dim = declared[1]
                continue
            if dim is None:
                dim = len(fields) - 1
            if len(fields) != dim + 1:
                raise UserError(f"{path}:{number}: expected a name and {dim} numbers (word2vec text format "
                                f"'name v1 ... v{dim}'), found {len(fields)} fields")
            name = fields[0]
            if name in seen:
                raise UserError(f"{path}:{number}: '{name}' is listed twice (first on line {seen[name]}); "
                                "each name needs one vector")
            try:
                rows.append(np.asarray(fields[1:], dtype=np.float32))
            except ValueError:
                bad = next(f for f in fields[1:] if not _is_number(f))
                raise UserError(f"{path}:{number}: '{bad}' is not a number; expected 'name v1 ... v{dim}'") from None
            seen[name] = number
            names.append(name)
    if not names or not dim:
        raise UserError(f"{path} holds no vectors; expected a 'count dim' line, then 'name v1 ... vdim' lines")
    if declared is not None and declared[0] != len(names):
        raise UserError(f"{path}: the header says {declared[0]} vectors but the file holds {len(names)}; "
                        "the file is truncated or its first line is wrong")
    matrix = np.stack(rows)
    if not np.isfinite(matrix).all():
        raise UserError(f"{path}: holds NaN or infinite values; the vectors are unusable")
    return names, matrix


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_vectors(path: str, names: list[str], matrix: np.ndarray) -> None:
    """word2vec text format, written atomically; 9 significant digits read back as the same float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if len(names) != len(matrix):
        raise ValueError("one name per row")
    lines = [f"{len(names)} {matrix.shape[1]}"]
    lines += [name + " " + " ".join(f"{x:.9g}" for x in row) for name, row in zip(names, matrix.tolist())]
    atomic_write_text(os.fspath(path), "\n".join(lines) + "\n")
