"""OFF triangle meshes (ModelNet's format): :func:`read_off`.

The format: a header line ``OFF``, a counts line ``V F E`` (E, the edge count, is ignored and may be
left out), V vertex rows ``x y z`` and F face rows ``n i1 .. in`` (a polygon of n vertex indices,
0-based, optionally followed by a colour, which is ignored). Polygons of more than three vertices are
triangulated as a fan around their first vertex. ``#`` starts a comment up to the end of the line;
blank lines are skipped. ModelNet40's known quirk, the header and the counts on one line
(``OFF490 518 0``), is read too.

Parsing is NumPy's: one C-level pass over the vertex block and one over the face block, found by
newline offsets without making a string per line. Only a file with polygons, coloured faces, blank or
comment-only lines between its rows, or an error to locate, takes the per-row path (still vectorised
apart from splitting the rows). ``benchmarks/shapes.py`` times it against trimesh's reader.

The fast path checks the block sizes (3 V and 4 F numbers, every face starting with 3), not each
row's length: a vertex row of four numbers next to one of two is read as if the rows were three each.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.shapes.errors import ShapeFormatError

__all__ = ["read_off", "write_off"]

_COMMENT = re.compile(r"#[^\n]*")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def read_off(path: str | os.PathLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The triangle mesh of an OFF file.

    Args:
        path: the ``.off`` file.

    Returns:
        vertices (V, 3) float64 in the file's units and frame, and faces (F', 3) int64 vertex indices
        (F' = F for a triangle mesh; a polygon of n vertices gives n - 2 triangles of a fan).

    Raises:
        ShapeFormatError: naming the file (and the line, where one is at fault): not an OFF file, a bad
            or missing counts line, fewer vertex / face rows than announced, non-numeric values, NaN or
            infinite coordinates, a face of fewer than 3 vertices or with indices outside the vertices,
            or no faces at all.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ShapeFormatError(f"{path}: cannot read the OFF file ({error.strerror or error})") from None
    text = data.decode("latin-1")
    if "#" in text:
        text = _COMMENT.sub("", text)
    num_vertices, num_faces, start, first_line = _header(path, text)
    if num_faces == 0:
        raise ShapeFormatError(f"{path}: the mesh has no faces (F = 0 on the counts line)")
    body = text[start:]

    blocks = _blocks(body, num_vertices, num_faces)
    if blocks is not None:  # no blank lines: one C-level parse of each block, no per-line strings
        flat_vertices = _parse_block(blocks[0], np.float64)
        flat_faces = _parse_block(blocks[1], np.int64)
        if (
            flat_vertices is not None
            and flat_vertices.size == 3 * num_vertices
            and flat_faces is not None
            and flat_faces.size == 4 * num_faces
            and (flat_faces[0::4] == 3).all()
        ):
            vertices = flat_vertices.reshape(-1, 3)
            faces = np.ascontiguousarray(flat_faces.reshape(-1, 4)[:, 1:])
            _check_finite(path, vertices, lambda i: first_line + i)
            _check_indices(path, faces, num_vertices, lambda i: first_line + num_vertices + i)
            return vertices, faces

    rows, line_of = _rows(body, first_line)  # polygons, colours, blank lines or an error to find
    if len(rows) < num_vertices + num_faces:
        raise ShapeFormatError(
            f"{path}: {len(rows)} vertex and face rows after the counts line, but it announces "
            f"{num_vertices} vertices and {num_faces} faces"
        )
    vertices = _vertices(path, rows[:num_vertices], line_of)
    faces = _faces(
        path,
        rows[num_vertices : num_vertices + num_faces],
        lambda i: line_of(num_vertices + i),
        num_vertices,
    )
    return vertices, faces


def write_off(path: str | os.PathLike, vertices: NDArray[np.floating], faces: NDArray[np.integer]) -> None:
    """Write a triangle (or polygon, (F, n)) mesh as an OFF file (``OFF``, ``V F 0``, rows)."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [f"{x!r} {y!r} {z!r}" for x, y, z in vertices.tolist()]  # shortest exact decimals
    lines += [" ".join(map(str, [len(f), *f])) for f in faces.tolist()]
    Path(path).write_text("\n".join(lines) + "\n")


def _next_row(text: str, pos: int, line: int) -> tuple[str, int, int, int] | None:
    """The next non-blank line at or after offset ``pos`` (line number ``line``): the row, its line
    number, the offset after it and the next line's number; None at the end of the text."""
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        row, number = text[pos:end], line
        pos, line = end + 1, line + 1
        if row.strip():
            return row, number, pos, line
    return None


def _header(path: Path, text: str) -> tuple[int, int, int, int]:
    """V, F, the offset where the vertex rows begin and that line's 1-based number."""
    found = _next_row(text, 0, 1)
    if found is None:
        raise ShapeFormatError(f"{path}: empty file, not an OFF mesh")
    row, number, pos, line = found
    header = row.split()
    if not header[0].startswith("OFF"):
        raise ShapeFormatError(f"{path}: not an OFF file (first line {row.strip()[:40]!r}; expected 'OFF')")
    # the counts may share the header line ("OFF 490 518 0", ModelNet's "OFF490 518 0")
    counts = ([header[0][3:]] if header[0] != "OFF" else []) + header[1:]
    if not counts:
        found = _next_row(text, pos, line)
        if found is None:
            raise ShapeFormatError(f"{path}: no counts line 'V F E' after the OFF header")
        row, number, pos, line = found
        counts = row.split()
    num_vertices, num_faces = _counts(path, counts, number)
    return num_vertices, num_faces, min(pos, len(text)), line


def _blocks(body: str, num_vertices: int, num_faces: int) -> tuple[str, str] | None:
    """The vertex block and the face block of ``body``, or None if blank lines (or too few) make it unclear."""
    newlines = np.flatnonzero(np.frombuffer(body.encode("latin-1"), np.uint8) == 10)
    ends = np.append(newlines, len(body))  # where each line ends
    if num_vertices == 0 or len(ends) < num_vertices + num_faces:
        return None
    vertex_end, face_end = int(ends[num_vertices - 1]), int(ends[num_vertices + num_faces - 1])
    if _BLANK_LINE.search("\n" + body, 0, face_end + 2):
        return None
    return body[:vertex_end], body[vertex_end + 1 : face_end]


def _rows(text: str, first_line: int) -> tuple[list[str], Callable[[int], int]]:
    """The non-blank lines of ``text`` (whose first line is line ``first_line`` of the file) and a map
    from a row's index to its 1-based line number."""
    stripped = text.lstrip()
    offset = first_line + text.count("\n", 0, len(text) - len(stripped))
    lines = stripped.rstrip().split("\n") if stripped else []
    if not _BLANK_LINE.search(stripped.rstrip()):
        return lines, lambda row: offset + row
    numbers = [i for i, line in enumerate(lines) if line.strip()]
    return [lines[i] for i in numbers], lambda row: offset + numbers[row]


def _counts(path: Path, tokens: Sequence[str], line: int) -> tuple[int, int]:
    """V and F from the counts tokens ``V F [E]``."""
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) < 0:
        raise ShapeFormatError(
            f"{path}, line {line}: bad counts {' '.join(tokens)!r}; expected 'V F E' (non-negative integers)"
        )
    return values[0], values[1]


def _parse_block(block: str, dtype: type) -> NDArray | None:
    """All numbers of ``block`` in one C-level pass, or None if any token is not a number of ``dtype``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(block, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _parse_rows(
    path: Path, rows: Sequence[str], line_of: Callable[[int], int], what: str
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per-row parse (the slow path): all values as float64 and the number of values of each row."""
    tokens = [row.split() for row in rows]
    lengths = np.array([len(t) for t in tokens], np.int64)
    try:
        values = np.array([v for t in tokens for v in t], np.float64)
    except ValueError:
        for i, row_tokens in enumerate(tokens):
            for token in row_tokens:
                try:
                    float(token)
                except ValueError:
                    raise ShapeFormatError(
                        f"{path}, line {line_of(i)}: non-numeric value {token!r} in a {what} row"
                    ) from None
        raise  # pragma: no cover - np.array and float() accept the same strings
    return values, lengths


def _vertices(path: Path, rows: Sequence[str], line_of: Callable[[int], int]) -> NDArray[np.float64]:
    """(V, 3) float64 from the vertex rows (columns after the third, e.g. a colour, are ignored)."""
    flat = _parse_block("\n".join(rows), np.float64)
    if flat is not None and flat.size == 3 * len(rows):
        vertices = flat.reshape(-1, 3)
    else:
        values, lengths = _parse_rows(path, rows, line_of, "vertex")
        short = np.flatnonzero(lengths < 3)
        if len(short):
            i = int(short[0])
            raise ShapeFormatError(
                f"{path}, line {line_of(i)}: vertex row {i} has {lengths[i]} values, 3 needed (x y z)"
            )
        starts = np.cumsum(lengths) - lengths
        vertices = values[starts[:, None] + np.arange(3)]
    _check_finite(path, vertices, line_of)
    return vertices


def _check_finite(path: Path, vertices: NDArray[np.float64], line_of: Callable[[int], int]) -> None:
    """No NaN or infinite coordinate; ``line_of`` maps a vertex row to its line."""
    bad = np.flatnonzero(~np.isfinite(vertices).all(axis=1))
    if len(bad):
        lines = ", ".join(str(line_of(int(i))) for i in bad[:5])
        raise ShapeFormatError(
            f"{path}: {len(bad)} vertex row(s) with NaN or infinite coordinates (line(s) {lines})"
        )


def _faces(
    path: Path, rows: Sequence[str], line_of: Callable[[int], int], num_vertices: int
) -> NDArray[np.int64]:
    """(F', 3) int64 triangles from the face rows, polygons fan-triangulated."""
    flat = _parse_block("\n".join(rows), np.int64)
    if flat is not None and flat.size == 4 * len(rows) and (flat[0::4] == 3).all():
        faces = flat.reshape(-1, 4)[:, 1:]  # the common case: all triangles, no colours
        _check_indices(path, faces, num_vertices, lambda t: line_of(int(t)))
        return np.ascontiguousarray(faces)

    values, lengths = _parse_rows(path, rows, line_of, "face")
    starts = np.cumsum(lengths) - lengths
    sizes = values[starts]
    bad = np.flatnonzero((sizes != np.floor(sizes)) | (sizes < 3) | (sizes + 1 > lengths))
    if len(bad):
        i = int(bad[0])
        raise ShapeFormatError(
            f"{path}, line {line_of(i)}: face row {i} {rows[i].strip()[:60]!r} is not 'n i1 .. in' "
            "with n >= 3 vertex indices"
        )
    sizes = sizes.astype(np.int64)
    # every polygon's indices, to check them; then the fan (v0, vj, vj+1), j = 1 .. n - 2
    within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    indices = values[np.repeat(starts + 1, sizes) + within]
    fractional = np.flatnonzero(indices != np.floor(indices))
    if len(fractional):
        row = int(np.searchsorted(np.cumsum(sizes), fractional[0], side="right"))
        raise ShapeFormatError(f"{path}, line {line_of(row)}: face row {row} has a non-integer vertex index")
    polygon = np.repeat(np.arange(len(rows)), sizes)
    _check_indices(path, indices, num_vertices, lambda k: line_of(int(polygon[k])))
    triangles = sizes - 2
    face = np.repeat(np.arange(len(rows)), triangles)
    j = np.arange(triangles.sum()) - np.repeat(np.cumsum(triangles) - triangles, triangles)
    first = starts[face] + 1
    faces = np.stack([values[first], values[first + j + 1], values[first + j + 2]], axis=1)
    return faces.astype(np.int64)


def _check_indices(
    path: Path, indices: NDArray, num_vertices: int, line_of_row: Callable[[int], int]
) -> None:
    """Every vertex index in 0 .. V - 1. ``indices``: (F, 3) triangles, or the flat indices of all
    polygons; ``line_of_row`` maps a row of it (a triangle, or a position in the flat array) to its line."""
    flat = np.asarray(indices).reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= num_vertices))
    if len(bad):
        k = int(bad[0])
        row = k // indices.shape[1] if indices.ndim == 2 else k
        shown = f"{flat[k]:g}" if flat.dtype.kind == "f" else str(flat[k])
        raise ShapeFormatError(
            f"{path}, line {line_of_row(row)}: face vertex index {shown} outside the "
            f"{num_vertices} vertices (0 .. {num_vertices - 1})"
        )
