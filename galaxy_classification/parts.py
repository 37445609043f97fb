"""Catalogue-scale prediction on a batch system: disjoint parts, then one merge.

``predict`` and ``classify`` with ``--shard k/N`` (or under a Slurm job array,
from ``SLURM_ARRAY_TASK_ID`` / ``SLURM_ARRAY_TASK_COUNT``) process the k-th of
N contiguous, disjoint slices of their rows (k counts from 0) and write
``OUT.part-k-of-N.csv`` (any table suffix), each row carrying its place in the
whole (``row``). ``merge`` joins the parts back into ``OUT``, refusing a
missing part, a part of another split, and missing or duplicated rows, so the
merged table equals an unsharded run.
"""

import os
import re
from pathlib import Path

import numpy as np

ROW_COLUMN = "row"
_PART = re.compile(r"\.part-(\d+)-of-(\d+)$")


def parse_shard(text):
    """``"k/N"`` -> (k, N) with 0 <= k < N; ValueError naming the form otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"--shard must be k/N with whole numbers, 0 <= k < N (e.g. 0/4), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard k/N needs N >= 1 and 0 <= k < N (k counts from 0), got {text!r}")
    return k, n


def shard_from_environment(environment=os.environ):
    """(k, N) of a Slurm job array task, or None outside one. k counts from the
    array's first index (``SLURM_ARRAY_TASK_MIN``), so ``--array=1-8`` works too."""
    if "SLURM_ARRAY_TASK_ID" not in environment or "SLURM_ARRAY_TASK_COUNT" not in environment:
        return None
    first = int(environment.get("SLURM_ARRAY_TASK_MIN", "0"))
    task = int(environment["SLURM_ARRAY_TASK_ID"]) - first
    return parse_shard(f"{task}/{environment['SLURM_ARRAY_TASK_COUNT']}")


def part_rows(n_rows, shard):
    """The rows (of 0..n_rows-1) part ``shard`` = (k, N) processes."""
    k, n = shard
    return np.array_split(np.arange(n_rows), n)[k]


def part_path(out, shard):
    out = Path(out)
    k, n = shard
    return out.with_name(f"{out.stem}.part-{k}-of-{n}{out.suffix}")


def merge_parts(out):
    """Join ``OUT.part-k-of-N`` into ``out``; returns the merged table."""
    import pandas as pd

    from galaxy_classification import tables

    out = Path(out)
    found = {}
    for path in out.parent.glob(f"{out.stem}.part-*-of-*{out.suffix}"):
        match = _PART.search(path.name[: len(path.name) - len(out.suffix)] if out.suffix else path.name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = path
    if not found:
        raise ValueError(f"no parts {out.stem}.part-k-of-N{out.suffix} beside {out}")
    if len(found) > 1:
        raise ValueError(f"parts of different splits beside {out}: of {', '.join(map(str, sorted(found)))}; "
                         "remove the stale ones")
    (n, parts), = found.items()
    missing = sorted(set(range(n)) - set(parts))
    if missing:
        raise ValueError(f"{len(missing)} of {n} parts missing for {out}: k = {', '.join(map(str, missing))}")
    merged = pd.concat([tables.read_table(parts[k]) for k in range(n)], ignore_index=True)
    rows = pd.to_numeric(merged[ROW_COLUMN]).to_numpy(dtype=np.int64)
    duplicated = np.unique(rows[pd.Series(rows).duplicated().to_numpy()])
    if len(duplicated):
        raise ValueError(f"rows {', '.join(map(str, duplicated[:10]))} appear in more than one part")
    absent = np.setdiff1d(np.arange(len(rows)), rows)
    if len(absent) or rows.max(initial=-1) >= len(rows):
        raise ValueError(f"the parts do not cover rows 0..{len(rows) - 1} once each "
                         f"(missing e.g. {', '.join(map(str, absent[:10]))})")
    merged = merged.iloc[np.argsort(rows, kind="stable")].drop(columns=[ROW_COLUMN]).reset_index(drop=True)
    merged = with_status_filled(merged)
    tables.write_table(merged, out)
    return merged


def with_status_filled(table):
    """``table`` with empty ``status`` / ``reason`` cells made 'ok' / '':
    predict adds those columns only to pieces (inputs, parts) that had an
    unreadable image, and joining pieces leaves the others' cells empty."""
    if "status" not in table.columns:
        return table
    return table.assign(status=table["status"].fillna("ok"), reason=table["reason"].fillna(""))
