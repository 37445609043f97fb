"""Benchmark: concurrent cutout downloads, 1 worker versus 8, side by side.

Serves 400 cutouts from the loopback fake SDSS (tests/fake_sdss.py) with 200 ms
of added latency per cutout, downloads them with workers=1 and then workers=8
into fresh caches, and prints both wall times, the speed-up, and the largest
number of connections the server saw open at once.

    .venv/bin/python bench/bench_cutouts.py            # about 90 s
    .venv/bin/python bench/bench_cutouts.py --galaxies 100 --latency 0.1

The fake server runs in its own process, as the real one is on another
machine: in this process it would compete with the client for the GIL while
encoding 512-pixel JPEGs. The politeness cap (SDSS_MAX_RATE, 10 requests/s by default) is lifted to
1000/s here: at 200 ms per reply 8 workers make 40 requests/s, and this
benchmark measures the concurrency, not the cap. Against the real service keep
the default.
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_ROOT), str(PROJECT_ROOT / "tests")]

from galaxy_classification.sdss import cutouts  # noqa: E402

from fake_sdss import FakeSDSS, make_sky  # noqa: E402


def download(galaxies, workers, image_size):
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        report = cutouts.download_cutouts(galaxies, cache_dir, data_release="DR15", image_scale_factor=0.01,
                                          image_size=image_size, workers=workers)
        elapsed = time.perf_counter() - start
    if report.downloaded != len(galaxies):
        raise SystemExit(f"workers={workers}: {report.summary()}")
    return elapsed


def serve(connection, n_spiral, n_elliptical, latency):
    """The fake SDSS in a child process, answering commands from the benchmark."""
    server = FakeSDSS(make_sky(n_spiral=n_spiral, n_elliptical=n_elliptical, n_uncertain=0), latency=latency)
    server.start()
    connection.send((server.url, server.galaxies))
    while True:
        command = connection.recv()
        if command == "reset":
            server.reset_counts()
            connection.send(None)
        elif command == "max_open_connections":
            connection.send(server.max_open_connections)
        else:
            server.stop()
            return


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every cutout reply")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8)
    arguments = parser.parse_args()

    half = arguments.galaxies // 2
    context = multiprocessing.get_context("spawn")
    client_end, server_end = context.Pipe()
    process = context.Process(target=serve, args=(server_end, arguments.galaxies - half, half, arguments.latency))
    process.start()
    try:
        url, sky = client_end.recv()
        os.environ.update(SDSS_SKYSERVER_URL=url, SDSS_MAX_RATE="1000", SDSS_TIMEOUT="30")
        galaxies = pd.DataFrame([{"objid": str(g["objid"]), "ra": g["ra"], "dec": g["dec"],
                                  "petroR90_g": g["petror90_g"]} for g in sky])
        sequential = download(galaxies, 1, arguments.image_size)
        time.sleep(0.3)  # let the server notice the closed connection before counting afresh
        client_end.send("reset")
        client_end.recv()
        concurrent = download(galaxies, arguments.workers, arguments.image_size)
        client_end.send("max_open_connections")
        most_open = client_end.recv()
    finally:
        client_end.send("stop")
        process.join(timeout=10)

    speed_up = sequential / concurrent
    print(f"\n{len(galaxies)} cutouts of {arguments.image_size}x{arguments.image_size} px, "
          f"{arguments.latency * 1000:.0f} ms added latency each")
    print(f"workers=1: {sequential:6.1f} s")
    print(f"workers={arguments.workers}: {concurrent:6.1f} s")
    print(f"speed-up: {speed_up:.2f}x (target >= 6x)")
    print(f"most connections open at once with workers={arguments.workers}: {most_open} "
          f"(limit {arguments.workers})")
    return 0 if speed_up >= 6 and most_open <= arguments.workers else 1


if __name__ == "__main__":
    sys.exit(main())
