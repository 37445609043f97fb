"""Labels corrected by eye (an evaluate gallery's ``label_corrections.csv``), applied to a data set.

The file has one row per galaxy looked at: ``file`` (the galaxy's source as the data names it: an
image path, or ``objid N`` of a sdss_query directory), ``objid``, ``old_label`` and ``new_label``
(``spiral``, ``elliptical``, 0 or 1, or ``leave out``). A row is matched by objid when it and the
data have one, otherwise by file; a row whose old label is not the data's label any more (the file
was made for other data, or applied already) is skipped and counted.
"""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import CLASS_NAMES
from galaxy_classification.data import datasets
from galaxy_classification.errors import DataFileError, note

COLUMNS = ("file", "objid", "old_label", "new_label")
LEAVE_OUT = "leave out"


def _label_number(text, path, line):
    text = str(text).strip().lower()
    if text in CLASS_NAMES:
        return CLASS_NAMES.index(text)
    if text in ("0", "1"):
        return int(text)
    if text in (LEAVE_OUT, "leave_out", "leave-out"):
        return None
    raise DataFileError(f"{path}: line {line}: label {text!r} is not spiral, elliptical, 0, 1 or '{LEAVE_OUT}'")


def read_corrections(path):
    """The corrections of ``path`` as a table with ``old`` and ``new`` label numbers (``new`` None: leave out)."""
    table = datasets.read_csv_table(path, COLUMNS, "--label-corrections")
    # object columns: a 'leave out' (None) must not become NaN in a column of numbers
    table["old"] = pd.Series([_label_number(text, path, line + 2) for line, text in enumerate(table["old_label"])],
                             dtype=object)
    table["new"] = pd.Series([_label_number(text, path, line + 2) for line, text in enumerate(table["new_label"])],
                             dtype=object)
    return table


def apply_corrections(galaxies, path):
    """``(galaxies with corrected labels, the rows to keep, a record for metrics.json)``."""
    corrections = read_corrections(path)
    labels = np.array(galaxies.labels, copy=True)
    keep = np.ones(len(labels), dtype=bool)
    by_source = {str(source): row for row, source in enumerate(galaxies.sources)}
    by_objid = {}
    if galaxies.catalogue is not None and "objid" in galaxies.catalogue.columns:
        by_objid = {str(objid): row for row, objid in enumerate(galaxies.catalogue["objid"])}
    changed = left_out = unmatched = stale = 0
    for correction in corrections.itertuples(index=False):
        row = by_objid.get(correction.objid.strip()) if correction.objid.strip() else None
        row = by_source.get(correction.file) if row is None else row
        if row is None:
            unmatched += 1
        elif labels[row] != correction.old:
            stale += 1
        elif correction.new is None:
            keep[row], left_out = False, left_out + 1
        elif correction.new != labels[row]:
            labels[row], changed = correction.new, changed + 1
    if unmatched or stale:
        note(f"--label-corrections {path}: {unmatched} row(s) name no galaxy of this data set, {stale} give an old "
             "label that is not the data's (made for other data, or applied already); those were skipped")
    print(f"label corrections {path}: {changed} label(s) changed, {left_out} galaxy(ies) left out")
    record = {"file": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), "changed": changed,
              "left_out": left_out, "unmatched": unmatched, "stale": stale}
    return dataclasses.replace(galaxies, labels=labels), np.flatnonzero(keep), record
