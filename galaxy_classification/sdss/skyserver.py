"""HTTP conversations with the SDSS services: login, SQL queries, image cutouts.

This module only talks HTTP; it never reads or writes files. Every service call
is split in two so the parsing can be tested on canned replies
(``tests/data/``) without a network:

- ``build_*_request`` makes a :class:`requests.Request` (nothing is sent),
- ``parse_*_response`` turns the reply into data, or raises
  :class:`SDSSQueryError` carrying the service's own message and whether the
  failure is transient.

Which failures are worth another try is decided in one place, for every path
(SQL search, CasJobs, cutouts), following ``PROTOCOL.md`` §8.1:

- transient: 429 (after its ``Retry-After``), 502, 503, 504, reset
  connections, a body cut off mid-way, an HTML page whatever its status (but
  404), and SkyServer's "Maximum 60 queries allowed per minute" refusal (after
  a whole query window);
- transient a bounded few times (:data:`BOUNDED_RETRIES`): an error document
  whose words are SQL Server's transient family (a deadlock victim, an
  execution timeout, a lost connection to the database, a server too busy:
  SkyServerWS turns *every* exception into the same 500 JSON, so only the words
  tell a hiccup from a bad query), a cutout 500 of any kind (a drawing failure,
  an exception in the image service), and a service that cannot be reached at
  all (name resolution, no route, refused: said plainly, with ``--synthetic``
  as the offline way);
- permanent, raised at once: SQL errors that are the query's fault (500/400
  JSON ``ErrorMessage`` / ``Error Message`` in other words), other
  ``error_message`` rows, 400 bad parameters, an HTML 404 page (a wrong
  address, or a release without that service: the URL is named), 404 outside
  the footprint, 401, a rejected login, and a SQL reply that did not come
  within ``SDSS_SQL_TIMEOUT`` (the server may still be running the query, so
  it is never sent again).

:func:`call_with_retries` is the one loop that acts on that verdict, with
exponential back-off and jitter. urllib3's own ``Retry`` is not used for it:
it can only look at the status, and the same 500 means "your SQL is wrong"
on one path and "try again" on another. A login is never retried: the
SciServer account locks after three failed attempts. The token lives in a
:class:`SciServerToken`, which hides its value from ``print``, logs and
tracebacks. Service locations and timeouts come from :mod:`config`.
"""

import csv
import errno
import getpass
import io
import json
import os
import random
import re
import socket
import sys
import threading
import time

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, NameResolutionError, ReadTimeoutError
from urllib3.util.retry import Retry

from galaxy_classification.errors import CutoutBodyError, SDSSQueryError  # noqa: F401 (raised here, named here by callers)
from galaxy_classification.sdss import config

JPEG_MAGIC = b"\xff\xd8\xff"
TASK_NAME = "galaxy_classification"
USER_AGENT = "galaxy-classification (python-requests)"
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
BOUNDED_RETRIES = 3  # more tries for a failure that is transient only a few times (a deadlock, a drawing failure)
UNREACHABLE_RETRIES = 2  # a service that cannot be reached at all: a few seconds, then say so
# SQL Server's transient family, as SkyServerWS and CasJobs pass it on in their error documents
TRANSIENT_SQL_WORDS = (
    "deadlocked", "deadlock victim", "rerun the transaction", "execution timeout expired",
    "timeout period elapsed", "network-related or instance-specific error",
    "error occurred while establishing a connection", "transport-level error", "server is too busy",
    "server is busy", "too busy", "try again later",
)
QUERY_LIMIT_TEXT = "queries allowed per minute"
LOCKOUT_ADVICE = (
    "The login is not retried: the SciServer account locks for 10 minutes after 3 failed attempts. "
    "Check SCISERVER_USERNAME / SCISERVER_PASSWORD (or set SCISERVER_TOKEN), "
    "or use login=False / --no-login for the SkyServer SQL search, which needs no account."
)


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


# --- sessions and sending -------------------------------------------------------

# urllib3 sends each request once (requests' own default, spelled out): every
# retry decision is made by call_with_retries, which sees the body too.
SEND_ONCE = Retry(total=0, read=False, redirect=5, raise_on_status=False)


def make_session(pool_size=1):
    """A requests Session with at most ``pool_size`` connections per host
    (further requests wait for a free one) and no retries of its own."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=SEND_ONCE, pool_connections=4, pool_maxsize=pool_size, pool_block=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def send(session, request, read_timeout=None, sql=False, allow_redirects=True):
    """Send a built request once and read its whole body.

    Connecting is limited by ``SDSS_TIMEOUT``; reading by ``read_timeout``
    (default ``SDSS_TIMEOUT``). No reply, or a body cut off mid-way, raises a
    transient :class:`SDSSQueryError`, except a SQL reply that ran out of time:
    the server may still be executing that query, so it is final.
    """
    prepared = session.prepare_request(request)
    connect_timeout = config.timeout_seconds()
    read_timeout = read_timeout or connect_timeout
    where = request.url.split("?")[0]
    try:
        response = session.send(prepared, timeout=(connect_timeout, read_timeout), allow_redirects=allow_redirects)
    except requests.RequestException as error:
        if sql and _is_read_timeout(error):
            raise SDSSQueryError(
                f"the SQL query got no complete reply from {where} within SDSS_SQL_TIMEOUT={read_timeout:g} s. "
                "It was not sent again, because the server may still be running it. Raise SDSS_SQL_TIMEOUT "
                "(SkyServer itself stops a query after 600 s), or ask for fewer galaxies or narrower limits."
            ) from None
        unreachable = _unreachable_reason(error)
        if unreachable:
            raise SDSSQueryError(
                f"cannot reach SDSS ({unreachable}): {where}. Check the network (or SDSS_SKYSERVER_URL / "
                "SDSS_CASJOBS_URL); offline, use a synthetic sample: sdss_query.py --synthetic "
                "(source='synthetic')", transient=True, max_retries=UNREACHABLE_RETRIES) from None
        cut_off = isinstance(error, (requests.exceptions.ChunkedEncodingError,
                                     requests.exceptions.ContentDecodingError))
        what = "the reply was cut off mid-way" if cut_off else "no reply"
        raise SDSSQueryError(f"{what} from {where}: {_short(error)}", transient=True) from None
    return response


def _unreachable_reason(error):
    """Why no connection could be made at all (no name, no route, refused), or None."""
    if not isinstance(error, requests.exceptions.ConnectionError) or _is_read_timeout(error):
        return None
    seen, pending = set(), [error]
    while pending:
        cause = pending.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, NameResolutionError) or isinstance(cause, socket.gaierror):
            return "the host name does not resolve: no network?"
        if isinstance(cause, (ConnectionRefusedError,)):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "no route to the host: no network?"
        pending += [getattr(cause, "reason", None), cause.__cause__, cause.__context__,
                    *[argument for argument in getattr(cause, "args", ()) if isinstance(argument, BaseException)]]
    return None


def _is_read_timeout(error):
    # a timeout while the body streams in arrives wrapped in a ConnectionError
    return isinstance(error, requests.exceptions.ReadTimeout) or any(
        isinstance(argument, ReadTimeoutError) for argument in error.args)


def call_with_retries(session, request, parse, *, sql=False, read_timeout=None, limiter=None, stop=None):
    """Send ``request`` and return ``parse(response)``, trying transient
    failures again with exponential back-off and jitter.

    ``parse`` raises :class:`SDSSQueryError` for an error reply; its
    ``transient``, ``retry_after`` and ``max_retries`` decide what happens
    next. ``limiter`` (a :class:`RateLimiter`) is asked before every attempt;
    ``stop`` (a threading.Event) ends the waiting early.
    """
    retries, backoff = config.retries(), config.backoff_seconds()
    stop = stop or threading.Event()
    attempt = bounded = 0
    while True:
        if stop.is_set():
            raise SDSSQueryError("interrupted", transient=True)
        if limiter is not None:
            limiter.acquire(stop)
        try:
            return parse(send(session, request, read_timeout=read_timeout, sql=sql))
        except SDSSQueryError as error:
            bounded += error.max_retries is not None  # failures transient only a few times
            out_of_tries = attempt >= retries or (error.max_retries is not None and bounded > error.max_retries)
            if not error.transient or out_of_tries:
                if attempt:
                    error.args = (f"{error} (gave up after {attempt + 1} attempts)",)
                raise
            wait = min(60.0, backoff * 2**attempt) + random.uniform(0, backoff)
            if error.retry_after is not None:
                wait = max(wait, error.retry_after)
            if wait >= 10 or error.retry_after is not None:
                print(f"{error}; waiting {wait:.1f} s before trying again", file=sys.stderr)
            if stop.wait(wait):
                raise SDSSQueryError("interrupted", transient=True) from None
            attempt += 1


class RateLimiter:
    """A token bucket shared by threads: on average at most ``rate`` requests a
    second, in bursts of at most ``burst``. A caller that finds the bucket
    empty reserves the next token and sleeps until it is due."""

    def __init__(self, rate, burst=1):
        self._rate = float(rate)
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, stop_event=None):
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            if stop_event is None:
                time.sleep(wait)
            else:
                stop_event.wait(wait)


def sql_rate_limiter():
    """SkyServer allows 60 queries a minute per address: one every window/60."""
    return RateLimiter(config.QUERIES_PER_WINDOW / config.query_window_seconds())


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


def is_html(text, content_type=""):
    return text.lstrip()[:1] == "<" or "text/html" in (content_type or "").lower()


def raise_for_service_error(service, status, content_type, text, headers=None, reason=None, url=None):
    """Raise SDSSQueryError for any reply that is not data, saying whether it is
    worth another try (PROTOCOL.md §8.1). Returns for a 200 that is not HTML.

    ``text`` is the body as text; a cutout's JPEG body arrives as its reason
    phrase instead, since the picture of an error says nothing. ``url`` (the
    request's, without its query) is named when the address itself is wrong.
    """
    headers = headers or {}
    message = service_message(text) if text else (reason or "(empty reply)")
    if is_html(text, content_type):
        if status == 404:  # IIS's "404 - File or directory not found.": no such service there
            raise SDSSQueryError(
                f"{service}: no such page at {url or 'the requested address'} (HTTP 404: {message}); the service "
                f"URL is wrong, or the data release has no such service (SkyServer's web service serves "
                f"{config.describe_releases(config.SKYSERVER_WS)})", status_code=404)
        # maintenance pages, load balancers, "Skyserver Error ... try again later"
        raise SDSSQueryError(f"{service} sent an HTML page instead of data (HTTP {status}): {message}",
                             status_code=status, transient=True, retry_after=_retry_after(headers))
    if status == 200:
        return
    if status in RETRIED_STATUSES:
        raise SDSSQueryError(f"{service} is busy or unavailable (HTTP {status}): {message}",
                             status_code=status, transient=True, retry_after=_retry_after(headers))
    document_message = _json_error_message(text)
    if document_message is not None and is_transient_sql_error(document_message):
        raise SDSSQueryError(f"{service} failed for now (HTTP {status}): {message}", status_code=status,
                             transient=True, max_retries=BOUNDED_RETRIES)
    if document_message is not None or status < 500:
        # the service's own error document: the SQL or a parameter is wrong; 4xx: our request is
        raise SDSSQueryError(f"{service} failed (HTTP {status}): {message}", status_code=status)
    # a 500 without an error document (a cutout "drawing failed", a crashed page): a few more tries
    raise SDSSQueryError(f"{service} failed (HTTP {status}): {message}", status_code=status,
                         transient=True, max_retries=BOUNDED_RETRIES)


def is_transient_sql_error(message):
    """Whether a service's error message is one of SQL Server's passing hiccups rather than the query's fault."""
    words = " ".join(message.lower().split())
    return any(phrase in words for phrase in TRANSIENT_SQL_WORDS)


def _json_error_message(text):
    try:
        document = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(document, dict):
        for key in ("ErrorMessage", "Error Message"):
            if isinstance(document.get(key), str):
                return document[key]
    return None


def _retry_after(headers):
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(Retry(0).parse_retry_after(value)))
    except InvalidHeader:  # unparsable: the back-off decides
        return None


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
    with make_session() as session:  # sends once: see SEND_ONCE
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


def parse_casjobs_response(status, content_type, text, headers=None, url=None):
    """``(columns, rows)`` of the first result set. JSON integers become exact
    Python ints, so 64-bit ids survive."""
    if status == 401:
        raise SDSSQueryError(
            f"CasJobs refused the SciServer token (HTTP 401: {service_message(text)}); it may have expired. "
            "Set a fresh SCISERVER_TOKEN or log in again.", status_code=401,
        )
    raise_for_service_error("CasJobs query", status, content_type, text, headers, url=url)
    try:
        document = json.loads(text)
        result = document["Result"][0]
        columns, rows = list(result["Columns"]), [list(row) for row in result["Data"]]
    except (ValueError, KeyError, IndexError, TypeError):
        raise SDSSQueryError(f"CasJobs sent a reply without a result table: {service_message(text)}",
                             status_code=status) from None
    return columns, rows


def reply_text(reply):
    """The body as text: UTF-8 whatever the headers say (the services send ``text/plain`` without a charset,
    which requests would read as ISO-8859-1)."""
    return reply.content.decode("utf-8", errors="replace")


def _address(reply):
    return reply.url.split("?")[0] if reply.url else None


def run_casjobs_query(session, sql, context, token, limiter=None):
    return call_with_retries(
        session, build_casjobs_request(sql, context, token),
        lambda reply: parse_casjobs_response(reply.status_code, reply.headers.get("Content-Type", ""),
                                             reply_text(reply), reply.headers, _address(reply)),
        sql=True, read_timeout=config.sql_timeout_seconds(), limiter=limiter,
    )


# --- SkyServer SQL search (no-login path) ---------------------------------------


def build_sql_search_request(sql, data_release):
    # params= URL-encodes the SQL: a raw '+' would arrive as a space, '#' would end the URL.
    return requests.Request(
        "GET", f"{config.skyserver_url()}/{data_release}/SkyServerWS/SearchTools/SqlSearch",
        params={"cmd": sql, "format": "csv"},
    )


def parse_sql_search_response(status, content_type, text, headers=None, url=None):
    """``(columns, rows)`` from a ``#Table1`` CSV reply, every value as text."""
    raise_for_service_error("SkyServer SQL search", status, content_type, text, headers, url=url)
    first_line, _, table = text.partition("\n")
    if first_line.strip() != "#Table1":
        raise SDSSQueryError(f"SkyServer SQL search sent an unexpected reply: {service_message(text)}",
                             status_code=status)
    lines = _csv_rows(table, status)
    if not lines:
        raise SDSSQueryError("SkyServer SQL search sent a table without a header line", status_code=status)
    columns, rows = lines[0], lines[1:]
    if [column.strip().lower() for column in columns] == ["error_message"]:
        message = " ".join(row[0] for row in rows).strip() or "(no message)"
        if QUERY_LIMIT_TEXT in message.lower():
            window = config.query_window_seconds()
            raise SDSSQueryError(f"SkyServer refused the query for now: {message[:300]} (it allows "
                                 f"{config.QUERIES_PER_WINDOW} queries a minute per address; waiting the "
                                 f"whole {window:g} s window)", status_code=status, transient=True,
                                 retry_after=window)
        raise SDSSQueryError(f"SkyServer refused the query: {message[:500]}", status_code=status)
    return columns, rows


def _csv_rows(table, status):
    """The CSV's rows, each as wide as the header; SkyServer does not escape a quote inside a quoted
    field, so such a row is named (by its line of the reply) instead of being read wrong."""
    rows = []
    reader = csv.reader(io.StringIO(table), strict=True)
    try:
        for row in reader:
            if row:
                rows.append((reader.line_num + 1, row))
    except csv.Error as error:
        raise SDSSQueryError(f"SkyServer SQL search sent a CSV reply that does not parse at line "
                             f"{reader.line_num + 1} ({error}): a text column with a quote in it? Select fewer "
                             "text columns, or CAST them", status_code=status) from None
    if rows:
        width = len(rows[0][1])
        for line, row in rows[1:]:
            if len(row) != width:
                raise SDSSQueryError(f"SkyServer SQL search sent a CSV row of {len(row)} fields under a header of "
                                     f"{width}, at line {line} of the reply: a text column with a quote or a comma "
                                     "in it? Select fewer text columns, or CAST them", status_code=status)
    return [row for _, row in rows]


def run_sql_search(session, sql, data_release, limiter=None):
    return call_with_retries(
        session, build_sql_search_request(sql, data_release),
        lambda reply: parse_sql_search_response(reply.status_code, reply.headers.get("Content-Type", ""),
                                                reply_text(reply), reply.headers, _address(reply)),
        sql=True, read_timeout=config.sql_timeout_seconds(), limiter=limiter,
    )


# --- JPEG cutouts ---------------------------------------------------------------


def build_cutout_request(ra, dec, scale, size, data_release):
    """A square gri colour cutout, ``size`` pixels at ``scale`` arcsec/pixel, no overlays."""
    return requests.Request(
        "GET", f"{config.skyserver_url()}/{data_release}/SkyServerWS/ImgCutout/getjpeg",
        params={"ra": repr(float(ra)), "dec": repr(float(dec)), "scale": repr(float(scale)),
                "width": int(size), "height": int(size), "opt": ""},
    )


def parse_cutout_response(status, reason, content_type, body, size, headers=None, url=None):
    """The decoded ``(size, size, 3)`` uint8 image, or SDSSQueryError.

    The status is checked before the body: outside the footprint the service
    answers 404 *with* a perfectly good JPEG of a blank canvas, and a drawing
    failure 500 with one too.
    """
    text = "" if body[:3] == JPEG_MAGIC else body[:4000].decode("utf-8", "replace")
    if status == 404 and not is_html(text, content_type):
        raise SDSSQueryError(f"HTTP 404 {reason or 'Not Found'} (permanent: outside the SDSS footprint)",
                             status_code=404)
    if status >= 500 and status not in RETRIED_STATUSES and not is_html(text, content_type):
        # a drawing failure (JPEG body) or an exception in the image service (an error document): a few more tries
        message = service_message(text) if text else (reason or "(empty reply)")
        raise SDSSQueryError(f"SkyServer image cutout failed (HTTP {status}): {message}", status_code=status,
                             transient=True, max_retries=BOUNDED_RETRIES)
    raise_for_service_error("SkyServer image cutout", status, content_type, text, headers, reason, url)
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


def fetch_cutout(session, request, size, limiter=None, stop=None):
    """The JPEG bytes of one cutout, checked to decode to size x size x 3,
    with transient failures tried again."""
    def parse(reply):
        parse_cutout_response(reply.status_code, reply.reason, reply.headers.get("Content-Type", ""),
                              reply.content, size, reply.headers, _address(reply))
        return reply.content

    return call_with_retries(session, request, parse, limiter=limiter, stop=stop)
