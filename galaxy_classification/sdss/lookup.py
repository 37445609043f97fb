"""Find catalogue galaxies in SDSS: their objid, position and Petrosian radii.

By objid when a row has one, otherwise the nearest primary galaxy within
:data:`MATCH_RADIUS_ARCSEC` of its position (``dbo.fGetNearbyObjEq``), in
batched queries through CasJobs (with a token) or the SQL search. The SQL is
built only from validated numbers and digit-only objids.
"""

import re

import pandas as pd

from galaxy_classification.errors import UsageError
from galaxy_classification.sdss import catalogue, skyserver

MATCH_RADIUS_ARCSEC = 2.0
_OBJID = re.compile(r"[0-9]{1,20}")


def is_objid(text: str) -> bool:
    """An SDSS objid as text: ASCII digits only (not '²' or full-width ones), an unsigned 64-bit number."""
    return bool(_OBJID.fullmatch(text)) and int(text) < 2**64
LOOKUP_BATCH = 100  # rows per lookup query: the SQL search carries its query in the URL



def objid_lookup_sql(objids):
    """Radii and positions of the galaxies with these objids (digits only)."""
    if not all(is_objid(objid) for objid in objids):
        raise UsageError("objids must be ASCII digits, at most 20 of them, below 2^64")
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
