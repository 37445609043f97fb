"""Classify a catalogue of galaxies: positions in, a classified catalogue out.

``quick_cnn_trainer.py classify CATALOGUE`` runs :func:`classify_catalogue`:

1. read the catalogue (CSV with ``ra``, ``dec`` in degrees, optionally
   ``objid`` and ``petroR90_r`` / ``petroR90_g`` in arcsec) and check every
   row before anything is sent;
2. rows without a radius get it from SDSS in batched queries: by objid when
   given, otherwise the nearest primary galaxy within 2 arcsec of the position
   (``dbo.fGetNearbyObjEq``);
3. fetch each cutout at exactly the field of view the model was trained on
   (``view x petroR90`` across) through the same polite, cached, resumable
   downloader as ``sdss_query`` (a rerun fetches only what is missing);
4. classify, and write the input's columns plus objid, p_spiral,
   p_elliptical, predicted, the cutout file and scale, the data release, the
   model's name and checksum, and a status; a row that could not be classified
   says why and never vanishes.

The lookup SQL is built only from validated numbers and digit-only objids.
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import CLASS_NAMES, catalogue, config, cutouts, image_stores, skyserver, tables
from .field_of_view import FieldOfView
from .storage import DataFileError

MATCH_RADIUS_ARCSEC = 2.0
LOOKUP_BATCH = 100  # rows per lookup query: the SQL search carries its query in the URL
RADIUS_COLUMNS = ("petroR90_r", "petroR90_g")


class CatalogueError(DataFileError):
    """A catalogue row or column the classifier cannot use."""


# --------------------------------------------------------------------------- reading and checking


def read_catalogue(path):
    """The catalogue (CSV, ECSV, FITS or VOTable) as text columns (ids stay
    exact); CatalogueError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"{path}: no such catalogue file")
    try:
        return tables.read_table(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise CatalogueError(f"{path}: not a readable CSV ({str(error).strip()})") from None
    except ValueError as error:
        raise CatalogueError(str(error)) from None


def _column(table, name):
    """The table's column called ``name``, matched case-insensitively, or None."""
    for column in table.columns:
        if column.strip().lower() == name.lower():
            return column
    return None


def checked_positions(table, path):
    """``(ra, dec, objids, radii)``: every row checked, or CatalogueError naming row and column."""
    columns = {name: _column(table, name) for name in ("ra", "dec", "objid", *RADIUS_COLUMNS)}
    missing = [name for name in ("ra", "dec") if columns[name] is None]
    if missing:
        raise CatalogueError(f"{path}: no {' and no '.join(missing)} column; a catalogue needs ra and dec in degrees "
                             f"(found {', '.join(table.columns) or 'no columns'})")
    if len(table) == 0:
        raise CatalogueError(f"{path}: the catalogue has no rows")
    ra = _numbers(table, columns["ra"], path, 0.0, 360.0)
    dec = _numbers(table, columns["dec"], path, -90.0, 90.0)
    objids = [""] * len(table)
    if columns["objid"] is not None:
        objids = [text.strip() for text in table[columns["objid"]]]
        for row, objid in enumerate(objids):
            if objid and not objid.isdigit():
                raise CatalogueError(f"{path}: row {row + 2}, column {columns['objid']}: objid {objid!r} is not an "
                                     "SDSS objid (digits only)")
    radii = {}
    for name in RADIUS_COLUMNS:
        if columns[name] is not None:
            values = pd.to_numeric(table[columns[name]].str.strip(), errors="coerce").to_numpy(dtype=float)
            radii[name] = np.where(values > 0, values, np.nan)
    return ra, dec, objids, radii


def _numbers(table, column, path, lowest, highest):
    values = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~((values >= lowest) & (values <= highest)))
    if len(bad):
        row = int(bad[0])
        raise CatalogueError(f"{path}: row {row + 2}, column {column}: {table[column][row]!r} is not a number "
                             f"in [{lowest:g}, {highest:g}] degrees ({len(bad)} such rows)")
    return values


# --------------------------------------------------------------------------- SQL


def objid_lookup_sql(objids):
    """Radii and positions of the galaxies with these objids (digits only)."""
    if not all(objid.isdigit() for objid in objids):
        raise ValueError("objids must be digits only")
    return ("SELECT g.objID AS objid, g.ra, g.dec, g.petroR90_r, g.petroR90_g FROM Galaxy AS g "
            f"WHERE g.objID IN ({', '.join(objids)})")


def position_lookup_sql(rows, radius_arcsec=MATCH_RADIUS_ARCSEC):
    """The primary galaxies within ``radius_arcsec`` of each ``(row, ra, dec)``,
    with their distance in arcmin (the nearest per row is kept)."""
    values = ", ".join(f"({int(row)}, {float(ra)!r}, {float(dec)!r})" for row, ra, dec in rows)
    return ("SELECT t.row_id, g.objID AS objid, g.ra, g.dec, g.petroR90_r, g.petroR90_g, n.distance "
            f"FROM (VALUES {values}) AS t(row_id, ra, dec) "
            f"CROSS APPLY dbo.fGetNearbyObjEq(t.ra, t.dec, {radius_arcsec / 60.0!r}) AS n "
            "JOIN Galaxy AS g ON g.objID = n.objID")


class Lookup:
    """Runs lookup queries through CasJobs (with a token) or the SQL search."""

    def __init__(self, session, data_release, token=None):
        self.session, self.data_release, self.token = session, data_release, token
        self.limiter = skyserver.sql_rate_limiter()
        self.queries = 0

    def rows(self, sql):
        sql = catalogue.one_line_sql(sql)
        catalogue.check_sql_search_filter(sql, "lookup query")
        self.queries += 1
        if self.token is not None:
            columns, rows = skyserver.run_casjobs_query(self.session, sql, self.data_release, self.token, self.limiter)
        else:
            columns, rows = skyserver.run_sql_search(self.session, sql, self.data_release, self.limiter)
        return catalogue.rows_to_frame(columns, rows)


def look_up_by_objid(lookup, objids):
    """{objid: (ra, dec, petroR90_r, petroR90_g)} of those found among SDSS galaxies."""
    found = {}
    unique = sorted(set(objids))
    for start in range(0, len(unique), LOOKUP_BATCH):
        frame = lookup.rows(objid_lookup_sql(unique[start:start + LOOKUP_BATCH]))
        for row in frame.itertuples(index=False):
            found[str(row.objid)] = row
    return found


def look_up_by_position(lookup, rows):
    """{row: the nearest galaxy within 2 arcsec} for ``(row, ra, dec)`` triples."""
    nearest = {}
    for start in range(0, len(rows), LOOKUP_BATCH):
        frame = lookup.rows(position_lookup_sql(rows[start:start + LOOKUP_BATCH]))
        if frame.empty:
            continue
        frame["distance"] = pd.to_numeric(frame["distance"])
        frame["row_id"] = pd.to_numeric(frame["row_id"]).astype(int)
        for row_id, group in frame.groupby("row_id"):
            nearest[int(row_id)] = group.sort_values("distance").iloc[0]
    return nearest


# --------------------------------------------------------------------------- the whole job


def classify_catalogue(path, classifier, out, *, login=False, data_release="DR15", workers=8, progress=True,
                       min_confidence=None, shard=None, table=None):
    """Classify the galaxies of the catalogue at ``path`` with ``classifier``
    (a :class:`model_files.Classifier`); write ``out`` (CSV) and return the table.

    ``shard`` (k, N) classifies only the k-th of N disjoint parts of the rows
    into ``OUT.part-k-of-N`` (:mod:`parts`); the cutout cache is shared.
    ``table`` is the catalogue when the caller has read it already.
    Raises CatalogueError (a ValueError) for bad input before any request,
    :class:`skyserver.SDSSQueryError` when SDSS fails as a whole.
    """
    from . import model_files, parts

    started = time.perf_counter()
    path, out = Path(path), Path(out)
    if classifier.view_petro_radii is None:
        raise CatalogueError(f"{classifier.name} does not record the field of view it was trained on, so its "
                             "cutouts cannot be cut to match; retrain it with this version")
    table = read_catalogue(path) if table is None else table
    ra, dec, objids, radii = checked_positions(table, path)  # every row, before anything is sent
    row_numbers = parts.part_rows(len(table), shard) if shard is not None else np.arange(len(table))
    if shard is not None:
        table = table.iloc[row_numbers].reset_index(drop=True)
        ra, dec = ra[row_numbers], dec[row_numbers]
        objids = [objids[row] for row in row_numbers]
        radii = {name: values[row_numbers] for name, values in radii.items()}
    config.check_all()
    band = classifier.band or "r"
    radius_column = f"petroR90_{band}"
    preferred = [radius_column] + [name for name in RADIUS_COLUMNS if name != radius_column]
    size = max(64, 2 * classifier.image_size)  # the model's own resize then antialiases, as in training
    scale_factor = classifier.view_petro_radii / size

    rows = pd.DataFrame({"objid": objids, "ra": ra, "dec": dec, "radius": np.nan, "radius_band": "",
                         "status": "ok", "reason": ""})
    for name in reversed(preferred):
        if name in radii:
            given = ~np.isnan(radii[name])
            rows.loc[given, "radius"] = radii[name][given]
            rows.loc[given, "radius_band"] = name
    lookups = _look_up_missing_radii(rows, radius_column, login, data_release)

    cache_dir = out.parent / f"{out.stem}_cutouts"
    wanted = rows[rows["status"] == "ok"].copy()
    wanted["objid"] = [objid or _position_name(r, d) for objid, r, d in zip(wanted["objid"], wanted["ra"], wanted["dec"])]
    report = cutouts.CutoutReport()
    if len(wanted):
        report = cutouts.download_cutouts(wanted, cache_dir, data_release=data_release,
                                          image_scale_factor=scale_factor, image_size=size, workers=workers,
                                          radius_column="radius")
    for objid, (reason, _) in report.failures.items():
        failed = wanted.index[wanted["objid"] == objid]
        rows.loc[failed, ["status", "reason"]] = ["failed", reason]
    fetched = wanted[~wanted["objid"].isin(list(report.failures))]
    files = [cutouts.cutout_path(cache_dir, objid) for objid in fetched["objid"]]

    probabilities = np.full((len(rows), 2), np.nan)
    if files:
        frame_field = FieldOfView(classifier.view_petro_radii, size, band, scale_factor, data_release)
        crop = frame_field.crop_for(classifier.view_petro_radii)
        probabilities[fetched.index] = model_files.predict_probabilities(
            classifier, image_stores.ImageFiles(files), crop, progress=progress)

    result = table.copy()
    result["objid"] = rows["objid"]
    result["p_spiral"], result["p_elliptical"] = probabilities[:, 0], probabilities[:, 1]
    result["predicted"] = predicted_classes(probabilities, min_confidence)
    result["cutout_file"] = ""
    result.loc[fetched.index, "cutout_file"] = [str(file) for file in files]
    result["cutout_scale"] = rows["radius"] * scale_factor
    result["radius_used"] = rows["radius_band"]
    result["data_release"] = data_release
    result["model"] = classifier.name
    result["model_sha256"] = classifier.sha256
    result["status"], result["reason"] = rows["status"], rows["reason"]
    result = tables.with_explore_links(result, data_release)
    if shard is not None:
        result[parts.ROW_COLUMN] = row_numbers
        out = parts.part_path(out, shard)
    tables.write_table(result, out, meta={"model": classifier.name, "model_sha256": classifier.sha256,
                                          "data_release": data_release,
                                          "field_of_view_petro_radii": classifier.view_petro_radii})
    _print_summary(result, out, lookups, report, time.perf_counter() - started, table)
    return result


def predicted_classes(probabilities, min_confidence=None):
    """'spiral' / 'elliptical' by the larger probability ('' where unknown);
    'uncertain' where it is below ``min_confidence``."""
    labels = np.where(probabilities[:, 1] >= 0.5, CLASS_NAMES[1], CLASS_NAMES[0]).astype(object)
    if min_confidence is not None:
        labels[np.max(probabilities, axis=1) < min_confidence] = "uncertain"
    labels[np.isnan(probabilities[:, 0])] = ""
    return labels


def _position_name(ra, dec):
    return f"ra{ra:.6f}_dec{dec:+.6f}"


def _look_up_missing_radii(rows, radius_column, login, data_release):
    """Fill ``radius`` (and objid) of the rows without one from SDSS; mark the
    rows SDSS does not know. Returns the number of lookup queries sent."""
    need = rows["radius"].isna()
    if not need.any():
        return 0
    by_objid = rows.index[need & (rows["objid"] != "")]
    by_position = rows.index[need & (rows["objid"] == "")]
    with skyserver.make_session() as session:
        token = skyserver.login() if login else None
        lookup = Lookup(session, data_release, token)
        found = look_up_by_objid(lookup, list(rows.loc[by_objid, "objid"])) if len(by_objid) else {}
        nearest = look_up_by_position(
            lookup, [(row, rows.at[row, "ra"], rows.at[row, "dec"]) for row in by_position]) if len(by_position) else {}
    for row in by_objid:
        galaxy = found.get(rows.at[row, "objid"])
        if galaxy is None:
            rows.loc[row, ["status", "reason"]] = ["failed", f"objid not found among the galaxies of {data_release}"]
        else:
            _take_radius(rows, row, galaxy, radius_column)
    for row in by_position:
        galaxy = nearest.get(row)
        if galaxy is None:
            rows.loc[row, ["status", "reason"]] = [
                "failed", f"no SDSS galaxy within {MATCH_RADIUS_ARCSEC:g} arcsec of this position in {data_release}"]
        else:
            rows.at[row, "objid"] = str(galaxy["objid"])
            _take_radius(rows, row, galaxy, radius_column)
    return lookup.queries


def _take_radius(rows, row, galaxy, radius_column):
    get = galaxy.get if hasattr(galaxy, "get") else lambda name: getattr(galaxy, name, None)
    for name in (radius_column, *RADIUS_COLUMNS):
        value = get(name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)) and float(value) > 0:
            rows.loc[row, ["radius", "radius_band"]] = [float(value), name]
            return
    rows.loc[row, ["status", "reason"]] = ["failed", "SDSS has no Petrosian radius for this galaxy"]


def _print_summary(result, out, lookups, report, seconds, table):
    classified = int((result["status"] == "ok").sum())
    text = (f"wrote {out}: {len(result)} galaxies, {classified} classified, {len(result) - classified} not "
            f"(see the reason column); {lookups} lookup queries, {report.summary()}; {seconds:.1f} s")
    print(text)
    label_column = _column(table, "label")
    if label_column is not None:
        labels = pd.to_numeric(table[label_column].str.strip(), errors="coerce")
        known = (result["status"] == "ok") & labels.isin((0, 1)) & result["predicted"].isin(CLASS_NAMES)
        if known.any():
            correct = (result.loc[known, "predicted"] == labels[known].map(dict(enumerate(CLASS_NAMES)))).sum()
            print(f"accuracy where the catalogue has a label: {correct / known.sum():.1%} "
                  f"({int(correct)} of {int(known.sum())})", file=sys.stdout)
