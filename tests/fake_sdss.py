"""A loopback fake of the SDSS services, for offline tests and the benchmark.

It answers with the literal reply shapes of ``../shared/sdss/PROTOCOL.md`` §7
(error bodies come from the canned files in ``tests/data/``):

- login portal ``POST /login-portal/keystone/v3/tokens``: 200 with the token in
  ``X-Subject-Token`` (and the body); 500 JSON for a wrong password; from the
  4th attempt for a user name, the lockout message even with the right one;
- CasJobs ``POST /CasJobs/RestApi/contexts/{context}/query``: 401 without the
  right ``X-Auth-Token``; ``{"Result": [{"Columns", "Data"}]}`` with bare JSON
  integers for ids; 500 + ``{"Error Message": ...}`` for SQL errors;
- SkyServer ``GET /{release}/SkyServerWS/SearchTools/SqlSearch``: chunked
  ``#Table1`` CSV; an ``error_message`` row (status 200) for non-SELECT text or
  TOP above 500000; 500 compact JSON for SQL errors; 400 without ``cmd``;
  switchable 503 HTML (``sql_mode='503'``) and 200 HTML (``sql_mode='html'``).
  Like the real service it deletes ``--`` comments to the end of the line, and
  with ``old_database=True`` it refuses a line break after ``TOP n`` as the
  databases before mid-2015 do;
- ``GET /{release}/SkyServerWS/ImgCutout/getjpeg``: a 200 JPEG whose flat colour
  encodes the objid (see :func:`objid_colour`); 404 with a JPEG body outside
  the fake footprint (dec < -30); width/height clamped to [64, 2048], scale to
  at least 0.015; 400 JSON for an unparsable ra/dec/scale.

Faults on the SQL paths (SqlSearch and CasJobs alike), consumed one per
request from ``fake.sql_faults``: ``"html200"`` (the "Skyserver Error ... try
again later" page with status 200), ``"drop"`` (connection closed mid-body),
``"503"`` (the load balancer's HTML page), ``"429"`` (with ``Retry-After``),
``"limit"`` (the "Maximum 60 queries allowed per minute" row), ``"slow"``
(the reply waits ``fake.slow_seconds``), and SQL Server's passing hiccups as the
services pass them on (a 500 error document: ``"deadlock"``, ``"timeout500"``,
``"network500"``).

Faults per objid (``fake.faults[objid] = ["503", "503"]`` is consumed one per
request, then the cutout is served; ``fake.sticky_faults[objid]`` never ends):
``"503"`` (HTML page) / ``"429"`` replies, ``"500"`` (the real drawing
failure: status 500 with a JPEG body and the message in the reason phrase),
``"drop"`` (connection closed mid-body), ``"notjpeg"`` (a 200 HTML body),
``"json500"`` (an exception in the image service: 500 with a JSON error document).
An unknown path gets IIS's HTML 404 page, as a wrong address or a release
without SkyServerWS does.
``latency`` seconds are added to every cutout. The fake counts requests by
kind and per objid, and the connections open at the same time.

The "SQL engine" understands just the project's queries: TOP n, the select
list (aliases, CAST), the redshift and flux BETWEEN cuts, and every simple
comparison joined by AND (``g.lnLDeV_r > g.lnLExp_r + 0.1``, ``zs.spiral = 1``)
over the fake sky's columns; other terms are ignored.
"""

import io
import json
import math
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image

DATA_DIR = Path(__file__).resolve().parent / "data"
USERNAME, PASSWORD = "alice", "correct-horse-battery-staple"
TOKEN = "gAAAAABfakeTokenForTheLoopbackTestsOnly0123456789abcdef"
BIG_OBJID = "1237648720693755918"
BIG_SPECOBJID = "10133099161583616000"  # above 2^63: overflows int64
MAX_LOGIN_ATTEMPTS = 3
# SQL Server's passing hiccups, in the words the services pass on (PROTOCOL.md §8.1)
TRANSIENT_SQL_MESSAGES = {
    "deadlock": "Transaction (Process ID 73) was deadlocked on lock resources with another process and has been "
                "chosen as the deadlock victim. Rerun the transaction.",
    "timeout500": "Execution Timeout Expired.  The timeout period elapsed prior to completion of the operation or "
                  "the server is not responding.",
    "network500": "A network-related or instance-specific error occurred while establishing a connection to SQL "
                  "Server. The server was not found or was not accessible.",
}
ROW_LIMIT = 500000
FOOTPRINT_MIN_DEC = -30.0


def unused_address():
    """``http://127.0.0.1:PORT`` where nothing listens: a service that cannot be reached."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def canned(name):
    return (DATA_DIR / name).read_bytes()


def objid_colour(objid):
    """The flat colour of a fake cutout: which galaxy an image shows can be
    read back from its pixels (JPEG keeps a flat colour within a few levels)."""
    number = int(objid)
    return (40 + number % 181, 40 + (number // 181) % 181, 40 + (number // 32761) % 181)


def make_sky(n_spiral=12, n_elliptical=12, n_uncertain=4, n_outside=0):
    """Fake galaxies: some outside the footprint (alternately spiral and
    elliptical), spirals, ellipticals, uncertain ones. The first elliptical
    has the big objID and specObjID."""
    galaxies = []
    # galaxies outside the footprint come first, so any TOP n query includes them
    kinds = ["outside"] * n_outside + ["spiral"] * n_spiral + ["elliptical"] * n_elliptical
    kinds += ["uncertain"] * n_uncertain
    for index, kind in enumerate(kinds):
        is_spiral = kind == "spiral" or (kind == "outside" and index % 2 == 0)
        is_elliptical = kind == "elliptical" or (kind == "outside" and index % 2 == 1)
        galaxies.append({
            "objid": int(BIG_OBJID) + index,
            "specobjid": int(BIG_SPECOBJID) + index * 2**40 if index % 2 else 299489677444933632 + index * 2**40,
            "ra": round(150.0 + 0.0137 * index, 7),
            "dec": -45.0 - index * 0.01 if kind == "outside" else round(2.0 + 0.0071 * index, 7),
            "petror90_g": round(4.0 + 0.25 * (index % 7), 3),
            "petror90_r": round(3.8 + 0.25 * (index % 7), 3),
            "petroflux_g": 60.0 + 10.0 * (index % 40),
            "lnldev_g": -2500.0 - index if is_spiral else (-250.0 if is_elliptical else -1500.0),
            "lnlexp_g": -300.0 if is_spiral else (-400.0 if is_elliptical else -1000.0),
            "lnldev_r": -2400.0 if is_spiral else (-200.0 if is_elliptical else -1400.0),
            "lnlexp_r": -350.0 if is_spiral else (-450.0 if is_elliptical else -900.0),
            "nvote": 20 + index % 30,
            "z": round(0.11 + 0.005 * (index % 30), 4),
            "spiral": int(is_spiral), "elliptical": int(is_elliptical), "uncertain": int(kind == "uncertain"),
            "p_cs_debiased": 0.9 if is_spiral else 0.1, "p_el_debiased": 0.9 if is_elliptical else 0.1,
        })
    # the elliptical with the big ids, so exactness is checked on a galaxy that is always fetched
    first_elliptical = next(galaxy for galaxy in galaxies if galaxy["elliptical"])
    first_spiral = galaxies[0]
    first_elliptical["objid"], first_spiral["objid"] = first_spiral["objid"], first_elliptical["objid"]
    first_elliptical["specobjid"] = int(BIG_SPECOBJID)
    return galaxies


class FakeSQLError(Exception):
    pass


def run_sql(sql, galaxies):
    """``(columns, rows, as_text)`` for the project's queries over the fake sky."""
    if re.search(r"CROSS APPLY dbo\.fGetNearbyObjEq", sql, re.I):
        return _run_nearby(sql, galaxies)
    match = re.match(r"\s*select\s+(?:top\s+(\d+)\s+)?(.*?)\s+from\s+(.*)$", sql, re.I | re.S)
    if not match:
        raise FakeSQLError(f"Incorrect syntax near '{sql.split()[0] if sql.split() else ''}'.")
    limit = int(match.group(1)) if match.group(1) else ROW_LIMIT
    select_list, rest = match.group(2), match.group(3)
    columns, sources, as_text = [], [], []
    for item in _split_top_level(select_list):
        alias = re.search(r"\bAS\s+(\w+)\s*$", item, re.I)
        expression = item[: alias.start()] if alias else item
        qualified = re.findall(r"\b[a-z]\w*\.(\w+)", expression, re.I)
        source = (qualified[0] if qualified else expression.strip()).lower()
        if source not in galaxies[0]:
            raise FakeSQLError(f"Invalid column name '{source}'.")
        columns.append(alias.group(1) if alias else (qualified[0] if qualified else expression.strip()))
        sources.append(source)
        as_text.append(bool(re.match(r"\s*cast\s*\(.*varchar", expression, re.I)))
    selected = [galaxy for galaxy in galaxies if _matches(galaxy, rest)]
    rows = [[galaxy[source] for source in sources] for galaxy in selected[:limit]]
    return columns, rows, as_text


def _run_nearby(sql, galaxies):
    """``FROM (VALUES (row, ra, dec), ...) AS t(row_id, ra, dec) CROSS APPLY
    dbo.fGetNearbyObjEq(t.ra, t.dec, r) AS n JOIN Galaxy AS g``: every galaxy
    within r arcmin of each position, with its distance in arcmin."""
    values = re.search(r"\(VALUES (.*?)\) AS t\(", sql, re.I)
    radius = re.search(r"fGetNearbyObjEq\(t\.ra, t\.dec, ([\d.e-]+)\)", sql, re.I)
    if not values or not radius:
        raise FakeSQLError("Incorrect syntax near 'VALUES'.")
    rows = []
    for row_id, ra, dec in re.findall(r"\((\d+), ([-\d.e]+), ([-\d.e]+)\)", values.group(1)):
        for galaxy in galaxies:
            distance = _arcmin(float(ra), float(dec), galaxy["ra"], galaxy["dec"])
            if distance <= float(radius.group(1)):
                rows.append([int(row_id), galaxy["objid"], galaxy["ra"], galaxy["dec"], galaxy["petror90_r"],
                             galaxy["petror90_g"], distance])
    columns = ["row_id", "objid", "ra", "dec", "petroR90_r", "petroR90_g", "distance"]
    return columns, rows, [False] * len(columns)


def _arcmin(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos_angle = (math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos_angle)))) * 60.0


def _split_top_level(text):
    items, depth, current = [], 0, ""
    for character in text:
        depth += character == "("
        depth -= character == ")"
        if character == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += character
    return items + [current.strip()] if current.strip() else items


_OPERAND = r"(?:[a-z]\w*\.(\w+)|(-?[\d.]+))(?:\s*\+\s*([\d.]+))?"
_COMPARISON = re.compile(rf"^{_OPERAND}\s*(<=|>=|<>|<|>|=)\s*{_OPERAND}$", re.I)
_OPERATORS = {"<": float.__lt__, ">": float.__gt__, "<=": float.__le__, ">=": float.__ge__,
              "=": float.__eq__, "<>": float.__ne__}


def _matches(galaxy, where):
    for column, key in (("z", "z"), ("petroFlux_g", "petroflux_g")):
        cut = re.search(rf"\b{column}\s+BETWEEN\s+([-\d.e+]+)\s+AND\s+([-\d.e+]+)", where, re.I)
        if cut and not float(cut.group(1)) <= galaxy[key] <= float(cut.group(2)):
            return False
    conditions = re.split(r"\bWHERE\b", where, maxsplit=1, flags=re.I)[1:]
    wanted_ids = re.search(r"\bobjID IN \(([\d, ]+)\)", " ".join(conditions), re.I)
    if wanted_ids and str(galaxy["objid"]) not in {text.strip() for text in wanted_ids.group(1).split(",")}:
        return False
    without_between = re.sub(r"\bBETWEEN\s+\S+\s+AND\s+\S+", "", " ".join(conditions), flags=re.I)
    for term in re.split(r"\bAND\b", without_between.replace("(", " ").replace(")", " "), flags=re.I):
        outcome = _compare(galaxy, term.strip())
        if outcome is False:
            return False
    return True


def _compare(galaxy, term):
    """True/False for a comparison over the sky's columns, None for anything else."""
    match = _COMPARISON.match(term)
    if not match:
        return None
    left_column, left_number, left_plus, operator, right_column, right_number, right_plus = match.groups()
    values = []
    for column, number, plus in ((left_column, left_number, left_plus), (right_column, right_number, right_plus)):
        if column is not None and column.lower() not in galaxy:
            return None
        value = float(galaxy[column.lower()]) if column is not None else float(number)
        values.append(value + float(plus or 0))
    return _OPERATORS[operator](*values)


class FakeSDSS:
    """The fake services on 127.0.0.1 (a free port), served from a thread."""

    def __init__(self, galaxies=None, latency=0.0):
        self.galaxies = galaxies if galaxies is not None else make_sky()
        self.latency = latency
        self.sql_mode = "ok"  # 'ok', '503' (HTML outage page), 'html' (HTML page with status 200)
        self.sql_faults = []  # one per SQL request, see the module docstring
        self.slow_seconds = 1.0
        self.retry_after_seconds = 1
        self.old_database = False
        self.cutout_source = None  # callable(objid, width, height, scale) -> JPEG bytes, instead of flat colours
        self.faults = defaultdict(list)
        self.sticky_faults = {}
        self.login_attempts = Counter()
        self.lock = threading.Lock()
        self.requests = []  # (kind, method, path, headers, body) of every request
        self.cutout_requests = Counter()  # objid -> getjpeg requests
        self.open_connections = 0
        self.max_open_connections = 0
        self._by_position = {(round(g["ra"], 6), round(g["dec"], 6)): str(g["objid"]) for g in self.galaxies}
        self._jpegs = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 64
        self._server.fake = self
        self._thread = None

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def count(self, kind=None):
        with self.lock:
            return sum(1 for request in self.requests if kind is None or request[0] == kind)

    def reset_counts(self):
        with self.lock:
            self.requests.clear()
            self.cutout_requests.clear()
            self.max_open_connections = self.open_connections

    def objid_at(self, ra, dec):
        return self._by_position.get((round(ra, 6), round(dec, 6)))

    def jpeg(self, objid, width, height):
        key = (objid, width, height)
        if key not in self._jpegs:
            colour = objid_colour(objid) if objid else (128, 128, 128)
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), colour).save(buffer, format="JPEG", quality=95)
            self._jpegs[key] = buffer.getvalue()
        return self._jpegs[key]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked replies

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # headers and body go out as separate writes: without TCP_NODELAY, Nagle's
        # algorithm meets the client's delayed ACK and adds ~40 ms to every reply
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fake = self.server.fake
        with fake.lock:
            fake.open_connections += 1
            fake.max_open_connections = max(fake.max_open_connections, fake.open_connections)

    def finish(self):
        fake = self.server.fake
        with fake.lock:
            fake.open_connections -= 1
        try:
            super().finish()
        except OSError:
            pass

    # --- plumbing ---

    def _record(self, kind, body=b""):
        with self.server.fake.lock:
            self.server.fake.requests.append((kind, self.command, self.path, dict(self.headers), body))

    def _reply(self, status, body, content_type, reason=None, headers=()):
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _reply_json(self, status, document_or_bytes, reason=None, headers=()):
        body = document_or_bytes if isinstance(document_or_bytes, bytes) else json.dumps(document_or_bytes).encode()
        self._reply(status, body, "application/json; charset=utf-8", reason, headers)

    def _reply_chunked_csv(self, text):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in text.splitlines(keepends=True):
            data = line.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # --- routes ---

    def do_POST(self):
        path = urlsplit(self.path).path
        body = self._body()
        if path == "/login-portal/keystone/v3/tokens":
            return self._login(body)
        match = re.fullmatch(r"/CasJobs/RestApi/contexts/(\w+)/query", path)
        if match:
            return self._casjobs(match.group(1), body)
        self._record("other", body)
        self._reply(404, canned("iis_404.html"), "text/html", reason="Not Found")

    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if re.fullmatch(r"/\w+/SkyServerWS/SearchTools/SqlSearch", parts.path):
            return self._sql_search(query)
        if re.fullmatch(r"/\w+/SkyServerWS/ImgCutout/getjpeg", parts.path):
            return self._getjpeg(query)
        self._record("other")
        self._reply(404, canned("iis_404.html"), "text/html", reason="Not Found")

    def _login(self, body):
        self._record("login", body)
        fake = self.server.fake
        try:
            user = json.loads(body)["auth"]["identity"]["password"]["user"]
            name, password = user["name"], user["password"]
        except (ValueError, KeyError, TypeError):
            return self._reply_json(500, canned("login_bad_body.json"))
        with fake.lock:
            fake.login_attempts[name] += 1  # counted before the password is checked
            attempts = fake.login_attempts[name]
        if attempts > MAX_LOGIN_ATTEMPTS:
            return self._reply_json(500, canned("login_locked.json"))
        if (name, password) != (USERNAME, PASSWORD):
            return self._reply_json(500, canned("login_rejected.json"))
        with fake.lock:
            fake.login_attempts[name] = 0
        self._reply(200, TOKEN.encode(), "text/plain", headers=[("X-Subject-Token", TOKEN)])

    def _sql_fault(self, csv_reply):
        """Acts out the next SQL fault; True when the reply has been sent."""
        fake = self.server.fake
        with fake.lock:
            fault = fake.sql_faults.pop(0) if fake.sql_faults else None
        if fault == "limit" and not csv_reply:
            fault = None  # the per-minute refusal is SkyServer's, not CasJobs'
        if fault == "slow":
            time.sleep(fake.slow_seconds)
            return False
        if fault == "html200":
            self._reply(200, canned("skyserver_busy_200.html"), "text/html")
        elif fault == "503":
            self._reply(503, canned("maintenance_503.html"), "text/html", reason="Service Unavailable")
        elif fault == "429":
            self._reply(429, b"Too Many Requests", "text/plain", reason="Too Many Requests",
                        headers=[("Retry-After", str(fake.retry_after_seconds))])
        elif fault in TRANSIENT_SQL_MESSAGES:
            message = TRANSIENT_SQL_MESSAGES[fault]
            document = ({"ErrorCode": 500, "ErrorType": "InternalServerError", "ErrorMessage": message}
                        if csv_reply else {"Error Message": message})
            self._reply_json(500, document, reason="InternalServerError")
        elif fault == "limit" and csv_reply:
            self._reply_chunked_csv(canned("sqlsearch_query_limit.csv").decode())
        elif fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain" if csv_reply else "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            data = b"#Table1\nobjid,ra,dec\n1237648720693755918,150"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        return fault is not None

    def _casjobs(self, context, body):
        self._record("casjobs", body)
        if self.headers.get("X-Auth-Token") != TOKEN:
            return self._reply_json(401, canned("casjobs_unauthorized.json"))
        if self._sql_fault(csv_reply=False):
            return None
        try:
            sql = json.loads(body)["Query"]
            columns, rows, as_text = run_sql(sql, self.server.fake.galaxies)
        except FakeSQLError as error:
            return self._reply_json(500, {"Error Message": str(error)})
        except (ValueError, KeyError, TypeError):
            return self._reply_json(500, {"Error Message": "Query parameter is missing."})
        data = [[str(value) if text else value for value, text in zip(row, as_text)] for row in rows]
        self._reply_json(200, {"Query": sql, "Result": [{"Columns": columns, "Data": data}]})

    def _sql_search(self, query):
        self._record("sqlsearch")
        fake = self.server.fake
        if fake.sql_mode == "503":
            return self._reply(503, canned("maintenance_503.html"), "text/html", reason="Service Unavailable")
        if fake.sql_mode == "html":
            return self._reply(200, canned("skyserver_error_200.html"), "text/html")
        if "cmd" not in query:  # parameter names are case-sensitive
            return self._reply_json(400, canned("sqlsearch_missing_cmd.json"), reason="BadRequest")
        if self._sql_fault(csv_reply=True):
            return None
        raw = query["cmd"][0]
        if fake.old_database and re.search(r"\btop\s+\d+[ \t]*\r?\n", raw, re.I):
            document = json.loads(canned("sqlsearch_sql_error.json"))
            document["ErrorMessage"] = "Incorrect syntax near the keyword 'TOP'."
            return self._reply_json(500, document, reason="InternalServerError")
        raw = re.sub(r"/\*.*?\*/", " ", re.sub(r"--[^\n]*", "", raw), flags=re.S)  # as the real filter does
        sql = " ".join(raw.split())
        if not sql.lower().startswith("select "):
            return self._reply_chunked_csv(f"#Table1\nerror_message\nerror: must be a select statement: {sql} \n")
        top = re.match(r"select\s+top\s+(\d+)", sql, re.I)
        if top and int(top.group(1)) > ROW_LIMIT:
            return self._reply_chunked_csv(f'#Table1\nerror_message\n"error: limit is  top {ROW_LIMIT} {sql}"\n')
        if ";" in sql or re.search(r"\bunion\b", sql, re.I):
            return self._reply_json(500, {"ErrorCode": 500, "ErrorType": "InternalServerError",
                                          "ErrorMessage": "Incorrect syntax near '#'."}, reason="InternalServerError")
        try:
            columns, rows, _ = run_sql(sql, fake.galaxies)
        except FakeSQLError as error:
            document = json.loads(canned("sqlsearch_sql_error.json"))
            document["ErrorMessage"] = str(error)
            return self._reply_json(500, document, reason="InternalServerError")
        lines = ["#Table1", ",".join(columns)] + [",".join(str(value) for value in row) for row in rows]
        self._reply_chunked_csv("\n".join(lines) + "\n")

    def _getjpeg(self, query):
        fake = self.server.fake
        try:
            ra, dec = float(query["ra"][0]), float(query["dec"][0])
            scale = max(0.015, float(query.get("scale", ["0.396127"])[0]))
            width = min(2048, max(64, int(query.get("width", ["128"])[0])))
            height = min(2048, max(64, int(query.get("height", ["128"])[0])))
        except (KeyError, ValueError):
            self._record("getjpeg")
            return self._reply_json(400, canned("getjpeg_bad_ra.json"), reason="BadRequest")
        objid = fake.objid_at(ra, dec)
        self._record("getjpeg")
        with fake.lock:
            fake.cutout_requests[objid] += 1
            fault = fake.faults[objid].pop(0) if fake.faults.get(objid) else fake.sticky_faults.get(objid)
        if fake.latency:
            time.sleep(fake.latency)
        if fault in ("503", "429"):
            return self._reply(int(fault), canned("maintenance_503.html"), "text/html")
        if fault == "500":
            return self._reply(500, fake.jpeg(None, width, height), "image/jpeg",
                               reason="INTERNAL SERVER ERROR. Drawing the image failed.")
        if fault == "json500":
            return self._reply_json(500, {"ErrorCode": 500, "ErrorType": "InternalServerError",
                                          "ErrorMessage": TRANSIENT_SQL_MESSAGES["deadlock"]},
                                    reason="InternalServerError")
        if fault == "notjpeg":
            return self._reply(200, canned("skyserver_error_200.html"), "text/html")
        if fake.cutout_source is not None and objid is not None and dec >= FOOTPRINT_MIN_DEC:
            body = fake.cutout_source(objid, width, height, scale)
        else:
            body = fake.jpeg(objid, width, height)
        if fault == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        if dec < FOOTPRINT_MIN_DEC:
            return self._reply(404, fake.jpeg(None, width, height), "image/jpeg",
                               reason="NOT FOUND. Requested (ra, dec) is outside the SDSS footprint.")
        return self._reply(200, body, "image/jpeg")
