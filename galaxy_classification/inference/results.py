"""The per-galaxy results table, built one way for predict, evaluate and classify.

Columns, in order: what the caller puts first (source, label, or a catalogue's
own columns), ``p_spiral``, ``p_elliptical``, ``predicted`` (spiral,
elliptical, ``uncertain`` below ``--min-confidence``, empty where the galaxy
could not be classified), the caller's own columns (crop, cutout file, ...),
``status`` / ``reason`` where some galaxies failed, and ``objid`` with its
SkyServer ``explore_url`` where the galaxies have SDSS ids. The written table
names the model and its checksum in its metadata.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import CLASS_NAMES, tables

DEFAULT_DATA_RELEASE = "DR15"
UNCERTAIN = "uncertain"


def predicted_classes(probabilities: np.ndarray, min_confidence: float = None) -> np.ndarray:
    """'spiral' / 'elliptical' by the larger probability ('' where unknown);
    'uncertain' where it is below ``min_confidence``."""
    labels = np.where(probabilities[:, 1] >= 0.5, CLASS_NAMES[1], CLASS_NAMES[0]).astype(object)
    if min_confidence is not None:
        labels[np.max(probabilities, axis=1) < min_confidence] = UNCERTAIN
    labels[np.isnan(probabilities[:, 0])] = ""
    return labels


def results_table(front: pd.DataFrame, probabilities: np.ndarray, *, min_confidence: float = None,
                  after: dict = None, status=None, reason=None, objids=None,
                  data_release: str = None) -> pd.DataFrame:
    """One row per galaxy: ``front``'s columns, the probabilities and class, ``after``'s columns.

    Parameters
    ----------
    front : pandas.DataFrame
        The columns that identify each galaxy, one row per row of ``probabilities``.
    probabilities : numpy.ndarray
        (n, 2) p_spiral, p_elliptical; NaN for a galaxy that was not classified.
    min_confidence : float, optional
        Below this larger probability a galaxy is called ``uncertain``.
    after : dict, optional
        Further columns by name, placed after the class.
    status, reason : sequence of str, optional
        Each galaxy's ``ok`` / ``failed`` and why.
    objids : sequence of str, optional
        SDSS objids (kept in place when ``front`` has an objid column already).
    data_release : str, optional
        With an objid column, adds each galaxy's SkyServer explore link in that release.

    Returns
    -------
    pandas.DataFrame
    """
    table = front.reset_index(drop=True).copy()
    table["p_spiral"], table["p_elliptical"] = probabilities[:, 0], probabilities[:, 1]
    table["predicted"] = predicted_classes(probabilities, min_confidence)
    for name, values in (after or {}).items():
        table[name] = values
    if status is not None:
        table["status"], table["reason"] = list(status), list(reason)
    if objids is not None:
        table["objid"] = list(objids)
    if data_release is not None and "objid" in table.columns:
        table = tables.with_explore_links(table, data_release)
    return table


def write_results(table: pd.DataFrame, path, classifier, **meta) -> Path:
    """Write ``table`` (.csv, .ecsv, .fits or .vot) naming ``classifier`` and its checksum."""
    tables.write_table(table, path, meta={"model": classifier.name, "model_sha256": classifier.sha256, **meta})
    return Path(path)


def catalogue_objids(galaxies):
    """Each galaxy's objid as text, or None when its data has no catalogue with objids."""
    catalogue = galaxies.catalogue
    if catalogue is None or "objid" not in catalogue.columns or len(catalogue) != len(galaxies):
        return None
    return [str(objid) for objid in catalogue["objid"]]


def data_release_of(galaxies) -> str:
    """The release the galaxies' frames came from, for their explore links."""
    release = galaxies.field.data_release if galaxies.field else None
    return release if release and release.upper().startswith("DR") else DEFAULT_DATA_RELEASE
