"""read_off / write_off: values read back exactly, ModelNet's quirks, polygons, trimesh as a reference, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from perception.data.shapes.errors import ShapeFormatError
from perception.data.shapes.mesh import face_areas
from perception.data.shapes.off import read_off, write_off

SQUARE = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"


def write(tmp_path: Path, text: str, name: str = "mesh.off") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jittered_sphere(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(seed)
    return mesh.vertices * rng.uniform(0.8, 1.2, (len(mesh.vertices), 1)), np.asarray(mesh.faces)


def test_round_trip_exact(tmp_path):
    vertices, faces = jittered_sphere()
    path = tmp_path / "sphere.off"
    write_off(path, vertices, faces)
    v, f = read_off(path)
    assert v.dtype == np.float64 and f.dtype == np.int64
    assert v.shape == (len(vertices), 3) and f.shape == (len(faces), 3)
    np.testing.assert_array_equal(v, vertices)
    np.testing.assert_array_equal(f, faces)


def test_same_as_trimesh(tmp_path):
    vertices, faces = jittered_sphere(1)
    path = tmp_path / "sphere.off"
    write_off(path, vertices, faces)
    reference = trimesh.load(path, process=False)
    v, f = read_off(path)
    np.testing.assert_array_equal(v, reference.vertices)
    np.testing.assert_array_equal(f, reference.faces)
    assert face_areas(v, f).sum() == pytest.approx(reference.area, rel=1e-12)


def test_file_written_by_trimesh(tmp_path):
    vertices, faces = jittered_sphere(2)
    path = tmp_path / "exported.off"
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    reference = trimesh.load(path, process=False)
    v, f = read_off(path)
    np.testing.assert_array_equal(v, reference.vertices)
    np.testing.assert_array_equal(f, reference.faces)


@pytest.mark.parametrize("header", ["OFF4 2 0\n", "OFF 4 2 0\n", "OFF\n4 2 0\n", "OFF\n4 2\n"])
def test_headers(tmp_path, header):
    v, f = read_off(write(tmp_path, header + SQUARE + "3 0 1 2\n3 0 2 3\n"))
    np.testing.assert_array_equal(v, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])


def test_comments_blank_lines_and_crlf(tmp_path):
    text = "# made by hand\n\nOFF # header\n# counts next\n4 1 0\n\n" + SQUARE + "  \n# face\n3 1 2 3 # tri\n"
    v, f = read_off(write(tmp_path, text.replace("\n", "\r\n")))
    assert v.shape == (4, 3)
    np.testing.assert_array_equal(f, [[1, 2, 3]])


def test_polygons_fan_and_colours(tmp_path):
    pentagon = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 5, endpoint=False)])
    rows = "\n".join(" ".join(repr(float(c)) for c in p) for p in [*pentagon, [0, 0, 1]])
    text = f"OFF\n6 3 0\n{rows}\n5 0 1 2 3 4\n3 0 1 5 255 0 0\n4 0 1 5 2 0.5 0.5 0.5 1.0\n"
    path = write(tmp_path, text)
    v, f = read_off(path)
    np.testing.assert_array_equal(
        f, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 1, 5], [0, 1, 5], [0, 5, 2]]
    )  # fan around the first vertex; the colours are ignored
    pentagon_area = 0.5 * 5 * np.sin(2 * np.pi / 5)
    assert face_areas(v, f[:3]).sum() == pytest.approx(pentagon_area, rel=1e-12)


def test_quads_same_area_as_trimesh(tmp_path):
    box = trimesh.creation.box((1.0, 2.0, 3.0))
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    path = tmp_path / "box.off"
    write_off(path, box.vertices, quads)
    v, f = read_off(path)
    assert f.shape == (12, 3)
    assert face_areas(v, f).sum() == pytest.approx(22.0)
    assert face_areas(v, f).sum() == pytest.approx(trimesh.load(path, process=False).area)


BAD = {
    "not OFF": ("PLY\n4 2 0\n" + SQUARE + "3 0 1 2\n3 0 2 3\n", "not an OFF file"),
    "coloured variant": ("COFF\n4 1 0\n" + SQUARE + "3 0 1 2\n", "not an OFF file"),
    "empty": ("\n# nothing\n", "empty file"),
    "no counts": ("OFF\n", "no counts line"),
    "non-numeric counts": ("OFF\n4 two 0\n" + SQUARE + "3 0 1 2\n", "bad counts"),
    "one count": ("OFF\n4\n" + SQUARE + "3 0 1 2\n", "bad counts"),
    "negative count": ("OFF\n4 -1 0\n" + SQUARE, "bad counts"),
    "quirk bad counts": ("OFFx 1 0\n" + SQUARE + "3 0 1 2\n", "bad counts"),
    "fewer vertices": ("OFF\n5 1 0\n" + SQUARE + "3 0 1 2\n", "announces 5 vertices and 1 faces"),
    "fewer faces": ("OFF\n4 3 0\n" + SQUARE + "3 0 1 2\n3 0 2 3\n", "announces 4 vertices and 3 faces"),
    "non-numeric vertex": (
        "OFF\n4 1 0\n0 0 0\n1 zero 0\n1 1 0\n0 1 0\n3 0 1 2\n",
        "non-numeric value 'zero'",
    ),
    "short vertex row": ("OFF\n4 1 0\n0 0 0\n1 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "has 2 values"),
    "non-numeric face": ("OFF\n4 1 0\n" + SQUARE + "3 0 one 2\n", "non-numeric value 'one'"),
    "two-vertex face": ("OFF\n4 1 0\n" + SQUARE + "2 0 1\n", "n >= 3"),
    "face shorter than n": ("OFF\n4 1 0\n" + SQUARE + "4 0 1 2\n", "n >= 3"),
    "fractional index": ("OFF\n4 1 0\n" + SQUARE + "3 0 1.5 2\n", "non-integer vertex index"),
    "index too large": ("OFF\n4 1 0\n" + SQUARE + "3 0 1 4\n", "index 4 outside the 4 vertices"),
    "negative index": ("OFF\n4 1 0\n" + SQUARE + "3 0 -1 2\n", "index -1 outside the 4 vertices"),
    "polygon index too large": ("OFF\n4 1 0\n" + SQUARE + "4 0 1 2 9\n", "index 9 outside"),
    "infinite index": ("OFF\n4 1 0\n" + SQUARE + "4 0 1 2 inf\n", "index inf outside"),
    "NaN index": ("OFF\n4 1 0\n" + SQUARE + "3 0 nan 2\n", "non-integer vertex index"),
    "NaN vertex": ("OFF\n4 1 0\n0 0 0\n1 0 nan\n1 1 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
    "inf vertex": ("OFF\n4 1 0\n0 0 0\n1 0 0\n1 inf 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
    "overflowing vertex": ("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1e999 0\n0 1 0\n3 0 1 2\n", "NaN or infinite"),
    "no faces": ("OFF\n4 0 0\n" + SQUARE, "no faces"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_corrupt_files_raise_naming_the_file(tmp_path, case):
    text, problem = BAD[case]
    path = write(tmp_path, text, f"{case.replace(' ', '_')}.off")
    with pytest.raises(ShapeFormatError) as info:
        read_off(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message


def test_error_names_the_line(tmp_path):
    path = write(tmp_path, "OFF\n# c\n4 1 0\n" + SQUARE + "\n3 0 1 7\n")
    with pytest.raises(ShapeFormatError, match=r"line 9: face vertex index 7"):
        read_off(path)
    path = write(tmp_path, "OFF\n4 1 0\n0 0 0\n1 0 0\n\n1 1 nan\n0 1 0\n3 0 1 2\n")
    with pytest.raises(ShapeFormatError, match=r"line\(s\) 6\)"):
        read_off(path)


def test_error_lines_without_blank_lines(tmp_path):
    with pytest.raises(ShapeFormatError, match=r"line 7: face vertex index 7"):
        read_off(write(tmp_path, "OFF\n4 1 0\n" + SQUARE + "3 0 1 7\n"))
    with pytest.raises(ShapeFormatError, match=r"line\(s\) 4\)"):
        read_off(write(tmp_path, "OFF4 1 0\n0 0 0\n1 0 0\n1 -inf 0\n0 1 0\n3 0 1 2\n"))


def test_blank_lines_read_the_same(tmp_path):
    vertices, faces = jittered_sphere(3)
    path = tmp_path / "sphere.off"
    write_off(path, vertices, faces)
    lines = path.read_text().split("\n")
    spaced = write(tmp_path, "\n\n".join(lines), "spaced.off")
    for got, want in zip(read_off(spaced), read_off(path), strict=True):
        np.testing.assert_array_equal(got, want)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.off"
    with pytest.raises(ShapeFormatError, match=r"absent\.off: cannot read"):
        read_off(path)
