"""Fetch a sample of spiral and elliptical galaxies into plain files.

Writes, into ``out_dir`` (default ``data/``), row for row aligned:

    galaxy_data.csv     the catalogue (objid, ra, dec, petroR90_g, petroFlux_g,
                        specObjID, lnLDeV_g, lnLExp_g, z, galaxy_type, ...)
    galaxy_images.npy   (n, 512, 512, 3) uint8 gri colour cutouts
    galaxy_labels.npy   (n,) labels, 0 = spiral, 1 = elliptical

From the real SDSS (needs the network; a SciServer account unless --no-login):

    python -c "import sdss_query; sdss_query.create_datafiles()"
    python sdss_query.py --n-galaxies 500 --no-login

From the offline synthetic sky (no network, no account):

    python sdss_query.py --synthetic --n-galaxies 400

Custom samples: edit ``SQL_Query`` below (or pass ``sql=``); its ``{...}``
fields are filled with the validated numeric parameters, never with user text.
Run ``python sdss_query.py --help`` for every option.
"""

import sys
from pathlib import Path

from galaxy_classification import cli
from galaxy_classification.data import storage
from galaxy_classification.errors import UsageError
from galaxy_classification.sdss import parameters
from galaxy_classification.sdss.label_rules import LABEL_RULES, label_rule

# The catalogue query, sent once per class ('both' = two queries of half the
# sample each: a balanced sample, and no UNION, which SkyServer refuses).
# {class_condition} becomes the spiral or the elliptical test of the label rule
# (galaxy_classification.sdss.label_rules); it is parenthesised so its OR/AND can
# never escape the redshift, flux and clean cuts. {label_columns} and
# {label_join} are empty for labels='likelihood' and add the Galaxy Zoo 1 table
# (zooSpec) for labels='galaxyzoo'. specObjID can exceed 2^63, so it travels as
# text. Cutouts are cut at image_scale_factor x petroR90_g, so it must be > 0.
# Comments and line breaks are removed before sending (one line, as SkyServer
# needs), so -- comments are safe here.
SQL_Query = """SELECT TOP {n_galaxies}
  g.objID AS objid, g.ra, g.dec, g.petroR90_g, g.petroR90_r, g.petroFlux_g,
  CAST(s.specObjID AS VARCHAR(20)) AS specObjID,
  g.lnLDeV_g, g.lnLExp_g, g.lnLDeV_r, g.lnLExp_r, s.z{label_columns}
FROM Galaxy AS g
  JOIN SpecObj AS s ON s.bestObjID = g.objID{label_join}
WHERE s.z BETWEEN {lower_z_limit} AND {upper_z_limit}
  AND s.zWarning = 0
  AND g.petroFlux_g BETWEEN {lower_flux_limit} AND {upper_flux_limit}
  AND g.clean = 1
  AND g.petroR90_g > 0
  AND ({class_condition})
"""

SOURCES = ("sdss", "synthetic")
DEFAULT_SEED = 42


def create_datafiles(
    n_galaxies=150,
    galaxy_type="both",
    lower_z_limit=0.1,
    upper_z_limit=0.3,
    lower_flux_limit=50,
    upper_flux_limit=500,
    data_release="DR15",
    image_data=True,
    image_scale_factor=0.01,
    *,
    out_dir="data",
    source="sdss",
    login=True,
    labels="likelihood",
    workers=8,
    sql=None,
    seed=DEFAULT_SEED,
    image_size=512,
    dry_run=False,
    ecsv=False,
    shard_size=None,
):
    """Write galaxy_data.csv, galaxy_images.npy and galaxy_labels.npy into ``out_dir``.

    ``galaxy_type='both'`` gives a balanced sample, half spirals and half
    ellipticals. Cutouts are ``image_size`` pixels square at
    ``image_scale_factor * petroR90_g`` arcsec per pixel. ``source='synthetic'``
    draws the sample from the offline synthetic sky instead of SDSS (``seed``
    makes it reproducible). ``dry_run=True`` prints the SQL and URLs it would
    send and returns without sending anything.

    SDSS: ``login=True`` logs in to SciServer once (``SCISERVER_TOKEN``, else
    ``SCISERVER_USERNAME`` + ``SCISERVER_PASSWORD``, else a prompt; a refused
    login is never retried, the account locks after 3 failures) and queries
    CasJobs; ``login=False`` uses the SkyServer SQL search, no account.
    ``labels`` is 'likelihood' (profile fits) or 'galaxyzoo' (Galaxy Zoo 1
    flags). ``workers`` cutouts download at once, cached in
    ``out_dir/cutouts/`` so a rerun fetches only what is missing; galaxies
    without a cutout are listed in ``out_dir/failed_cutouts.csv``. ``sql`` is
    your own full query, sent as it is; it must return objid, ra, dec,
    petroR90_g and the label rule's columns. Service failures raise
    ``galaxy_classification.errors.SDSSQueryError``. Every argument is checked
    before any request or file write; a bad one raises
    ``galaxy_classification.errors.UsageError`` (a ``ValueError``).
    ``ecsv=True`` also writes ``galaxy_data.ecsv``, the catalogue with units
    (needs astropy). ``shard_size=K`` writes shards of at most K galaxies
    (``shard-00000/`` ..., each a seed-format directory) instead of one set of
    files: the trainer reads the directory of shards as one data set.
    Returns the output directory as a ``pathlib.Path``.
    """
    sample = parameters.validate_sample_parameters(
        n_galaxies, galaxy_type, lower_z_limit, upper_z_limit, lower_flux_limit,
        upper_flux_limit, data_release, image_data, image_scale_factor, image_size,
    )
    if shard_size is not None:
        shard_size = parameters.positive_integer("shard_size", shard_size)
    out_dir = _output_directory(out_dir, image_data, shard_size)
    if source not in SOURCES:
        raise UsageError(f"source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
    rule = label_rule(labels)
    workers = parameters.positive_integer("workers", workers)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UsageError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not isinstance(ecsv, bool):
        raise UsageError(f"ecsv must be True or False, got {ecsv!r}")
    if ecsv:
        from galaxy_classification import tables

        tables.require_astropy("ecsv=True")
    if source == "synthetic":
        out_dir = _create_synthetic(sample, out_dir, seed, dry_run, shard_size)
    else:
        from galaxy_classification.sdss import sample as sdss_sample

        out_dir = sdss_sample.create_sdss_datafiles(
            sample, out_dir, sql_template=SQL_Query if sql is None else sql, custom_sql=sql is not None,
            login=login, label_rule=rule, workers=workers, seed=seed, dry_run=dry_run, shard_size=shard_size,
        )
    if ecsv and not dry_run:
        _write_ecsv(out_dir, sample)
    return out_dir


def _write_ecsv(out_dir, sample):
    import pandas as pd

    from galaxy_classification import tables
    from galaxy_classification.data import storage

    directories = storage.shard_directories(out_dir) or [out_dir]
    catalogue = pd.concat([storage.read_catalogue(directory / storage.CATALOGUE_FILE) for directory in directories],
                          ignore_index=True)
    tables.write_table(catalogue, out_dir / "galaxy_data.ecsv",
                       meta={"data_release": sample.data_release, "image_scale_factor": sample.image_scale_factor,
                             "image_size": sample.image_size})


def _output_directory(out_dir, image_data, shard_size=None):
    if not isinstance(out_dir, (str, Path)) or str(out_dir) == "":
        raise UsageError(f"out_dir must be a directory path, got {out_dir!r}")
    out_dir = Path(out_dir)
    storage.check_can_write(out_dir, "out_dir")
    old_images = out_dir / "galaxy_images.npy"
    if not image_data and old_images.exists():
        # a new catalogue beside old images would pair labels with the wrong pictures
        raise UsageError(f"image_data=False, but {old_images} from an earlier sample is there; "
                         "choose another out_dir or delete that file")
    # one data set per directory: shards beside single files would be read as one or the other
    if shard_size is None and (out_dir / "shards.json").exists():
        raise UsageError(f"out_dir {str(out_dir)!r} holds a sharded data set (shards.json); choose another "
                         "out_dir, delete it, or pass shard_size")
    if shard_size is not None and old_images.exists():
        raise UsageError(f"shard_size given, but out_dir {str(out_dir)!r} holds an unsharded galaxy_images.npy; "
                         "choose another out_dir or delete it")
    return out_dir


def _create_synthetic(sample, out_dir, seed, dry_run, shard_size=None):
    from galaxy_classification.data import synthetic

    if dry_run:
        print(f"dry run: would generate {sample.n_galaxies} synthetic galaxies into {out_dir}/")
        return out_dir
    return synthetic.create_synthetic_datafiles(sample, out_dir, seed=seed, shard_size=shard_size)


class _OneLineErrorParser(cli.OneLineParser):
    """Reports a bad argument in one line naming it; the full usage is in --help."""

    def error(self, message):
        super().error(f"{message} (see --help)")


def build_argument_parser():
    parser = _OneLineErrorParser(
        prog="sdss_query.py",
        description="Fetch spiral and elliptical galaxies (catalogue + JPEG cutouts) into data files.",
    )
    add = parser.add_argument
    add("--n-galaxies", type=int, default=150, help="galaxies in the sample (default 150)")
    add("--galaxy-type", default="both", help="both | spiral | elliptical (default both: half each)")
    add("--z-min", type=float, default=0.1, help="lower redshift limit (default 0.1)")
    add("--z-max", type=float, default=0.3, help="upper redshift limit (default 0.3)")
    add("--flux-min", type=float, default=50, help="lower petroFlux_g limit, nanomaggies (default 50)")
    add("--flux-max", type=float, default=500, help="upper petroFlux_g limit, nanomaggies (default 500)")
    add("--data-release", default="DR15", help="SDSS data release, DR followed by digits (default DR15)")
    add("--scale-factor", type=float, default=0.01,
        help="cutout scale in arcsec/pixel = this x petroR90_g (default 0.01)")
    add("--no-images", action="store_true", help="write the catalogue and labels only")
    add("--no-login", action="store_true", help="use the SkyServer SQL search, no SciServer account")
    add("--labels", choices=tuple(LABEL_RULES), default="likelihood",
        help="label rule: " + "; ".join(f"{rule.name}: {rule.summary}" for rule in LABEL_RULES.values())
        + " (default likelihood)")
    add("--workers", type=int, default=8, help="concurrent cutout downloads (default 8)")
    add("--out", default="data", help="output directory (default data/)")
    add("--synthetic", action="store_true", help="generate an offline synthetic sky instead of querying SDSS")
    add("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    add("--image-size", type=int, default=512, help="cutout side in pixels (default 512)")
    add("--dry-run", action="store_true", help="print the SQL and URLs that would be sent, send nothing")
    add("--ecsv", action="store_true", help="also write galaxy_data.ecsv, the catalogue with units (needs astropy)")
    add("--shard-size", type=int, metavar="K",
        help="write shards of at most K galaxies (shard-00000/ ...) instead of one galaxy_images.npy")
    return parser


def main(argv=None):
    parser = build_argument_parser()
    arguments = parser.parse_args(argv)

    def fetch():
        out_dir = create_datafiles(
            arguments.n_galaxies, arguments.galaxy_type, arguments.z_min, arguments.z_max,
            arguments.flux_min, arguments.flux_max, arguments.data_release,
            image_data=not arguments.no_images, image_scale_factor=arguments.scale_factor,
            out_dir=arguments.out, source="synthetic" if arguments.synthetic else "sdss",
            login=not arguments.no_login, labels=arguments.labels, workers=arguments.workers,
            seed=arguments.seed, image_size=arguments.image_size, dry_run=arguments.dry_run,
            ecsv=arguments.ecsv, shard_size=arguments.shard_size,
        )
        if not arguments.dry_run:
            print(f"wrote {out_dir}/")

    return cli.run(parser, fetch, interrupted="interrupted: finished cutouts are cached, rerun to resume")


if __name__ == "__main__":
    sys.exit(main())
