"""Where the SDSS services live and how long we wait for them.

Every value is read from the environment at call time (not import time), so a
test or a user can point the client elsewhere without touching code:

    SDSS_SKYSERVER_URL   default https://skyserver.sdss.org
    SDSS_CASJOBS_URL     default https://skyserver.sdss.org/CasJobs/RestApi
    SCISERVER_LOGIN_URL  default https://apps.sciserver.org/login-portal
    SDSS_TIMEOUT         seconds to connect, and to read a cutout or login reply, default 60
    SDSS_SQL_TIMEOUT     seconds to wait for a SQL query's reply, default 600 (SkyServer's own
                         limit); a query that runs out of time is never sent again
    SDSS_MAX_RATE        cutout requests per second, all workers together, default 10
    SDSS_RETRIES         retries of a transient failure (429, 502-504, HTML pages, dropped
                         connections), default 5
    SDSS_BACKOFF_SECONDS base of the exponential back-off between retries, default 1
    SDSS_QUERY_WINDOW    seconds of SkyServer's per-address query window, default 60: it
                         allows 60 queries in it, so queries go at most one per window/60,
                         and after its "Maximum 60 queries allowed per minute" refusal the
                         client waits a whole window before asking again

Why 10 cutouts per second: SDSS publishes no limit for the image service, and
the SQL search allows 60 queries a minute; 10 small JPEGs a second keeps one
user's load on the shared service well below what its web pages generate,
while 8 workers at a typical ~1 s per cutout are barely slowed by it.
"""

import os

from galaxy_classification.errors import UsageError

DEFAULT_SKYSERVER_URL = "https://skyserver.sdss.org"
DEFAULT_CASJOBS_URL = "https://skyserver.sdss.org/CasJobs/RestApi"
DEFAULT_LOGIN_URL = "https://apps.sciserver.org/login-portal"
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_SQL_TIMEOUT_SECONDS = 600.0  # SkyServer's SQL search timeout ("Query Limits" help page)
DEFAULT_QUERY_WINDOW_SECONDS = 60.0  # 60 queries per minute per client
QUERIES_PER_WINDOW = 60
DEFAULT_MAX_REQUESTS_PER_SECOND = 10.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_SECONDS = 1.0

# The data releases each route serves (PROTOCOL.md §0). SkyServer's web service
# (SQL search and image cutouts at /{release}/SkyServerWS/...) exists for DR12
# and later; DR7-DR11 lived on older sites with other pages. CasJobs keeps a
# context for every release since DR7. Galaxy Zoo 1's DR7 objects are in every
# later release, with new objids (a position match finds them).
SKYSERVER_WS = "SkyServer's web service (SQL search, image cutouts)"
CASJOBS = "CasJobs"
RELEASES = {SKYSERVER_WS: range(12, 20), CASJOBS: range(7, 20)}


def _url(variable, default):
    return os.environ.get(variable, default).rstrip("/")


def skyserver_url():
    return _url("SDSS_SKYSERVER_URL", DEFAULT_SKYSERVER_URL)


def casjobs_url():
    return _url("SDSS_CASJOBS_URL", DEFAULT_CASJOBS_URL)


def login_url():
    return _url("SCISERVER_LOGIN_URL", DEFAULT_LOGIN_URL)


def _positive_float(variable, default):
    text = os.environ.get(variable)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"environment variable {variable} must be a positive number, got {text!r}") from None
    if not value > 0:
        raise UsageError(f"environment variable {variable} must be a positive number, got {text!r}")
    return value


def timeout_seconds():
    return _positive_float("SDSS_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)


def sql_timeout_seconds():
    return _positive_float("SDSS_SQL_TIMEOUT", DEFAULT_SQL_TIMEOUT_SECONDS)


def query_window_seconds():
    return _positive_float("SDSS_QUERY_WINDOW", DEFAULT_QUERY_WINDOW_SECONDS)


def max_requests_per_second():
    return _positive_float("SDSS_MAX_RATE", DEFAULT_MAX_REQUESTS_PER_SECOND)


def retries():
    text = os.environ.get("SDSS_RETRIES")
    if text is None or text == "":
        return DEFAULT_RETRIES
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise UsageError(f"environment variable SDSS_RETRIES must be a whole number >= 0, got {text!r}")
    return int(text)


def backoff_seconds():
    return _positive_float("SDSS_BACKOFF_SECONDS", DEFAULT_BACKOFF_SECONDS)


def describe_releases(route):
    """'DR12 to DR19' for a route of :data:`RELEASES`."""
    numbers = RELEASES[route]
    return f"DR{numbers[0]} to DR{numbers[-1]}"


def check_release(data_release, routes):
    """Refuse, before any request, a release one of ``routes`` (keys of :data:`RELEASES`) does not serve."""
    number = int(data_release.upper().removeprefix("DR"))
    for route in routes:
        if number not in RELEASES[route]:
            raise UsageError(
                f"data_release {data_release}: {route} serves {describe_releases(route)}; use one of those "
                f"(e.g. DR17; Galaxy Zoo 1's DR7 galaxies are in every later release)")


def check_all():
    """Read every setting once, so a bad one fails before anything is sent."""
    timeout_seconds(), sql_timeout_seconds(), query_window_seconds()
    max_requests_per_second(), retries(), backoff_seconds()
