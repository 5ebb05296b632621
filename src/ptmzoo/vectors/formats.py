"""Word vectors on disk in word2vec's two formats (both read by gensim's ``load_word2vec_format``).

* text (``word2vec -binary 0``, gensim's ``save_word2vec_format``, most released entity and word
  vectors): a ``count dim`` line, then ``word v1 v2 ... vdim`` lines. A file without the header
  line (GloVe's) is read too.
* binary (``word2vec -binary 1``): the same header line, then for each word its UTF-8 bytes, a
  space, ``dim`` little-endian float32 values and a newline.

Words hold no whitespace; multi-word names are usually written with ``_`` (``New_York``). Files are
written atomically and streamed, so a vocabulary of millions of words never builds one huge string.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from ..errors import UserError, require_file
from ..textio import open_text

ROWS_PER_WRITE = 4096  # rows formatted at a time when writing


@contextlib.contextmanager
def atomic_binary_file(path: str) -> Iterator:
    """A file object beside ``path`` that replaces it in one rename when the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _checked(words: list[str], matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or len(words) != len(matrix):
        raise ValueError("one word per row of a 2-D matrix")
    bad = next((w for w in words if not w or any(c.isspace() for c in w)), None)
    if bad is not None:
        raise UserError(f"cannot write the word {bad!r}: words in word2vec files hold no whitespace")
    return matrix


def write_word2vec_text(path: str, words: list[str], matrix: np.ndarray) -> None:
    """word2vec text format; 9 significant digits read back as the same float32."""
    matrix = _checked(words, matrix)
    with atomic_binary_file(os.fspath(path)) as fh:
        fh.write(f"{len(words)} {matrix.shape[1]}\n".encode())
        for start in range(0, len(words), ROWS_PER_WRITE):
            rows = matrix[start:start + ROWS_PER_WRITE].tolist()
            lines = (word + " " + " ".join(f"{x:.9g}" for x in row)
                     for word, row in zip(words[start:start + ROWS_PER_WRITE], rows))
            fh.write(("\n".join(lines) + "\n").encode("utf-8"))


def write_word2vec_binary(path: str, words: list[str], matrix: np.ndarray) -> None:
    """word2vec binary format, as ``word2vec -binary 1`` writes it (a newline after each vector)."""
    matrix = _checked(words, matrix).astype("<f4", copy=False)
    with atomic_binary_file(os.fspath(path)) as fh:
        fh.write(f"{len(words)} {matrix.shape[1]}\n".encode())
        for word, row in zip(words, matrix):
            fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")


def _header(fields: list[str]) -> tuple[int, int] | None:
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finish(path: str, words: list[str], rows: list[np.ndarray] | np.ndarray) -> tuple[list[str], np.ndarray]:
    if not words:
        raise UserError(f"{path} holds no vectors; expected a 'count dim' line, then 'name v1 ... vdim' lines")
    matrix = np.stack(rows) if isinstance(rows, list) else rows
    if not np.isfinite(matrix).all():
        raise UserError(f"{path}: holds NaN or infinite values; the vectors are unusable")
    return words, matrix


def read_word2vec_text(path: str, what: str = "vector file") -> tuple[list[str], np.ndarray]:
    """Words and a float32 matrix [count, dim]; a malformed line ends with ``path:line`` and what
    was expected there."""
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
    return _finish(path, names, rows)


def read_word2vec_binary(path: str, what: str = "vector file") -> tuple[list[str], np.ndarray]:
    """Words and a float32 matrix from word2vec's binary format (with or without the newline after
    each vector, as gensim writes it)."""
    require_file(path, what)
    with open(path, "rb") as fh:
        fields = fh.readline().decode("utf-8", "replace").split()
        if (declared := _header(fields)) is None:
            raise UserError(f"{path}: the first line should be 'count dim' (word2vec binary format)")
        count, dim = declared
        data = fh.read()
    matrix = np.empty((count, dim), dtype=np.float32)
    words: list[str] = []
    seen: set[str] = set()
    width, pos = 4 * dim, 0
    for row in range(count):
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b" "):
            pos += 1  # the newline after the previous vector (optional)
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + width > len(data):
            raise UserError(f"{path}: the header says {count} vectors but the file ends after {row}; "
                            "the file is truncated")
        try:
            word = data[pos:space].decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: vector {row + 1}'s word is not UTF-8; is this a word2vec binary file?") from None
        if word in seen:
            raise UserError(f"{path}: '{word}' is listed twice; each word needs one vector")
        seen.add(word)
        words.append(word)
        matrix[row] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    return _finish(path, words, matrix)


def read_vectors(path: str, what: str = "vector file") -> tuple[list[str], np.ndarray]:
    """Either format: binary when the file is named ``.bin`` or is not text after its header line."""
    require_file(path, what)
    with open(path, "rb") as fh:
        fh.readline()
        sample = fh.read(4096)
    # text never holds NUL, and thousands of float32 bytes nearly always do; a text file in another
    # encoding is then read as text and refused in one line (textio)
    binary = path.endswith(".bin") or b"\0" in sample
    return (read_word2vec_binary if binary else read_word2vec_text)(path, what)


write_vectors = write_word2vec_text  # the name ERNIE's entity files use
