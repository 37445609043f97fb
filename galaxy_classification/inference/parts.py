"""Catalogue-scale prediction on a batch system: disjoint parts, then one merge.

A *part* is a slice of one prediction run's rows (a *shard* is a slice of a
data set on disk: :mod:`galaxy_classification.data.storage`).
``predict`` and ``classify`` with ``--part k/N`` (``--shard`` is an alias; or under a Slurm job array,
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

from galaxy_classification.errors import UsageError

ROW_COLUMN = "row"
TOTAL_COLUMN = "rows_in_run"  # every part records the whole run's row count, so a part cut short is caught
_PART = re.compile(r"\.part-(\d+)-of-(\d+)$")


def parse_part(text):
    """``"k/N"`` -> (k, N) with 0 <= k < N; UsageError naming the form otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise UsageError(f"--part must be k/N with whole numbers, 0 <= k < N (e.g. 0/4), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise UsageError(f"--part k/N needs N >= 1 and 0 <= k < N (k counts from 0), got {text!r}")
    return k, n


def part_from_environment(environment=os.environ):
    """(k, N) of a Slurm job array task, or None outside one. k counts from the
    array's first index (``SLURM_ARRAY_TASK_MIN``), so ``--array=1-8`` works too."""
    if "SLURM_ARRAY_TASK_ID" not in environment or "SLURM_ARRAY_TASK_COUNT" not in environment:
        return None
    try:
        task = int(environment["SLURM_ARRAY_TASK_ID"]) - int(environment.get("SLURM_ARRAY_TASK_MIN", "0"))
        return parse_part(f"{task}/{environment['SLURM_ARRAY_TASK_COUNT']}")
    except ValueError as error:  # UsageError is one too
        raise UsageError(f"SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT: {error}") from None


def part_rows(n_rows, part):
    """The rows (of 0..n_rows-1) part ``part`` = (k, N) processes."""
    k, n = part
    return np.array_split(np.arange(n_rows), n)[k]


def labelled_part(table, row_numbers, total):
    """A part's table with each row's place in the whole run and the run's row count."""
    return table.assign(**{ROW_COLUMN: row_numbers, TOTAL_COLUMN: int(total)})


def part_path(out, part):
    """Where part (k, N) of a run writing ``out`` writes: ``OUT.part-k-of-N`` with out's suffix."""
    out = Path(out)
    k, n = part
    return out.with_name(f"{out.stem}.part-{k}-of-{n}{out.suffix}")


def merge(out):
    """Join the ``OUT.part-k-of-N`` tables of a run split into parts into ``out``; return the table."""
    from galaxy_classification.data import storage

    storage.check_can_write(out, "OUT", directory=False)
    table = merge_parts(out)
    print(f"wrote {out}: {len(table)} rows from its parts")
    return table


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
        raise UsageError(f"no parts {out.stem}.part-k-of-N{out.suffix} beside {out}")
    if len(found) > 1:
        raise UsageError(f"parts of different splits beside {out}: of {', '.join(map(str, sorted(found)))}; "
                         "remove the stale ones")
    (n, parts), = found.items()
    missing = sorted(set(range(n)) - set(parts))
    if missing:
        raise UsageError(f"{len(missing)} of {n} parts missing for {out}: k = {', '.join(map(str, missing))}")
    pieces = [tables.read_table(parts[k]) for k in range(n)]
    _check_part_sizes(pieces, parts, n)
    merged = pd.concat(pieces, ignore_index=True)
    rows = pd.to_numeric(merged[ROW_COLUMN]).to_numpy(dtype=np.int64)
    duplicated = np.unique(rows[pd.Series(rows).duplicated().to_numpy()])
    if len(duplicated):
        raise UsageError(f"rows {', '.join(map(str, duplicated[:10]))} appear in more than one part")
    absent = np.setdiff1d(np.arange(len(rows)), rows)
    if len(absent) or rows.max(initial=-1) >= len(rows):
        raise UsageError(f"the parts do not cover rows 0..{len(rows) - 1} once each "
                         f"(missing e.g. {', '.join(map(str, absent[:10]))})")
    merged = merged.iloc[np.argsort(rows, kind="stable")].drop(columns=[ROW_COLUMN, TOTAL_COLUMN])
    merged = merged.reset_index(drop=True)
    merged = with_status_filled(merged)
    tables.write_table(merged, out)
    return merged


def _check_part_sizes(pieces, paths, n):
    """Each part holds as many rows as its slice of the run it records: a part cut short is refused."""
    import pandas as pd

    totals = set()
    for k, piece in enumerate(pieces):
        if TOTAL_COLUMN not in piece.columns or ROW_COLUMN not in piece.columns:
            raise UsageError(f"{paths[k]}: no {ROW_COLUMN} / {TOTAL_COLUMN} columns, so its rows cannot be checked; "
                             "write the parts again with this version")
        totals |= set(pd.to_numeric(piece[TOTAL_COLUMN]).astype(int))
    if len(totals) != 1:
        raise UsageError(f"the parts come from runs of different sizes ({', '.join(map(str, sorted(totals)))} rows)")
    total = totals.pop()
    for k, piece in enumerate(pieces):
        expected = len(part_rows(total, (k, n)))
        if len(piece) != expected:
            raise UsageError(f"{paths[k]}: {len(piece)} rows, but part {k} of {n} of a {total}-row run holds "
                             f"{expected}: the file was cut short or edited; write that part again")


def with_status_filled(table):
    """``table`` with empty ``status`` / ``reason`` cells made 'ok' / '':
    predict adds those columns only to pieces (inputs, parts) that had an
    unreadable image, and joining pieces leaves the others' cells empty."""
    if "status" not in table.columns:
        return table
    return table.assign(status=table["status"].fillna("ok"), reason=table["reason"].fillna(""))
