"""Splitting a dataset job into N shards that run with no coordination, and merging their results.

A converter given ``--shard I/N`` (0 ≤ I < N) does the ``I``-th part of the work and nothing else, so
a SLURM array (``--shard $SLURM_ARRAY_TASK_ID/16``) or any job runner can start the N parts on any
nodes without a lock or a server. Every shard lists the same items (segment files, frame indices,
...) in the same way and deals them with :func:`assign_shards`, which depends only on the item names
and a per-item cost, so every node computes the same partition. Each shard then writes a manifest
(:func:`write_manifest`) saying which items it had and how each went; a final merge step reads all N
with :func:`read_manifests`, which refuses (naming the files) while a shard is missing, unfinished or
from another run, and hands back the failed items for the caller to report.

Layout, under the dataset root that the shards write::

    OUT/_shards/<job>/shard-00003-of-00016.json    shard 3 of 16 of job <job> (a split name, ...)

**Manifest** (JSON, written to a temporary name and renamed, so it is complete or absent):
``format`` (``"perception-shard-manifest"``), ``version``, ``tool`` (the converter), ``job``,
``shard`` and ``shards`` (I and N), ``settings`` (what must be the same in every shard: the
converter's options), ``items`` (every item of the whole job, sorted by name: all shards must agree
on it), ``outcomes`` (this shard's items, in the order it took them → ``{"status": "pending" |
"done" | "failed", "error": ...}`` plus whatever the converter records) and ``info`` (free notes,
never compared). A shard writes its manifest with every item ``pending`` when it starts and again
when it ends, so a shard that was killed is told apart from one that never ran.

No torch, no numpy: this module is the bottom layer of the converters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perception.data.io import atomic_write_text

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "SHARDS_FOLDER",
    "STATUSES",
    "Shard",
    "ShardError",
    "ShardSet",
    "ShardSpecError",
    "assign_shards",
    "manifest_path",
    "parse_shard",
    "read_manifests",
    "shard_items",
    "shards_folder",
    "write_manifest",
]

MANIFEST_FORMAT = "perception-shard-manifest"
MANIFEST_VERSION = 1
SHARDS_FOLDER = "_shards"
"""The folder under a dataset root that holds the shard manifests, one subfolder per job."""

STATUSES = ("pending", "done", "failed")
"""An item's status in a manifest."""

_MANIFEST_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.json")
_SHOW = 10  # names listed in a message before "... and K more"


class ShardSpecError(ValueError, argparse.ArgumentTypeError):
    """A malformed ``I/N`` shard; as an argparse ``type`` error it prints as a usage error (exit 2)."""


class ShardError(ValueError):
    """The shard manifests of a job can not be merged; the message lists every problem found."""


# --------------------------------------------------------------------------------------------------
# the shard spec


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based: ``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ShardSpecError(f"shard {name} must be an integer, got {value!r}")
        if self.count < 1:
            raise ShardSpecError(f"the number of shards must be ≥ 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardSpecError(
                f"shard {self.index}/{self.count}: the index must be in [0, {self.count - 1}] "
                f"(0-based, e.g. $SLURM_ARRAY_TASK_ID with --array=0-{self.count - 1})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """``"shard-00003-of-00016"``: the stem of this shard's manifest."""
        return f"shard-{self.index:05d}-of-{self.count:05d}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` → :class:`Shard` (0-based, ``0 <= I < N``); usable as an argparse ``type``.

    Raises:
        ShardSpecError: not two decimal integers around one ``/``, or out of range; the message
            says which.
    """
    index, sep, count = str(text).strip().partition("/")
    number = re.compile(r"[+-]?[0-9]+")
    if not sep or not number.fullmatch(index.strip()) or not number.fullmatch(count.strip()):
        raise ShardSpecError(
            f"expected I/N with 0 <= I < N (e.g. 3/16, or $SLURM_ARRAY_TASK_ID/16), got {text!r}"
        )
    return Shard(int(index), int(count))


# --------------------------------------------------------------------------------------------------
# choosing a shard's items


def assign_shards(
    items: Iterable[str],
    count: int,
    cost: Mapping[str, float] | Callable[[str], float] | None = None,
) -> list[list[str]]:
    """Deal ``items`` into ``count`` shards: a partition that every process computes the same.

    The items are sorted by decreasing ``cost`` (ties, and all items without a cost, by name, in
    code-point order: no locale), then dealt round-robin: item ``k`` of that order goes to shard
    ``k % count``. With file sizes as the cost each shard gets a similar share of the bytes, and takes
    its largest items first.

    Args:
        items: unique item names (segment files, frame ids, ...), in any order.
        count: the number of shards (≥ 1).
        cost: a finite number per item (a mapping or a function of the name); None: all equal.

    Returns:
        ``count`` lists; list ``i`` holds shard ``i``'s items in the order it should take them.

    Raises:
        ValueError: a repeated or non-string item, a missing or non-finite cost, ``count < 1``.
    """
    names = list(items)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of shards must be an integer ≥ 1, got {count!r}")
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"item names must be strings, got {bad[:3]!r}")
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise ValueError(f"items must be unique; repeated: {_listed(repeated)}")
    if cost is None:
        costs = dict.fromkeys(names, 0.0)
    else:
        get = cost.__getitem__ if isinstance(cost, Mapping) else cost
        costs = {}
        for n in names:
            try:
                value = float(get(n))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"item {n!r}: no usable cost ({err!r})") from None
            if not math.isfinite(value):
                raise ValueError(f"item {n!r}: cost must be finite, got {value}")
            costs[n] = value
    order = sorted(names, key=lambda n: (-costs[n], n))
    return [order[i::count] for i in range(count)]


def shard_items(
    items: Iterable[str],
    shard: Shard,
    cost: Mapping[str, float] | Callable[[str], float] | None = None,
) -> list[str]:
    """The items of ``shard``: ``assign_shards(items, shard.count, cost)[shard.index]``."""
    return assign_shards(items, shard.count, cost)[shard.index]


# --------------------------------------------------------------------------------------------------
# manifests


def shards_folder(root: str | os.PathLike, job: str) -> Path:
    """``ROOT/_shards/<job>``: where the manifests of ``job`` go."""
    if not job or "/" in job or "\\" in job or job in (".", ".."):
        raise ValueError(f"not a shard job name: {job!r}")
    return Path(root) / SHARDS_FOLDER / job


def manifest_path(root: str | os.PathLike, job: str, shard: Shard) -> Path:
    """``ROOT/_shards/<job>/shard-IIIII-of-NNNNN.json``."""
    return shards_folder(root, job) / f"{shard.name}.json"


def write_manifest(
    path: str | os.PathLike,
    *,
    tool: str,
    job: str,
    shard: Shard,
    items: Iterable[str],
    outcomes: Mapping[str, Mapping[str, object]],
    settings: Mapping[str, object] | None = None,
    info: Mapping[str, object] | None = None,
) -> Path:
    """Write a shard's manifest (module docstring) to ``path`` atomically; returns the path.

    Args:
        tool, job: who wrote it and for which job (the merge checks both).
        shard: this shard.
        items: every item of the whole job (stored sorted by name).
        outcomes: this shard's items, in the order taken → a JSON-ready dict with at least
            ``status`` (one of :data:`STATUSES`; ``failed`` ones carry an ``error`` message).
        settings: JSON-ready options that must be equal in every shard.
        info: JSON-ready notes (source folder, host, ...) that the merge does not compare.

    Raises:
        ValueError: an outcome without a known status, or for an item not in ``items``.
    """
    everything = sorted(items)
    known = set(everything)
    for item, outcome in outcomes.items():
        if item not in known:
            raise ValueError(f"outcome for {item!r}, which is not one of the job's items")
        if outcome.get("status") not in STATUSES:
            raise ValueError(
                f"item {item!r}: status must be one of {STATUSES}, got {outcome.get('status')!r}"
            )
    doc = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "tool": tool,
        "job": job,
        "shard": shard.index,
        "shards": shard.count,
        "settings": dict(settings or {}),
        "items": everything,
        "outcomes": {item: dict(outcome) for item, outcome in outcomes.items()},
        "info": dict(info or {}),
    }
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


@dataclass
class ShardSet:
    """The complete, consistent manifests of one job, as :func:`read_manifests` returns them.

    Attributes:
        folder: the manifests' folder.
        count: N, the number of shards.
        items: every item of the job, sorted by name.
        settings: the settings every shard recorded.
        manifests: the N manifest paths, shard 0 first.
        outcomes: item → its outcome (``status`` ``done`` or ``failed``, ...), with ``manifest``
            (the path, as a string) added.
    """

    folder: Path
    count: int
    items: list[str]
    settings: dict
    manifests: list[Path]
    outcomes: dict[str, dict] = field(default_factory=dict)

    @property
    def failed(self) -> dict[str, dict]:
        """The outcomes of the items whose status is ``failed``, by item."""
        return {item: o for item, o in self.outcomes.items() if o.get("status") == "failed"}

    def failure_lines(self) -> list[str]:
        """One line a failed item: ``"<item> (<manifest>): <error>"``."""
        return [f"{item} ({o['manifest']}): {o.get('error', 'failed')}" for item, o in self.failed.items()]


def _listed(names: Sequence[object], limit: int = _SHOW) -> str:
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _load(path: Path, tool: str, job: str) -> tuple[dict | None, str | None]:
    """A manifest's content, or None and the problem (naming the file)."""
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        return None, f"{path}: cannot be read ({err.strerror or err})"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"{path}: not valid JSON ({err})"
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        return None, f"{path}: not a shard manifest (no format {MANIFEST_FORMAT!r})"
    if doc.get("version") != MANIFEST_VERSION:
        return None, f"{path}: manifest version {doc.get('version')!r}, this code reads {MANIFEST_VERSION}"
    if doc.get("tool") != tool or doc.get("job") != job:
        return None, (
            f"{path}: written by {doc.get('tool')!r} for job {doc.get('job')!r}, not by {tool!r} for {job!r}"
        )
    match = _MANIFEST_NAME.fullmatch(path.name)
    expected = (int(match.group(1)), int(match.group(2))) if match else None
    if (doc.get("shard"), doc.get("shards")) != expected:
        return None, f"{path}: says shard {doc.get('shard')}/{doc.get('shards')}, its name another"
    items, outcomes = doc.get("items"), doc.get("outcomes")
    if (
        not isinstance(items, list)
        or not isinstance(outcomes, dict)
        or not isinstance(doc.get("settings"), dict)
    ):
        return None, f"{path}: malformed (items must be a list, outcomes and settings objects)"
    statuses = {o.get("status") if isinstance(o, dict) else None for o in outcomes.values()}
    if not statuses <= set(STATUSES):
        return None, f"{path}: malformed outcomes (statuses {sorted(map(str, statuses))})"
    return doc, None


def read_manifests(folder: str | os.PathLike, *, tool: str, job: str) -> ShardSet:
    """Check the manifests of a job and gather them for the merge.

    Every ``shard-IIIII-of-NNNNN.json`` in ``folder`` is read. They must all be readable manifests
    of ``tool`` and ``job``, agree on N, on the job's item list and on the settings; all N must be
    present; the items they took must be a partition of the item list; and no item may be still
    ``pending`` (a shard that was killed). Failed items do not make it fail: they are in the
    result's :attr:`ShardSet.failed`, for the caller to report.

    Raises:
        ShardError: any of the above, with every problem on its own line, each naming the manifest
            files concerned (and, for missing shards, the files expected).
    """
    folder = Path(folder)
    paths = sorted(p for p in folder.glob("shard-*-of-*.json") if _MANIFEST_NAME.fullmatch(p.name))
    if not paths:
        raise ShardError(
            f"{folder}: no shard manifests (shard-IIIII-of-NNNNN.json) here; run the shards first "
            "(--shard I/N for every I in 0..N-1, with the same --out)"
        )
    problems: list[str] = []
    docs: dict[Path, dict] = {}
    for path in paths:
        doc, problem = _load(path, tool, job)
        if problem:
            problems.append(problem)
        else:
            docs[path] = doc
    if problems:
        raise _error(folder, problems)

    by_count: dict[int, list[Path]] = {}
    for path, doc in docs.items():
        by_count.setdefault(doc["shards"], []).append(path)
    if len(by_count) > 1:
        groups = "; ".join(
            f"{n} shards: {_listed([p.name for p in ps])}" for n, ps in sorted(by_count.items())
        )
        raise _error(
            folder,
            [
                f"manifests of runs split different ways ({groups}); remove the manifests of the run "
                "you do not want and merge again"
            ],
        )
    (count,) = by_count
    by_index = {doc["shard"]: path for path, doc in docs.items()}
    first = by_index[min(by_index)]
    reference = docs[first]
    ref_items = set(reference["items"])
    for path, doc in docs.items():
        if doc["items"] != reference["items"]:
            more = sorted(set(doc["items"]) - ref_items)
            fewer = sorted(ref_items - set(doc["items"]))
            problems.append(
                f"{path}: its item list differs from {first.name}'s"
                + (f" (+{len(more)}: {_listed(more)})" if more else "")
                + (f" (-{len(fewer)}: {_listed(fewer)})" if fewer else "")
                + "; the source changed between shards: run every shard again (finished items are "
                "kept), then merge"
            )
        if doc["settings"] != reference["settings"]:
            keys = sorted(
                k
                for k in set(doc["settings"]) | set(reference["settings"])
                if doc["settings"].get(k) != reference["settings"].get(k)
            )
            diffs = ", ".join(
                f"{k} {doc['settings'].get(k)!r} vs {reference['settings'].get(k)!r}" for k in keys
            )
            problems.append(f"{path}: settings differ from {first.name}'s: {diffs}")
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        expected = [folder / f"{Shard(i, count).name}.json" for i in missing]
        problems.append(
            f"{len(missing)} of {count} shards missing ({_listed([f'{i}/{count}' for i in missing])}): "
            f"no {_listed([str(p) for p in expected])}; run them (--shard I/{count}), then merge"
        )
    if problems:
        raise _error(folder, problems)

    taken: dict[str, list[Path]] = {}
    outcomes: dict[str, dict] = {}
    for index in range(count):
        path = by_index[index]
        for item, outcome in docs[path]["outcomes"].items():
            taken.setdefault(item, []).append(path)
            outcomes[item] = {**outcome, "manifest": str(path)}
    unknown = sorted(set(taken) - ref_items)
    untaken = sorted(ref_items - set(taken))
    twice = sorted(item for item, ps in taken.items() if len(ps) > 1)
    if unknown:
        problems.append(f"items outside the job's list: {_listed(unknown)}")
    if untaken:
        problems.append(
            f"{len(untaken)} items taken by no shard ({_listed(untaken)}); the shards dealt different "
            "lists (a file changed size while they started?): run every shard again, then merge"
        )
    for item in twice[:_SHOW]:
        problems.append(f"{item}: taken by more than one shard ({_listed([p.name for p in taken[item]])})")
    for index in range(count):
        path = by_index[index]
        pending = [i for i, o in docs[path]["outcomes"].items() if o["status"] == "pending"]
        if pending:
            problems.append(
                f"{path}: shard {index}/{count} did not finish ({len(pending)} of "
                f"{len(docs[path]['outcomes'])} items pending: {_listed(pending)}); run it again (it resumes)"
            )
    if problems:
        raise _error(folder, problems)
    return ShardSet(
        folder=folder,
        count=count,
        items=list(reference["items"]),
        settings=dict(reference["settings"]),
        manifests=[by_index[i] for i in range(count)],
        outcomes=outcomes,
    )


def _error(folder: Path, problems: list[str]) -> ShardError:
    return ShardError(f"cannot merge the shards in {folder}:\n" + "\n".join(f"  {p}" for p in problems))
