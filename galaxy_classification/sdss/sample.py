"""Fetch a galaxy sample from the real SDSS into the three data files.

:func:`create_sdss_datafiles` is what ``sdss_query.create_datafiles`` runs for
``source='sdss'``:

1. build the catalogue SQL: one query per class, from validated numbers and
   the label rule's tests (or the user's own ``sql=``, checked the same way);
2. ``login=True``: log in to SciServer once and run the queries through
   CasJobs in the data release's context; ``login=False``: the SkyServer SQL
   search, no account;
3. label the galaxies (a :class:`label_rules.LabelRule`);
4. download the cutouts into ``out_dir/cutouts/`` (cached, resumable), each at
   ``image_scale_factor * petroR90_g`` arcsec/pixel, recorded per galaxy in
   the ``cutout_scale`` column;
5. leave out galaxies whose cutout failed (or would need a scale below the
   service's minimum), listing them with the reason in
   ``out_dir/failed_cutouts.csv``;
6. write galaxy_data.csv, galaxy_images.npy, galaxy_labels.npy atomically, row
   i of each describing the same galaxy.

``dry_run=True`` prints the SQL and the URLs and sends nothing.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from galaxy_classification import CLASS_NAMES, tables
from galaxy_classification.data import storage
from galaxy_classification.data.field_of_view import FieldOfView
from galaxy_classification.errors import SDSSQueryError, UsageError
from galaxy_classification.sdss import catalogue, config, cutouts, skyserver
from galaxy_classification.sdss.label_rules import LIKELIHOOD

MIN_CUTOUT_SIZE, MAX_CUTOUT_SIZE = 64, 2048  # the image service clamps width/height to this range
FAILED_CUTOUTS_FILE = "failed_cutouts.csv"


def create_sdss_datafiles(sample, out_dir, *, sql_template, custom_sql=False, login=True,
                          label_rule=LIKELIHOOD, workers=8, seed=None, dry_run=False, shard_size=None):
    """Query SDSS for ``sample`` and write the three data files into ``out_dir``.

    ``sample`` is a validated :class:`parameters.SampleParameters`,
    ``label_rule`` a :class:`label_rules.LabelRule`. With
    ``custom_sql`` the query decides the sample; rows its label rule cannot
    label (or of the other class when ``galaxy_type`` is not 'both') are left
    out. Rows are shuffled with ``seed`` so the classes interleave. Returns
    ``out_dir`` as a Path. Raises ValueError before any request for bad input,
    :class:`SDSSQueryError` when a service fails.
    """
    out_dir = Path(out_dir)
    _check_arguments(sample, login)
    if custom_sql:
        queries = catalogue.custom_query(sql_template)
    else:
        queries = catalogue.class_queries(sample, sql_template, label_rule)
    if sample.image_data:  # a cache of another scale is refused before anything is sent
        cutouts.check_cache_settings(out_dir / "cutouts", cutouts.cache_settings(
            sample.data_release, sample.image_scale_factor, sample.image_size))
    if dry_run:
        print_dry_run(sample, queries, login, out_dir)
        return out_dir
    galaxies = fetch_catalogue(sample, queries, login, label_rule, seed)
    images = None
    if sample.image_data:
        galaxies = keep_galaxies_with_cutouts(galaxies, sample, out_dir, workers)
        images = cached_images(galaxies["objid"], out_dir / "cutouts", sample.image_size)
    labels = galaxies.pop("label").to_numpy(dtype=np.int64)
    galaxies = tables.with_explore_links(galaxies, sample.data_release)
    field = FieldOfView.from_cutouts(sample.image_scale_factor, sample.image_size, "g", sample.data_release,
                                     galaxies["petroR90_g"])
    storage.write_sharded_datafiles(
        out_dir, galaxies, labels, images=images, image_shape=(sample.image_size, sample.image_size, 3),
        progress=lambda items: tqdm(items, total=len(labels), desc="writing galaxy_images.npy", unit="img"),
        field=field, shard_size=shard_size,
    )
    print(f"{len(labels)} galaxies: {int((labels == 0).sum())} spirals, {int((labels == 1).sum())} ellipticals")
    return out_dir


def _check_arguments(sample, login):
    """What only the SDSS route needs; labels and workers were checked by
    sdss_query.create_datafiles with the other parameters."""
    if not isinstance(login, bool):
        raise UsageError(f"login must be True or False, got {login!r}")
    if sample.image_data and not MIN_CUTOUT_SIZE <= sample.image_size <= MAX_CUTOUT_SIZE:
        raise UsageError(f"image_size must be between {MIN_CUTOUT_SIZE} and {MAX_CUTOUT_SIZE} pixels for SDSS "
                         f"cutouts (the image service clamps to that range), got {sample.image_size}")
    routes = [config.CASJOBS if login else config.SKYSERVER_WS] + ([config.SKYSERVER_WS] if sample.image_data else [])
    config.check_release(sample.data_release, routes)
    config.check_all()  # environment settings fail now, not half-way through a download


def print_dry_run(sample, queries, login, out_dir):
    print("dry run: nothing is sent")
    if login:
        print(f"login: POST {config.login_url()}/keystone/v3/tokens, once "
              "(no login request when SCISERVER_TOKEN is set)")
    for number, query in enumerate(queries, 1):
        print(f"\nquery {number} of {len(queries)} ({query.description}):\n{query.sql}")
        if login:
            print(f"-> POST {config.casjobs_url()}/contexts/{sample.data_release}/query "
                  '(JSON body {"Query": <the SQL above>})')
        else:
            prepared = skyserver.build_sql_search_request(query.sql, sample.data_release).prepare()
            print(f"-> GET {prepared.url}")
    if sample.image_data:
        size = sample.image_size
        print(f"\ncutouts: GET {config.skyserver_url()}/{sample.data_release}/SkyServerWS/ImgCutout/getjpeg"
              f"?ra=<ra>&dec=<dec>&scale=<{sample.image_scale_factor:g} x petroR90_g>"
              f"&width={size}&height={size}&opt=")
        print(f"saved as {out_dir / 'cutouts'}/<objid>.jpg")


# --- catalogue -------------------------------------------------------------------


def fetch_catalogue(sample, queries, login, label_rule, seed):
    """Run the queries; one labelled DataFrame with a 'label' column."""
    limiter = skyserver.sql_rate_limiter()
    with skyserver.make_session() as session:
        token = skyserver.login() if login else None
        frames = []
        for query in queries:
            if token is not None:
                columns, rows = skyserver.run_casjobs_query(session, query.sql, sample.data_release, token, limiter)
            else:
                columns, rows = skyserver.run_sql_search(session, query.sql, sample.data_release, limiter)
            frames.append(_labelled(catalogue.rows_to_frame(columns, rows), query, label_rule, sample))
    galaxies = pd.concat(frames, ignore_index=True)
    duplicated = galaxies["objid"].duplicated()
    if duplicated.any():
        print(f"{int(duplicated.sum())} galaxies appeared twice in the results; kept once")
        galaxies = galaxies[~duplicated]
    return galaxies.sample(frac=1, random_state=seed).reset_index(drop=True)


def _labelled(frame, query, label_rule, sample):
    if frame.empty:
        raise SDSSQueryError(_empty_result_message(sample, query))
    missing = catalogue.missing_columns(frame, label_rule)
    if missing:
        raise UsageError(
            f"the catalogue query must return the columns {', '.join(missing)} "
            f"(needed: {', '.join(catalogue.REQUIRED_COLUMNS)} and for labels={label_rule.name!r} "
            f"{', '.join(label_rule.columns)}); it returned {', '.join(frame.columns)}"
        )
    usable = frame[list(catalogue.REQUIRED_COLUMNS)].notna().all(axis=1) & (frame["objid"] != "")
    if query.label is None:
        labels = label_rule.labels(frame)
        wanted = {"both": (0, 1), "spiral": (0,), "elliptical": (1,)}[sample.galaxy_type]
        usable &= np.isin(labels, wanted)
    else:
        # the server applied the class test at full precision: trust it
        labels = np.full(len(frame), query.label, dtype=np.int64)
    if not usable.all():
        print(f"{int((~usable).sum())} rows of {query.description} left out (missing values or no usable label)")
    frame = frame.assign(galaxy_type=[CLASS_NAMES[label] if label >= 0 else "" for label in labels], label=labels)
    frame = frame[usable]
    if frame.empty:
        raise SDSSQueryError(_empty_result_message(sample, query))
    if query.label is not None and len(frame) < query.n_galaxies:
        print(f"only {len(frame)} {CLASS_NAMES[query.label]}s match (asked for {query.n_galaxies}); "
              "widen the redshift or flux limits for more")
    return frame


def _empty_result_message(sample, query):
    if query.label is None:
        return "your sql= query returned no usable galaxies; try wider limits in it"
    return (f"no galaxies found for {query.description} with redshift {sample.lower_z_limit:g}-"
            f"{sample.upper_z_limit:g} and petroFlux_g {sample.lower_flux_limit:g}-{sample.upper_flux_limit:g} "
            f"in {sample.data_release}; try wider limits")


# --- cutouts ---------------------------------------------------------------------


def keep_galaxies_with_cutouts(galaxies, sample, out_dir, workers):
    """Download the cutouts; drop the galaxies without one and list them in
    failed_cutouts.csv (rewritten every run, so it describes this run)."""
    report = cutouts.download_cutouts(
        galaxies, out_dir / "cutouts", data_release=sample.data_release,
        image_scale_factor=sample.image_scale_factor, image_size=sample.image_size, workers=workers,
    )
    galaxies = galaxies.assign(cutout_scale=[cutouts.cutout_scale(radius, sample.image_scale_factor)
                                             for radius in galaxies["petroR90_g"]])
    failed = galaxies["objid"].isin(list(report.failures))
    failed_table = galaxies.loc[failed, ["objid", "ra", "dec", "petroR90_g", "cutout_scale"]].copy()
    failed_table["reason"] = [report.failures[objid][0] for objid in failed_table["objid"]]
    failed_table["permanent"] = [report.failures[objid][1] for objid in failed_table["objid"]]
    storage.write_csv_atomic(failed_table, out_dir / FAILED_CUTOUTS_FILE)
    if failed.any():
        print(f"{int(failed.sum())} galaxies without a cutout are left out; see {out_dir / FAILED_CUTOUTS_FILE} "
              "(a rerun retries them)")
    kept = galaxies[~failed].reset_index(drop=True)
    if kept.empty:
        raise SDSSQueryError(f"no cutout could be downloaded; reasons in {out_dir / FAILED_CUTOUTS_FILE}")
    return kept


def cached_images(objids, cache_dir, image_size):
    """Decode the cached cutouts one at a time, in catalogue order."""
    for objid in objids:
        yield skyserver.decode_cutout(cutouts.cutout_path(cache_dir, objid).read_bytes(), image_size)
