"""perception.data.sharding: the I/N spec, the deal (a partition every process computes the same),
and the manifests that the merge step checks."""

from __future__ import annotations

import argparse
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.sharding import (
    Shard,
    ShardError,
    ShardSpecError,
    assign_shards,
    manifest_path,
    parse_shard,
    read_manifests,
    shard_items,
    shards_folder,
    write_manifest,
)

# --------------------------------------------------------------------------------------------------
# the spec


def test_parse_shard_accepts_i_of_n():
    assert parse_shard("3/16") == Shard(3, 16)
    assert parse_shard(" 0/1 ") == Shard(0, 1)
    assert str(Shard(3, 16)) == "3/16"
    assert Shard(3, 16).name == "shard-00003-of-00016"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("3/3", "index must be in [0, 2]"),
        ("-1/2", "index must be in [0, 1]"),
        ("0/0", "number of shards must be ≥ 1"),
        ("a/b", "expected I/N"),
        ("3", "expected I/N"),
        ("1/2/3", "expected I/N"),
        ("", "expected I/N"),
    ],
)
def test_parse_shard_refuses_bad_values_clearly(text, words):
    with pytest.raises(ShardSpecError) as err:
        parse_shard(text)
    assert words in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, argparse.ArgumentTypeError)


def test_parse_shard_is_an_argparse_type(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--shard", type=parse_shard)
    assert parser.parse_args(["--shard", "2/4"]).shard == Shard(2, 4)
    with pytest.raises(SystemExit) as err:
        parser.parse_args(["--shard", "4/4"])
    assert err.value.code == 2
    assert "argument --shard: shard 4/4: the index must be in [0, 3]" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# the deal


def test_assign_shards_deals_by_decreasing_cost_then_name():
    cost = {"a": 1, "b": 5, "c": 5, "d": 3, "e": 0}
    assert assign_shards(cost, 2, cost) == [["b", "d", "e"], ["c", "a"]]
    assert assign_shards(["b", "a", "c"], 2) == [["a", "c"], ["b"]]  # no cost: by name
    assert assign_shards(["x"], 3) == [["x"], [], []]
    assert shard_items(cost, Shard(1, 2), cost.get) == ["c", "a"]  # a function works too


def test_assign_shards_refuses_bad_input():
    with pytest.raises(ValueError, match="repeated: a"):
        assign_shards(["a", "b", "a"], 2)
    with pytest.raises(ValueError, match="finite"):
        assign_shards(["a"], 2, {"a": float("nan")})
    with pytest.raises(ValueError, match="'b': no usable cost"):
        assign_shards(["a", "b"], 2, {"a": 1})
    with pytest.raises(ValueError, match="≥ 1"):
        assign_shards(["a"], 0)


@settings(max_examples=100, deadline=None)
@given(
    items=st.dictionaries(
        st.text(min_size=1, max_size=6), st.integers(min_value=0, max_value=1000), max_size=40
    ),
    count=st.integers(min_value=1, max_value=9),
    seed=st.randoms(use_true_random=False),
)
def test_assign_shards_is_a_deterministic_balanced_partition(items, count, seed):
    shards = assign_shards(items, count, items)
    assert len(shards) == count
    flat = [item for shard in shards for item in shard]
    assert sorted(flat) == sorted(items) and len(set(flat)) == len(flat)  # disjoint and complete
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    # every process sees the items in its own order: the deal does not depend on it
    shuffled = list(items)
    seed.shuffle(shuffled)
    assert assign_shards(shuffled, count, dict(items)) == shards
    assert [shard_items(shuffled, Shard(i, count), items) for i in range(count)] == shards
    # round-robin over decreasing cost: shard i's k-th item costs no less than shard j's (j > i)
    for i in range(count):
        for j in range(i + 1, count):
            for a, b in zip(shards[i], shards[j], strict=False):
                assert items[a] >= items[b]


# --------------------------------------------------------------------------------------------------
# manifests

ITEMS = ["seg-a", "seg-b", "seg-c", "seg-d", "seg-e"]
SETTINGS = {"every": 1, "compress": False}


def _write_all(root, count, *, skip=(), status=None, items=ITEMS, settings=SETTINGS, job="train"):
    paths = []
    for index in range(count):
        if index in skip:
            continue
        shard = Shard(index, count)
        mine = shard_items(items, shard)
        outcomes = {n: {"status": (status or {}).get(n, "done"), "frames": 2} for n in mine}
        for n, o in outcomes.items():
            if o["status"] == "failed":
                o["error"] = f"/src/{n}.tfrecord: record 1 at byte offset 99: corrupt"
        path = manifest_path(root, job, shard)
        write_manifest(
            path,
            tool="convert_waymo",
            job=job,
            shard=shard,
            items=items,
            outcomes=outcomes,
            settings=settings,
            info={"host": "node"},
        )
        paths.append(path)
    return paths


def test_manifest_layout_and_content(tmp_path):
    (path,) = _write_all(tmp_path, 1)
    assert path == tmp_path / "_shards" / "train" / "shard-00000-of-00001.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == "perception-shard-manifest" and doc["version"] == 1
    assert (doc["tool"], doc["job"], doc["shard"], doc["shards"]) == ("convert_waymo", "train", 0, 1)
    assert doc["items"] == ITEMS and doc["settings"] == SETTINGS and doc["info"] == {"host": "node"}
    assert list(doc["outcomes"]) == ITEMS and doc["outcomes"]["seg-a"] == {"status": "done", "frames": 2}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    with pytest.raises(ValueError, match="not a shard job name"):
        shards_folder(tmp_path, "a/b")
    with pytest.raises(ValueError, match="status must be one of"):
        write_manifest(
            path, tool="t", job="j", shard=Shard(0, 1), items=["a"], outcomes={"a": {"status": "ok"}}
        )
    with pytest.raises(ValueError, match="not one of the job's items"):
        write_manifest(
            path, tool="t", job="j", shard=Shard(0, 1), items=["a"], outcomes={"b": {"status": "done"}}
        )


def test_read_manifests_merges_complete_shards(tmp_path):
    paths = _write_all(tmp_path, 3, status={"seg-c": "failed"})
    shards = read_manifests(shards_folder(tmp_path, "train"), tool="convert_waymo", job="train")
    assert shards.count == 3 and shards.items == ITEMS and shards.settings == SETTINGS
    assert shards.manifests == paths
    assert sorted(shards.outcomes) == ITEMS
    assert list(shards.failed) == ["seg-c"]
    (line,) = shards.failure_lines()
    owner = next(p for p in paths if "seg-c" in json.loads(p.read_text())["outcomes"])
    assert line.startswith(f"seg-c ({owner}): /src/seg-c.tfrecord: record 1")


def _problems(tmp_path, **kw) -> str:
    with pytest.raises(ShardError) as err:
        read_manifests(shards_folder(tmp_path, "train"), tool="convert_waymo", **{"job": "train", **kw})
    return str(err.value)


def test_read_manifests_names_missing_shards(tmp_path):
    _write_all(tmp_path, 4, skip=(1, 3))
    message = _problems(tmp_path)
    assert "2 of 4 shards missing (1/4, 3/4)" in message
    folder = shards_folder(tmp_path, "train")
    assert str(folder / "shard-00001-of-00004.json") in message
    assert str(folder / "shard-00003-of-00004.json") in message
    assert "shard-00000" not in message


def test_read_manifests_refuses_no_manifests(tmp_path):
    assert "no shard manifests" in _problems(tmp_path)


def test_read_manifests_names_unfinished_shards(tmp_path):
    _write_all(tmp_path, 2, status={"seg-b": "pending"})
    message = _problems(tmp_path)
    owner = manifest_path(tmp_path, "train", Shard(1, 2))
    assert f"{owner}: shard 1/2 did not finish (1 of 2 items pending: seg-b)" in message


def test_read_manifests_refuses_mixed_runs(tmp_path):
    _write_all(tmp_path, 2)
    _write_all(tmp_path, 3, skip=(1, 2))
    message = _problems(tmp_path)
    assert "2 shards: shard-00000-of-00002.json, shard-00001-of-00002.json" in message
    assert "3 shards: shard-00000-of-00003.json" in message


def test_read_manifests_refuses_disagreeing_shards(tmp_path):
    _write_all(tmp_path, 2, skip=(1,))
    changed = manifest_path(tmp_path, "train", Shard(1, 2))
    write_manifest(
        changed,
        tool="convert_waymo",
        job="train",
        shard=Shard(1, 2),
        items=[*ITEMS[:-1], "seg-z"],
        outcomes={"seg-b": {"status": "done"}},
        settings={"every": 5, "compress": False},
    )
    message = _problems(tmp_path)
    assert (
        f"{changed}: its item list differs from shard-00000-of-00002.json's (+1: seg-z) (-1: seg-e)"
        in message
    )
    assert f"{changed}: settings differ from shard-00000-of-00002.json's: every 5 vs 1" in message


def test_read_manifests_checks_the_partition(tmp_path):
    _write_all(tmp_path, 2)
    path = manifest_path(tmp_path, "train", Shard(1, 2))
    doc = json.loads(path.read_text())
    doc["outcomes"] = {"seg-a": {"status": "done"}}  # shard 0 has seg-a too; seg-b, seg-d nowhere
    path.write_text(json.dumps(doc))
    message = _problems(tmp_path)
    assert "2 items taken by no shard (seg-b, seg-d)" in message
    assert "seg-a: taken by more than one shard" in message


def test_read_manifests_names_unreadable_and_foreign_files(tmp_path):
    paths = _write_all(tmp_path, 2)
    paths[0].write_text("{not json")
    doc = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps({**doc, "tool": "make_synthetic"}))
    message = _problems(tmp_path)
    assert f"{paths[0]}: not valid JSON" in message
    assert f"{paths[1]}: written by 'make_synthetic' for job 'train'" in message
    paths[1].write_text(json.dumps(doc))
    os.replace(paths[1], paths[1].with_name("shard-00001-of-00005.json"))
    assert "says shard 1/2, its name another" in _problems(tmp_path)
