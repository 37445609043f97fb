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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification import CLASS_NAMES, tables
from galaxy_classification.data import image_stores, storage
from galaxy_classification.data.field_of_view import FieldOfView
from galaxy_classification.errors import CatalogueError
from galaxy_classification.inference import parts
from galaxy_classification.inference.results import results_table, write_results
from galaxy_classification.sdss import config, cutouts, lookup, skyserver

RADIUS_COLUMNS = ("petroR90_r", "petroR90_g")


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
            if objid and not lookup.is_objid(objid):
                raise CatalogueError(f"{path}: row {row + 2}, column {columns['objid']}: objid {objid!r} is not an "
                                     "SDSS objid (ASCII digits 0-9, at most 20 of them, below 2^64)")
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


# --------------------------------------------------------------------------- the whole job


def classify(catalogue_path, model=None, out="classified.csv", login: bool = True, data_release: str = "DR15",
             workers: int = 8, progress: bool = True, min_confidence: float = None, part: tuple = None,
             gallery: bool = False):
    """Classify the galaxies of a catalogue; write and return the classified table.

    Parameters
    ----------
    catalogue_path : str or Path
        CSV, ECSV, FITS or VOTable with ``ra`` and ``dec`` in degrees; optional ``objid``,
        ``petroR90_r`` / ``petroR90_g`` (arcsec) and ``label``.
    model : str or Path, optional
        A ``.keras`` or ``.h5`` model (default: the shipped one).
    out : str or Path
        The classified table (.csv, .ecsv, .fits or .vot); cutouts are cached in ``OUT_cutouts/``.
    login : bool
        Look radii up through CasJobs with a SciServer login (False: the SQL search, no account).
    data_release : str
        The SDSS release to look up and cut from.
    workers : int
        Concurrent cutout downloads.
    progress : bool
        Show progress bars.
    min_confidence : float, optional
        Call a galaxy ``uncertain`` when its larger probability is below this.
    part : (int, int), optional
        (k, N): classify only the k-th of N slices of the rows, into ``OUT.part-k-of-N``.
    gallery : bool
        Also write ``OUT.html``, a page of every galaxy as the model saw it.

    Returns
    -------
    pandas.DataFrame
        The catalogue's columns, objid, the probabilities and class, the cutout, status and reason.
    """
    from galaxy_classification.sdss import parameters

    release = parameters.data_release_name(data_release)
    config.check_release(release, [config.CASJOBS if login else config.SKYSERVER_WS, config.SKYSERVER_WS])
    workers = parameters.positive_integer("workers", workers)
    tables.table_format(out)
    storage.check_can_write(out, "--out", directory=False)
    table = read_catalogue(catalogue_path)  # bad input fails before the model loads
    checked_positions(table, catalogue_path)
    from galaxy_classification.model import files as model_files  # Keras starts only once the input is good

    classifier = model_files.load_classifier(model)
    return classify_catalogue(catalogue_path, classifier, out, login=login, data_release=release, workers=workers,
                              progress=progress, min_confidence=min_confidence, part=part, table=table,
                              gallery=gallery)


def classify_catalogue(path, classifier, out, *, login=False, data_release="DR15", workers=8, progress=True,
                       min_confidence=None, part=None, table=None, gallery=False):
    """Classify the galaxies of the catalogue at ``path`` with ``classifier``
    (a :class:`~galaxy_classification.model.files.Classifier`); write ``out`` and return the table.

    ``part`` (k, N) classifies only the k-th of N disjoint slices of the rows
    into ``OUT.part-k-of-N`` (:mod:`parts`); the cutout cache is shared.
    ``table`` is the catalogue when the caller has read it already.
    Raises CatalogueError for bad input before any request, SDSSQueryError
    when SDSS fails as a whole.
    """
    started = time.perf_counter()
    path, out = Path(path), Path(out)
    if classifier.view_petro_radii is None:
        raise CatalogueError(f"{classifier.name} does not record the field of view it was trained on, so its "
                             "cutouts cannot be cut to match; retrain it with this version")
    table = read_catalogue(path) if table is None else table
    ra, dec, objids, radii = checked_positions(table, path)  # every row, before anything is sent
    total = len(table)
    row_numbers = parts.part_rows(total, part) if part is not None else np.arange(total)
    if part is not None:
        table = table.iloc[row_numbers].reset_index(drop=True)
        ra, dec = ra[row_numbers], dec[row_numbers]
        objids = [objids[row] for row in row_numbers]
        radii = {name: values[row_numbers] for name, values in radii.items()}
    config.check_all()
    rows = _rows_to_classify(objids, ra, dec, radii, f"petroR90_{classifier.band or 'r'}")
    lookups = _look_up_missing_radii(rows, f"petroR90_{classifier.band or 'r'}", login, data_release)
    frames = _fetch_cutouts(rows, classifier, out.parent / f"{out.stem}_cutouts", data_release, workers)
    probabilities = np.full((len(rows), 2), np.nan)
    crops = classifier.crop_policy().crops(frames, what=str(path)) if frames.files else np.ones(0)
    if frames.files:
        from galaxy_classification.model import files as model_files

        probabilities[frames.rows] = model_files.predict_probabilities(
            classifier, image_stores.ImageFiles(frames.files), crops, progress=progress)
    cutout_files = np.full(len(rows), "", dtype=object)
    cutout_files[frames.rows] = [str(file) for file in frames.files]
    result = results_table(
        table.assign(objid=rows["objid"]), probabilities, min_confidence=min_confidence,
        after={"cutout_file": cutout_files, "cutout_scale": rows["radius"] * frames.scale_factor,
               "radius_used": rows["radius_band"], "data_release": data_release, "model": classifier.name,
               "model_sha256": classifier.sha256},
        status=rows["status"], reason=rows["reason"], data_release=data_release)
    if part is not None:
        result = parts.labelled_part(result, row_numbers, total)
        out = parts.part_path(out, part)
    write_results(result, out, classifier, data_release=data_release,
                  field_of_view_petro_radii=classifier.view_petro_radii)
    if gallery:
        _write_gallery(result, frames, crops, classifier, out)
    _print_summary(result, out, lookups, frames.report, time.perf_counter() - started, table)
    return result


def _write_gallery(result, frames, crops, classifier, out):
    """``OUT.html`` and ``OUT_thumbnails/``: each fetched cutout as the model saw it."""
    import shutil

    from galaxy_classification.inference import gallery as gallery_module

    page, folder = gallery_module.gallery_paths(out)
    temporary = gallery_module.staging_folder(folder)
    try:
        fetched = gallery_module.write_thumbnails(image_stores.ImageFiles(frames.files), crops,
                                                  classifier.image_size, temporary)
        gallery_module.replace_folder(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    names = np.full(len(result), "", dtype=object)
    names[frames.rows] = fetched
    gallery_module.write_gallery(result, list(names), page, f"{len(result)} catalogue galaxies classified by "
                                 f"{classifier.name}")
    print(f"wrote {page} (open it in a browser; thumbnails in {folder.name}/)")


def _rows_to_classify(objids, ra, dec, radii, radius_column):
    """The working table: objid, position, the radius given for each row (preferring ``radius_column``), status."""
    rows = pd.DataFrame({"objid": objids, "ra": ra, "dec": dec, "radius": np.nan, "radius_band": "",
                         "status": "ok", "reason": ""})
    preferred = [radius_column] + [name for name in RADIUS_COLUMNS if name != radius_column]
    for name in reversed(preferred):
        if name in radii:
            given = ~np.isnan(radii[name])
            rows.loc[given, "radius"] = radii[name][given]
            rows.loc[given, "radius_band"] = name
    return rows


@dataclass
class FetchedFrames:
    """The cutouts fetched for a catalogue: their files, the rows they belong to, and the frames' field."""

    files: list
    rows: np.ndarray
    field: FieldOfView
    scale_factor: float
    report: object
    row_fields: np.ndarray = None

    def __len__(self):
        return len(self.files)


def _fetch_cutouts(rows, classifier, cache_dir, data_release, workers):
    """Cut every row that is still 'ok' at exactly the model's view; failed rows get their reason."""
    size = max(64, 2 * classifier.image_size)  # the model's own resize then antialiases, as in training
    scale_factor = classifier.view_petro_radii / size
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
    field = FieldOfView(classifier.view_petro_radii, size, classifier.band or "r", scale_factor, data_release)
    return FetchedFrames([cutouts.cutout_path(cache_dir, objid) for objid in fetched["objid"]],
                         fetched.index.to_numpy(), field, scale_factor, report)


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
        finder = lookup.Lookup(session, data_release, token)
        found = lookup.look_up_by_objid(finder, list(rows.loc[by_objid, "objid"])) if len(by_objid) else {}
        nearest = lookup.look_up_by_position(
            finder, [(row, rows.at[row, "ra"], rows.at[row, "dec"]) for row in by_position]) if len(by_position) else {}
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
                "failed",
                f"no SDSS galaxy within {lookup.MATCH_RADIUS_ARCSEC:g} arcsec of this position in {data_release}"]
        else:
            rows.at[row, "objid"] = str(galaxy["objid"])
            _take_radius(rows, row, galaxy, radius_column)
    return finder.queries


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
