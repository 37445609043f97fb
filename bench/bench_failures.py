"""Benchmark: what each kind of service failure costs a user.

For every failure shape of ../shared/sdss/PROTOCOL.md §8.1, the loopback fake
SDSS (tests/fake_sdss.py) acts it out once (or for ever, where marked) during a
normal ``create_datafiles`` run of 8 galaxies through the SkyServer SQL search,
and the bench prints how many requests the client sent and how long the user
waited for the outcome (success, or the error they see):

    .venv/bin/python bench/bench_failures.py            # about 2 minutes, real back-off
    .venv/bin/python bench/bench_failures.py --quick    # skips the 60 s query-window case

The client runs with its real defaults (5 retries, 1 s back-off base, the 60 s
query window) except two scaled-down limits, so a slow query takes seconds,
not ten minutes: the read timeouts (SDSS_TIMEOUT, SDSS_SQL_TIMEOUT) are 2 s
and the "slow" query answers after 3 s. Run it on an older checkout (``--project DIR``) to compare.
"""

import argparse
import io
import os
import socket
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent.parent

# (name, where, fault, sticky): sql faults go to fake.sql_faults, cutout faults to one galaxy
CASES = [
    ("SQL error (500 JSON ErrorMessage)", "sqlerror", None, False),
    ("HTML 'Skyserver Error ... try again later', status 200", "sql", "html200", False),
    ("SQL reply cut off mid-body", "sql", "drop", False),
    ("SQL 503 load-balancer page", "sql", "503", False),
    ("SQL 429 with Retry-After: 5", "sql", "429", False),
    ("'Maximum 60 queries allowed per minute' row", "sql", "limit", False),
    ("query slower than the SQL timeout", "sql", "slow", False),
    ("SQL 500 'deadlock victim ... Rerun the transaction'", "sql", "deadlock", False),
    ("SQL 500 'Execution Timeout Expired'", "sql", "timeout500", False),
    ("SQL 500 'network-related ... error', for ever", "sql_always", "network500", False),
    ("cutout 500 'drawing failed', for ever", "cutout", "500", True),
    ("cutout 500 JSON error document, once", "cutout", "json500", False),
    ("cutout 500 JSON error document, for ever", "cutout", "json500", True),
    ("cutout 404 outside the footprint", "outside", None, False),
    ("HTML 404 page (a wrong address)", "address404", None, False),
    ("data_release DR9 (no SkyServerWS there)", "release", None, False),
    ("no service at the address (connection refused)", "offline", None, False),
]


def run_case(case, project_root):
    import sdss_query

    from fake_sdss import FakeSDSS, make_sky

    name, where, fault, sticky = case
    server = FakeSDSS(make_sky(n_spiral=6, n_elliptical=6, n_outside=2 if where == "outside" else 0)).start()
    server.retry_after_seconds = 5
    server.slow_seconds = 3.0
    sql, release, url = None, "DR15", server.url
    if where == "sql":
        server.sql_faults = [fault]
    elif where == "sql_always":
        server.sql_faults = [fault] * 50
    elif where == "sqlerror":
        sql = "SELECT TOP 8 g.objID, g.ra, g.dec, g.petroR90_g, g.nosuchcolumn FROM Galaxy AS g"
    elif where == "cutout" and sticky:
        server.sticky_faults[str(server.galaxies[0]["objid"])] = fault
    elif where == "cutout":
        server.faults[str(server.galaxies[0]["objid"])] = [fault]
    elif where == "address404":
        url = f"{server.url}/moved"
    elif where == "release":
        release = "DR9"
    elif where == "offline":
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    os.environ.update({"SDSS_SKYSERVER_URL": url, "SDSS_TIMEOUT": "2", "SDSS_SQL_TIMEOUT": "2",
                       "SDSS_MAX_RATE": "1000"})
    output = io.StringIO()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as out_dir, redirect_stdout(output), redirect_stderr(output):
            sdss_query.create_datafiles(8, out_dir=out_dir, login=False, image_size=64, sql=sql,
                                        data_release=release)
        outcome = "success"
    except Exception as error:  # the bench reports what the user would see, whatever it is
        outcome = f"{type(error).__name__}: {str(error)[:110]}"
    elapsed = time.perf_counter() - started
    sql_requests, cutout_requests = server.count("sqlsearch") + server.count("other"), server.count("getjpeg")
    server.stop()
    return name, sql_requests, cutout_requests, elapsed, outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=DEFAULT_ROOT, help="checkout whose client is measured")
    parser.add_argument("--quick", action="store_true", help="leave out the 60 s query-window case")
    arguments = parser.parse_args()
    sys.path[:0] = [str(arguments.project), str(DEFAULT_ROOT / "tests")]
    for variable in ("SDSS_RETRIES", "SDSS_BACKOFF_SECONDS", "SDSS_QUERY_WINDOW"):
        os.environ.pop(variable, None)
    print(f"client: {arguments.project}")
    print(f"{'failure':52} {'SQL req':>7} {'cutout req':>10} {'seconds':>8}  outcome")
    for case in CASES:
        if arguments.quick and case[2] == "limit":
            continue
        name, sql_requests, cutout_requests, elapsed, outcome = run_case(case, arguments.project)
        print(f"{name:52} {sql_requests:7d} {cutout_requests:10d} {elapsed:8.1f}  {outcome}", flush=True)


if __name__ == "__main__":
    main()
