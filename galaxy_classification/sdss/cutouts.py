"""Download many SDSS JPEG cutouts: concurrent, polite, retrying, resumable.

:func:`download_cutouts` fetches one cutout per catalogue row into
``cache_dir/<objid>.jpg``:

- at most ``workers`` connections are open at once (a thread pool of that size
  over a connection pool of that size that blocks instead of opening more);
- all threads share one token bucket capping the request rate
  (``SDSS_MAX_RATE``, default 10 per second; see :mod:`config`);
- transient failures (429, 502-504, HTML pages, dropped connections, bodies
  cut off or not a JPEG) are tried again with exponential back-off and jitter,
  a 500 ("drawing failed") only twice more; a 404 (outside the footprint) is
  final (:func:`skyserver.call_with_retries` decides);
- a galaxy whose scale would fall below the service's 0.015"/pixel minimum is
  left out with that reason rather than fetched at a scale the service clamps
  silently (a wider field than the rest of the sample);
- every body must decode to ``image_size`` x ``image_size`` x 3 before it is
  cached, and it is cached atomically, so a file in the cache is always a good
  cutout and a rerun after a crash or Ctrl-C downloads only what is missing.

The cache is keyed by objid; ``cutouts/settings.json`` records the data
release, scale factor and size it was made with, and a run asking for other
settings is refused (:func:`check_cache_settings`) rather than silently mixing
cutouts of two scales. A cached file of the wrong size is downloaded again.
"""

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from galaxy_classification.data import storage
from galaxy_classification.errors import SDSSQueryError, UsageError
from galaxy_classification.sdss import config, skyserver


@dataclass
class CutoutReport:
    """What :func:`download_cutouts` did. ``failures`` maps objid to
    ``(reason, permanent)``; permanent failures will fail again on a rerun."""

    downloaded: int = 0
    from_cache: int = 0
    failures: dict = field(default_factory=dict)
    below_minimum_scale: int = 0

    def summary(self):
        text = f"{self.downloaded} downloaded, {self.from_cache} from cache, {len(self.failures)} failed"
        if self.below_minimum_scale:
            text += (f" ({self.below_minimum_scale} of them need a scale below the service's "
                     f"{MIN_SCALE_ARCSEC:g}\"/pixel minimum)")
        return text


_SAFE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


def cutout_path(cache_dir, objid):
    """``cache_dir/<objid>.jpg``; ``objid`` is an SDSS objid or another plain
    name (letters, digits, ``.+_-``): it becomes a file name."""
    if not _SAFE_NAME.fullmatch(objid):
        raise UsageError(f"objid {objid!r} is not a decimal number or a plain name")
    return Path(cache_dir) / f"{objid}.jpg"


def is_cached(path, image_size):
    """A cached cutout of the right size (only the JPEG header is read)."""
    try:
        with Image.open(path) as image:
            return image.format == "JPEG" and image.size == (image_size, image_size)
    except (OSError, ValueError):
        return False


MIN_SCALE_ARCSEC = 0.015  # the image service clamps a smaller scale up to this, silently


def cutout_scale(petro_r90, image_scale_factor):
    """Arcsec per pixel: the cutout spans image_size x scale_factor x petroR90."""
    return image_scale_factor * float(petro_r90)


def scale_problem(scale):
    """Why a cutout cannot be fetched at ``scale`` arcsec/pixel, or None."""
    if not scale >= MIN_SCALE_ARCSEC:
        return (f"needs {scale:.4g}\"/pixel, below the image service's {MIN_SCALE_ARCSEC:g}\"/pixel minimum "
                "(it would clamp the scale and show a wider field than asked for)")
    return None


SETTINGS_FILE = "settings.json"


def cache_settings(data_release, image_scale_factor, image_size):
    return {"data_release": data_release, "image_scale_factor": image_scale_factor, "image_size": image_size}


def check_cache_settings(cache_dir, settings):
    """Refuse (ValueError, before any request) a cache made with other settings."""
    path = Path(cache_dir) / SETTINGS_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is unreadable; delete {cache_dir} to start a fresh cutout cache") from None
    if recorded != settings:
        raise UsageError(
            f"{cache_dir} holds cutouts made with {recorded}, but this run asks for {settings}; "
            "choose another out_dir or delete that cutouts folder"
        )


def download_cutouts(catalogue, cache_dir, *, data_release, image_scale_factor, image_size, workers,
                     radius_column="petroR90_g"):
    """Make sure ``cache_dir/<objid>.jpg`` holds a cutout for every catalogue row.

    ``catalogue`` needs objid (text), ra, dec and ``radius_column`` (arcsec);
    each cutout is ``image_scale_factor x radius`` arcsec/pixel. Returns a
    :class:`CutoutReport`; prints a progress bar and a final summary line.
    """
    cache_dir = Path(cache_dir)
    settings = cache_settings(data_release, image_scale_factor, image_size)
    check_cache_settings(cache_dir, settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    storage.write_text_atomic(cache_dir / SETTINGS_FILE, json.dumps(settings))
    report = CutoutReport()
    missing = []
    for objid, ra, dec, radius in catalogue[["objid", "ra", "dec", radius_column]].itertuples(index=False):
        path = cutout_path(cache_dir, objid)
        scale = cutout_scale(radius, image_scale_factor)
        problem = scale_problem(scale)
        if problem:
            report.failures[objid] = (problem, True)
            report.below_minimum_scale += 1
        elif is_cached(path, image_size):
            report.from_cache += 1
        else:
            request = skyserver.build_cutout_request(ra, dec, scale, image_size, data_release)
            missing.append((objid, request, path))
    if missing:
        _download(missing, image_size, workers, report, total=len(catalogue))
    print(report.summary())
    return report


def _download(missing, image_size, workers, report, total):
    limiter = skyserver.RateLimiter(config.max_requests_per_second())
    stop = threading.Event()
    session = skyserver.make_session(pool_size=workers)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cutout")
    try:
        futures = {
            executor.submit(_fetch_and_cache, session, limiter, stop, request, path, image_size): objid
            for objid, request, path in missing
        }
        done = total - len(missing)
        with tqdm(total=total, initial=done, desc="cutouts", unit="img") as progress:
            for future in as_completed(futures):
                try:
                    future.result()
                    report.downloaded += 1
                except SDSSQueryError as error:
                    report.failures[futures[future]] = (str(error), not error.transient)
                progress.update()
    except BaseException:
        # Ctrl-C or a bug: drop the queued downloads, let the running ones finish
        # their (atomic) write, so the cache holds only complete cutouts.
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        executor.shutdown(wait=True)
        session.close()


def _fetch_and_cache(session, limiter, stop, request, path, image_size):
    body = skyserver.fetch_cutout(session, request, image_size, limiter=limiter, stop=stop)
    storage.write_bytes_atomic(path, body)
