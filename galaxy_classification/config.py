"""Where the SDSS services live and how long we wait for them.

Every value is read from the environment at call time (not import time), so a
test or a user can point the client elsewhere without touching code:

    SDSS_SKYSERVER_URL   default https://skyserver.sdss.org
    SDSS_CASJOBS_URL     default https://skyserver.sdss.org/CasJobs/RestApi
    SCISERVER_LOGIN_URL  default https://apps.sciserver.org/login-portal
    SDSS_TIMEOUT         seconds per request (connect and read), default 60
    SDSS_MAX_RATE        cutout requests per second, all workers together, default 10
    SDSS_RETRIES         retries of a transient failure (429, 5xx, dropped connection), default 5
    SDSS_BACKOFF_SECONDS base of the exponential back-off between retries, default 1

Why 10 cutouts per second: SDSS publishes no limit for the image service, and
the SQL search allows 60 queries a minute; 10 small JPEGs a second keeps one
user's load on the shared service well below what its web pages generate,
while 8 workers at a typical ~1 s per cutout are barely slowed by it.
"""

import os

DEFAULT_SKYSERVER_URL = "https://skyserver.sdss.org"
DEFAULT_CASJOBS_URL = "https://skyserver.sdss.org/CasJobs/RestApi"
DEFAULT_LOGIN_URL = "https://apps.sciserver.org/login-portal"
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_REQUESTS_PER_SECOND = 10.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_SECONDS = 1.0


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
        raise ValueError(f"environment variable {variable} must be a positive number, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"environment variable {variable} must be a positive number, got {text!r}")
    return value


def timeout_seconds():
    return _positive_float("SDSS_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)


def max_requests_per_second():
    return _positive_float("SDSS_MAX_RATE", DEFAULT_MAX_REQUESTS_PER_SECOND)


def retries():
    text = os.environ.get("SDSS_RETRIES")
    if text is None or text == "":
        return DEFAULT_RETRIES
    if not text.strip().isdigit():
        raise ValueError(f"environment variable SDSS_RETRIES must be a whole number >= 0, got {text!r}")
    return int(text)


def backoff_seconds():
    return _positive_float("SDSS_BACKOFF_SECONDS", DEFAULT_BACKOFF_SECONDS)
