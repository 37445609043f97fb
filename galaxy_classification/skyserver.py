"""HTTP conversations with the SDSS services: login, SQL queries, image cutouts.

This module only talks HTTP; it never reads or writes files. Every service call
is split in two so the parsing can be tested on canned replies
(``tests/data/``) without a network:

- ``build_*_request`` makes a :class:`requests.Request` (nothing is sent),
- ``parse_*_response`` turns the reply into data, or raises
  :class:`SDSSQueryError` carrying the service's own message.

Errors are errors, never data: an HTML page (whatever its status), a 200 reply
holding an ``error_message`` row, a 500 JSON error all raise. Transient failures
(429, 5xx, refused or reset connections) are retried by urllib3 with
exponential back-off and jitter; a login is never retried, because the
SciServer account locks after three failed attempts. The SciServer token lives
in a :class:`SciServerToken`, which hides its value from ``print``, logs and
tracebacks. Service locations and timeouts come from :mod:`config`.
"""

import csv
import getpass
import io
import json
import os
import random
import re
import sys

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import config

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
JPEG_MAGIC = b"\xff\xd8\xff"
TASK_NAME = "galaxy_classification"
USER_AGENT = "galaxy-classification (python-requests)"
LOCKOUT_ADVICE = (
    "The login is not retried: the SciServer account locks for 10 minutes after 3 failed attempts. "
    "Check SCISERVER_USERNAME / SCISERVER_PASSWORD (or set SCISERVER_TOKEN), "
    "or use login=False / --no-login for the SkyServer SQL search, which needs no account."
)


class SDSSQueryError(Exception):
    """An SDSS service failed, or answered with an error instead of data.

    ``status_code`` is the HTTP status (None when no reply arrived);
    ``transient`` says whether trying again later may help.
    """

    def __init__(self, message, status_code=None, transient=False):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient


class CutoutBodyError(SDSSQueryError):
    """A cutout reply whose body was cut off or is not a JPEG: worth another try."""

    def __init__(self, message):
        super().__init__(message, status_code=200, transient=True)


class SciServerToken:
    """A SciServer login token that never shows its value in output or logs."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        """The token itself, for the X-Auth-Token header and nothing else."""
        return self._value

    def __repr__(self):
        return "SciServerToken(<hidden>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a SciServer token is not written anywhere, so it cannot be pickled")


# --- sessions -----------------------------------------------------------------


class BackoffRetry(Retry):
    """urllib3's Retry with a back-off before every retry.

    Stock urllib3 retries the first failure at once; against a service that just
    said 429 or 503 that is the least polite moment, so here retry k waits
    ``backoff_factor * 2**(k-1)`` plus up to ``backoff_jitter`` seconds.
    """

    def get_backoff_time(self):
        retries_so_far = len(self.history)
        if retries_so_far == 0:
            return 0.0
        delay = self.backoff_factor * 2 ** (retries_so_far - 1) + random.uniform(0, self.backoff_jitter)
        return min(self.backoff_max, delay)


def retry_policy(allowed_methods=Retry.DEFAULT_ALLOWED_METHODS):
    """Retries for transient failures only: 429/5xx replies, refused or reset
    connections, read timeouts. POST is not in urllib3's default methods."""
    retries = config.retries()
    backoff = config.backoff_seconds()
    return BackoffRetry(
        total=retries, connect=retries, read=retries, status=retries, other=0,
        allowed_methods=allowed_methods, status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=backoff, backoff_jitter=backoff, backoff_max=60,
        raise_on_status=False,  # the last reply is parsed, so the error carries the service's message
        respect_retry_after_header=True, retry_after_max=300,
        remove_headers_on_redirect=Retry.DEFAULT_REMOVE_HEADERS_ON_REDIRECT | {"X-Auth-Token"},
    )


# A login is attempted exactly once: no retry of any kind (total=0), and POST is
# not among the methods urllib3 may retry anyway.
NO_RETRY = Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                 allowed_methods=Retry.DEFAULT_ALLOWED_METHODS, raise_on_status=False)


def make_session(pool_size=1, retry_posts=False):
    """A requests Session with transient-failure retries and at most
    ``pool_size`` connections per host (further requests wait for a free one).

    ``retry_posts=True`` also retries POST, for CasJobs quick queries: they are
    read-only SELECTs, so sending one twice is harmless. Logins never use this.
    """
    allowed = Retry.DEFAULT_ALLOWED_METHODS | {"POST"} if retry_posts else Retry.DEFAULT_ALLOWED_METHODS
    adapter = HTTPAdapter(max_retries=retry_policy(allowed), pool_connections=4,
                          pool_maxsize=pool_size, pool_block=True)
    return _session_with(adapter)


def make_login_session():
    """A Session that sends each request once: no urllib3 retries at all."""
    return _session_with(HTTPAdapter(max_retries=NO_RETRY, pool_connections=1, pool_maxsize=1))


def _session_with(adapter):
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def send(session, request, allow_redirects=True, stream=False):
    """Send a built request with the configured timeout; no reply -> SDSSQueryError.
    ``stream=True`` leaves the body unread, so a drop mid-body shows up later."""
    prepared = session.prepare_request(request)
    timeout = config.timeout_seconds()
    try:
        return session.send(prepared, timeout=(timeout, timeout), allow_redirects=allow_redirects, stream=stream)
    except requests.RequestException as error:
        where = request.url.split("?")[0]
        raise SDSSQueryError(f"no reply from {where}: {_short(error)}", transient=True) from None


# --- messages from the services -----------------------------------------------


def service_message(text, limit=300):
    """The service's own words from an error body: JSON message keys, the text
    of an HTML page, or the start of whatever else came back."""
    text = text.strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        for key in ("Error Message", "ErrorMessage", "message", "Message"):
            if isinstance(document.get(key), str):
                return document[key].strip()[:limit]
        if isinstance(document.get("error"), dict) and isinstance(document["error"].get("message"), str):
            return document["error"]["message"].strip()[:limit]
    if text.startswith("<"):
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
        text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())[:limit] or "(empty reply)"


def raise_for_service_error(service, status, content_type, text):
    """Raise SDSSQueryError for a non-200 status or an HTML page (even with 200)."""
    is_html = text.lstrip().startswith("<") or "text/html" in (content_type or "").lower()
    if status != 200 or is_html:
        raise SDSSQueryError(
            f"{service} failed (HTTP {status}): {service_message(text)}",
            status_code=status, transient=status in TRANSIENT_STATUSES,
        )


def _short(error, limit=300):
    return f"{type(error).__name__}: {error}"[:limit]


# --- SciServer login ------------------------------------------------------------


def build_login_request(username, password):
    body = {"auth": {"identity": {"password": {"user": {"name": username, "password": password}}}}}
    return requests.Request("POST", f"{config.login_url()}/keystone/v3/tokens", json=body)


def parse_login_response(status, headers, text, username):
    """The token from a login reply: the X-Subject-Token header, else the body."""
    if status == 200:
        token = (headers.get("X-Subject-Token") or text or "").strip()
        if token and not token.startswith(("<", "{")) and len(token.split()) == 1:
            return SciServerToken(token)
        raise SDSSQueryError("the SciServer login portal accepted the login but sent no token", status_code=200)
    raise SDSSQueryError(
        f"SciServer login for user {username!r} was refused (HTTP {status}: {service_message(text)}). "
        + LOCKOUT_ADVICE,
        status_code=status,
    )


def login():
    """A SciServer token, with at most one login request per call.

    Sources, in order: ``SCISERVER_TOKEN`` (no request at all), then
    ``SCISERVER_USERNAME`` + ``SCISERVER_PASSWORD``, then a terminal prompt
    (the password through getpass, never echoed).
    """
    token = os.environ.get("SCISERVER_TOKEN", "").strip()
    if token:
        return SciServerToken(token)
    username, password = _username_and_password()
    request = build_login_request(username, password)
    del password
    with make_login_session() as session:
        try:
            response = send(session, request, allow_redirects=False)
        except SDSSQueryError as error:
            raise SDSSQueryError(f"SciServer login failed: {error}. {LOCKOUT_ADVICE}") from None
    return parse_login_response(response.status_code, response.headers, response.text, username)


def _username_and_password():
    username = os.environ.get("SCISERVER_USERNAME", "").strip()
    password = os.environ.get("SCISERVER_PASSWORD", "")
    if username and password:
        return username, password
    if not _interactive():
        raise SDSSQueryError(
            "a SciServer login is needed: set SCISERVER_TOKEN, or SCISERVER_USERNAME and SCISERVER_PASSWORD, "
            "or run in a terminal to be asked; or use login=False / --no-login (SkyServer SQL search, no account)"
        )
    username = username or input("SciServer user name: ").strip()
    password = password or getpass.getpass(f"SciServer password for {username}: ")
    if not username or not password:
        raise SDSSQueryError("SciServer login needs a user name and a password; nothing was sent")
    return username, password


def _interactive():
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return False


# --- CasJobs quick query (login path) -----------------------------------------


def build_casjobs_request(sql, context, token):
    return requests.Request(
        "POST", f"{config.casjobs_url()}/contexts/{context}/query",
        json={"Query": sql, "TaskName": TASK_NAME},
        headers={"Accept": "application/json+array", "X-Auth-Token": token.reveal()},
    )


def parse_casjobs_response(status, content_type, text):
    """``(columns, rows)`` of the first result set. JSON integers become exact
    Python ints, so 64-bit ids survive."""
    if status == 401:
        raise SDSSQueryError(
            f"CasJobs refused the SciServer token (HTTP 401: {service_message(text)}); it may have expired. "
            "Set a fresh SCISERVER_TOKEN or log in again.", status_code=401,
        )
    raise_for_service_error("CasJobs query", status, content_type, text)
    try:
        document = json.loads(text)
        result = document["Result"][0]
        columns, rows = list(result["Columns"]), [list(row) for row in result["Data"]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SDSSQueryError(f"CasJobs sent a reply without a result table: {service_message(text)}",
                             status_code=status) from None
    return columns, rows


def run_casjobs_query(session, sql, context, token):
    response = send(session, build_casjobs_request(sql, context, token), allow_redirects=False)
    return parse_casjobs_response(response.status_code, response.headers.get("Content-Type", ""), response.text)


# --- SkyServer SQL search (no-login path) ---------------------------------------


def build_sql_search_request(sql, data_release):
    # params= URL-encodes the SQL: a raw '+' would arrive as a space, '#' would end the URL.
    return requests.Request(
        "GET", f"{config.skyserver_url()}/{data_release}/SkyServerWS/SearchTools/SqlSearch",
        params={"cmd": sql, "format": "csv"},
    )


def parse_sql_search_response(status, content_type, text):
    """``(columns, rows)`` from a ``#Table1`` CSV reply, every value as text."""
    raise_for_service_error("SkyServer SQL search", status, content_type, text)
    first_line, _, table = text.partition("\n")
    if first_line.strip() != "#Table1":
        raise SDSSQueryError(f"SkyServer SQL search sent an unexpected reply: {service_message(text)}",
                             status_code=status)
    lines = [row for row in csv.reader(io.StringIO(table)) if row]
    if not lines:
        raise SDSSQueryError("SkyServer SQL search sent a table without a header line", status_code=status)
    columns, rows = lines[0], lines[1:]
    if [column.strip().lower() for column in columns] == ["error_message"]:
        message = " ".join(row[0] for row in rows).strip() or "(no message)"
        raise SDSSQueryError(f"SkyServer refused the query: {message[:500]}", status_code=status)
    return columns, rows


def run_sql_search(session, sql, data_release):
    response = send(session, build_sql_search_request(sql, data_release))
    return parse_sql_search_response(response.status_code, response.headers.get("Content-Type", ""), response.text)


# --- JPEG cutouts ---------------------------------------------------------------


def build_cutout_request(ra, dec, scale, size, data_release):
    """A square gri colour cutout, ``size`` pixels at ``scale`` arcsec/pixel, no overlays."""
    return requests.Request(
        "GET", f"{config.skyserver_url()}/{data_release}/SkyServerWS/ImgCutout/getjpeg",
        params={"ra": repr(float(ra)), "dec": repr(float(dec)), "scale": repr(float(scale)),
                "width": int(size), "height": int(size), "opt": ""},
    )


def parse_cutout_response(status, reason, content_type, body, size):
    """The decoded ``(size, size, 3)`` uint8 image, or SDSSQueryError.

    The status is checked before the body: outside the footprint the service
    answers 404 *with* a perfectly good JPEG of a blank canvas.
    """
    if status == 404:
        raise SDSSQueryError(f"HTTP 404 {reason or 'Not Found'} (permanent: outside the SDSS footprint)",
                             status_code=404)
    if status != 200:
        message = reason if body[:3] == JPEG_MAGIC else service_message(body.decode("utf-8", "replace"))
        raise SDSSQueryError(f"HTTP {status}: {message}", status_code=status,
                             transient=status in TRANSIENT_STATUSES)
    return decode_cutout(body, size)


def decode_cutout(body, size):
    """Decode JPEG bytes, insisting on a complete ``size`` x ``size`` RGB image."""
    if body[:3] != JPEG_MAGIC:
        raise CutoutBodyError(f"not a JPEG: {service_message(body[:2000].decode('utf-8', 'replace'), 120)}")
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()  # a truncated JPEG raises here
            if image.mode != "RGB":
                raise CutoutBodyError(f"JPEG in colour mode {image.mode}, expected RGB")
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise CutoutBodyError(f"JPEG does not decode: {error}") from None
    if pixels.shape != (size, size, 3):
        # the service silently clamps width/height to [64, 2048]
        raise SDSSQueryError(f"cutout is {pixels.shape[1]}x{pixels.shape[0]} pixels, asked for {size}x{size}",
                             status_code=200)
    return pixels


def fetch_cutout(session, request, size):
    """One cutout attempt: the JPEG bytes, checked to decode to size x size x 3.
    urllib3 has already retried 429/5xx and refused connections; a body cut off
    mid-way or one that is not a JPEG raises :class:`CutoutBodyError` for the
    caller to retry."""
    response = send(session, request, stream=True)
    try:
        body = response.content
    except requests.RequestException as error:
        raise CutoutBodyError(f"connection dropped mid-body: {_short(error, 160)}") from None
    finally:
        response.close()
    parse_cutout_response(response.status_code, response.reason, response.headers.get("Content-Type", ""), body, size)
    return body
