"""Tables in and out as astronomers keep them: CSV, ECSV, FITS or VOTable.

The file name's suffix picks the format (:data:`FORMATS`). CSV goes through
pandas as before; the others through ``astropy.table`` (the ``[astro]``
extra), with units where they exist (:data:`UNITS`) and the run's facts (the
model's name and checksum, the data release) in the table's metadata. SDSS
ids stay exact: ECSV and FITS store them as 64-bit unsigned integers
(specObjID can exceed 2^63), VOTable, which has no unsigned 64-bit type, as
text. Every table with an objid can carry a SkyServer explore link
(:func:`explore_url`).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_classification.data import storage
from galaxy_classification.errors import UsageError

FORMATS = {".csv": "csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".vot": "votable",
           ".xml": "votable"}
ID_COLUMNS = ("objid", "specObjID")
UNITS = {"ra": "deg", "dec": "deg", "petroR90_g": "arcsec", "petroR90_r": "arcsec",
         "cutout_scale": "arcsec / pix", "z": "", "petroFlux_g": "nmgy"}
EXPLORE_URL = "https://skyserver.sdss.org/{release}/en/tools/explore/summary.aspx?id={objid}"
EXPLORE_URL_DR7 = "https://skyserver.sdss.org/dr7/en/tools/explore/obj.asp?id={objid}"  # DR7's own objids


def table_format(path):
    """The format a file name asks for, or ValueError naming the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: unknown table format {suffix or '(no suffix)'!r}; use one of "
                         f"{', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def explore_url(objid, data_release):
    """SkyServer's object explorer page of ``objid`` in ``data_release`` ('' without an objid)."""
    objid = str(objid).strip()
    number = data_release.upper().removeprefix("DR") if isinstance(data_release, str) else ""
    if not (objid.isascii() and objid.isdigit() and number.isascii() and number.isdigit()):
        return ""
    template = EXPLORE_URL_DR7 if int(number) <= 7 else EXPLORE_URL
    return template.format(release=data_release.lower(), objid=objid)


def with_explore_links(frame, data_release, column="objid"):
    """``frame`` plus an ``explore_url`` column for its objids."""
    return frame.assign(explore_url=[explore_url(objid, data_release) for objid in frame[column]])


def _astropy(what="ECSV, FITS and VOTable"):
    try:
        from astropy import table, units
    except ImportError:
        raise UsageError(f"{what} needs astropy: pip install 'galaxy-classification[astro]' "
                         "(or pip install astropy)") from None
    return table, units


def require_astropy(what):
    """ValueError now, before any work, when astropy is missing."""
    _astropy(what)


def to_astropy(frame, meta=None, votable=False):
    """An ``astropy.table.Table`` of ``frame`` with units, exact ids and ``meta``."""
    table_module, units = _astropy()
    table = table_module.Table(meta=dict(meta or {}))
    for name in frame.columns:
        values = frame[name]
        if name in ID_COLUMNS and not votable and _all_digits(values):
            column = np.array([int(value) for value in values], dtype=np.uint64)
        elif values.dtype == object or pd.api.types.is_string_dtype(values):
            column = np.array(["" if value is None or value != value else str(value) for value in values], dtype=str)
        else:
            column = values.to_numpy()
        table[name] = column
        if UNITS.get(name):
            table[name].unit = units.Unit(UNITS[name])
    return table


def _all_digits(values):
    return len(values) > 0 and all(str(value).isascii() and str(value).isdigit() for value in values)


def write_table(frame, path, meta=None):
    """Write ``frame`` atomically in the format the name of ``path`` says."""
    path = Path(path)
    kind = table_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        storage.write_csv_atomic(frame, path)
        return path
    table = to_astropy(frame, meta, votable=kind == "votable")
    with storage.atomic_output(path) as temporary, warnings.catch_warnings():
        # keys like model_sha256 are longer than FITS' 8 characters: HIERARCH cards
        # (the standard convention, read back by astropy and fitsio) are what we want
        warnings.filterwarnings("ignore", message=r"Keyword name .* HIERARCH card will be created")
        table.write(temporary, format=kind, overwrite=True)
    return path


def read_table(path):
    """Any supported table as a DataFrame of text columns (ids exact), as the
    catalogue readers expect; ValueError if it cannot be read."""
    path = Path(path)
    kind = table_format(path)
    if kind == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    table_module, _ = _astropy()
    try:
        table = table_module.Table.read(path, format=kind)
    except Exception as error:  # astropy raises many kinds for a damaged file
        raise UsageError(f"{path}: not a readable {kind} table ({str(error).splitlines()[0][:200]})") from None
    frame = pd.DataFrame({name: [_text(value) for value in np.asarray(table[name])] for name in table.colnames})
    return frame


def _text(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return ""
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    return str(value).strip()
