"""The real-SDSS route of sdss_query.create_datafiles, against a loopback fake.

What a user relies on: both routes (SciServer login + CasJobs, and the
no-account SkyServer SQL search) and both label rules give aligned files;
service faults are retried or reported, never turned into data; a rerun after
Ctrl-C downloads only what is missing; a wrong password costs exactly one login
attempt; ids stay exact; bad input fails before any request; credentials never
leak into output, logs or files.
"""

import logging
import socket
import time

import numpy as np
import pandas as pd
import pytest
import requests

import sdss_query
from galaxy_classification.data import storage
from galaxy_classification.errors import SDSSQueryError, UsageError
from galaxy_classification.sdss import cutouts, skyserver

from fake_sdss import (
    BIG_OBJID,
    BIG_SPECOBJID,
    PASSWORD,
    TOKEN,
    USERNAME,
    FakeSDSS,
    make_sky,
    objid_colour,
    unused_address,
)

RETRIES = 3
IMAGE_SIZE = 64


@pytest.fixture
def fake(monkeypatch):
    server = FakeSDSS(make_sky(n_spiral=12, n_elliptical=12, n_uncertain=4)).start()
    point_client_at(server, monkeypatch)
    yield server
    server.stop()


def point_client_at(server, monkeypatch):
    monkeypatch.setenv("SDSS_SKYSERVER_URL", server.url)
    monkeypatch.setenv("SDSS_CASJOBS_URL", f"{server.url}/CasJobs/RestApi")
    monkeypatch.setenv("SCISERVER_LOGIN_URL", f"{server.url}/login-portal")
    monkeypatch.setenv("SDSS_RETRIES", str(RETRIES))
    monkeypatch.setenv("SDSS_BACKOFF_SECONDS", "0.005")
    monkeypatch.setenv("SDSS_MAX_RATE", "1000")
    monkeypatch.setenv("SDSS_TIMEOUT", "5")
    for variable in ("SCISERVER_TOKEN", "SCISERVER_USERNAME", "SCISERVER_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("SCISERVER_USERNAME", USERNAME)
    monkeypatch.setenv("SCISERVER_PASSWORD", PASSWORD)


def fetch(out_dir, n_galaxies=8, **options):
    options.setdefault("login", False)
    options.setdefault("image_size", IMAGE_SIZE)
    options.setdefault("workers", 4)
    return sdss_query.create_datafiles(n_galaxies, out_dir=out_dir, **options)


def read_outputs(out_dir):
    catalogue = storage.read_catalogue(out_dir / storage.CATALOGUE_FILE)
    images = np.load(out_dir / storage.IMAGES_FILE)
    labels = np.load(out_dir / storage.LABELS_FILE)
    return catalogue, images, labels


def assert_aligned(catalogue, images, labels):
    """Row i of the csv, image i and label i describe the same galaxy."""
    assert len(catalogue) == len(images) == len(labels)
    assert images.dtype == np.uint8 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
    for objid, image in zip(catalogue["objid"], images):
        assert np.abs(image.mean(axis=(0, 1)) - objid_colour(objid)).max() < 4, objid
    assert list(labels) == [{"spiral": 0, "elliptical": 1}[name] for name in catalogue["galaxy_type"]]


# --- happy paths ---------------------------------------------------------------------


@pytest.mark.parametrize("label_rule", ["likelihood", "galaxyzoo"])
@pytest.mark.parametrize("login", [False, True])
def test_both_routes_and_label_rules_give_a_balanced_aligned_sample(fake, credentials, tmp_path, login, label_rule):
    fetch(tmp_path, n_galaxies=8, login=login, labels=label_rule)

    catalogue, images, labels = read_outputs(tmp_path)
    assert_aligned(catalogue, images, labels)
    assert sorted(labels) == [0] * 4 + [1] * 4
    assert {"objid", "ra", "dec", "petroR90_g", "petroFlux_g", "specObjID", "lnLDeV_g", "lnLExp_g",
            "lnLDeV_r", "lnLExp_r", "z", "cutout_scale"} <= set(catalogue.columns)
    np.testing.assert_allclose(catalogue["cutout_scale"], 0.01 * catalogue["petroR90_g"])
    if label_rule == "galaxyzoo":
        assert {"p_el_debiased", "p_cs_debiased", "nvote"} <= set(catalogue.columns)
    assert fake.count("getjpeg") == 8
    if login:
        assert (fake.count("login"), fake.count("casjobs"), fake.count("sqlsearch")) == (1, 2, 0)
        assert all(request[3].get("X-Auth-Token") == TOKEN for request in fake.requests if request[0] == "casjobs")
    else:
        assert (fake.count("login"), fake.count("casjobs"), fake.count("sqlsearch")) == (0, 0, 2)
    assert pd.read_csv(tmp_path / "failed_cutouts.csv").empty


def test_galaxy_zoo_labels_come_from_the_flags_and_leave_out_uncertain_galaxies(fake, tmp_path):
    sql = ("SELECT TOP 100 g.objID, g.ra, g.dec, g.petroR90_g, zs.spiral, zs.elliptical, zs.uncertain "
           "FROM Galaxy AS g JOIN zooSpec AS zs ON zs.objid = g.objID")
    fetch(tmp_path, sql=sql, labels="galaxyzoo")

    catalogue, images, labels = read_outputs(tmp_path)
    assert_aligned(catalogue, images, labels)
    assert len(catalogue) == 24  # 12 spirals + 12 ellipticals; the 4 uncertain ones are left out
    truth = {str(galaxy["objid"]): galaxy["elliptical"] for galaxy in fake.galaxies}
    assert list(labels) == [truth[objid] for objid in catalogue["objid"]]


def test_token_from_the_environment_needs_no_login_request(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("SCISERVER_TOKEN", TOKEN)
    fetch(tmp_path, n_galaxies=4, login=True, image_data=False)
    assert fake.count("login") == 0 and fake.count("casjobs") == 2
    assert not (tmp_path / storage.IMAGES_FILE).exists()
    assert len(np.load(tmp_path / storage.LABELS_FILE)) == 4


@pytest.mark.parametrize("login", [False, True])
def test_spec_obj_id_above_two_to_the_63_round_trips_exactly(fake, credentials, tmp_path, login):
    # without CAST, CasJobs sends specObjID as a bare JSON integer above 2^63
    sql = ("SELECT TOP 30 g.objID, g.ra, g.dec, g.petroR90_g, g.lnLDeV_g, g.lnLExp_g, g.lnLDeV_r, g.lnLExp_r, "
           "s.specObjID "
           "FROM Galaxy AS g JOIN SpecObj AS s ON s.bestObjID = g.objID")
    fetch(tmp_path, sql=sql, login=login)

    text = (tmp_path / storage.CATALOGUE_FILE).read_text()
    assert BIG_SPECOBJID in text and BIG_OBJID in text
    catalogue = storage.read_catalogue(tmp_path / storage.CATALOGUE_FILE)
    row = catalogue[catalogue["objid"] == BIG_OBJID].iloc[0]
    assert int(row["specObjID"]) == int(BIG_SPECOBJID) > 2**63
    expected = {str(galaxy["objid"]): str(galaxy["specobjid"]) for galaxy in fake.galaxies}
    assert list(catalogue["specObjID"]) == [expected[objid] for objid in catalogue["objid"]]


def test_custom_sql_column_names_are_matched_case_insensitively(fake, tmp_path):
    sql = ("SELECT TOP 6 g.OBJID, g.RA, g.DEC, g.PETROR90_G, g.LNLDEV_G, g.LNLEXP_G, g.LNLDEV_R, g.LNLEXP_R "
           "FROM Galaxy AS g")
    fetch(tmp_path, sql=sql)
    catalogue = storage.read_catalogue(tmp_path / storage.CATALOGUE_FILE)
    assert list(catalogue.columns[:8]) == ["objid", "ra", "dec", "petroR90_g", "lnLDeV_g", "lnLExp_g",
                                           "lnLDeV_r", "lnLExp_r"]


# --- faults ------------------------------------------------------------------------


@pytest.mark.parametrize("faults", [["503", "503"], ["429"], ["500", "503", "500"], ["drop"], ["notjpeg"],
                                    ["drop", "503", "notjpeg"]])
def test_transient_cutout_faults_are_retried_until_the_cutout_arrives(fake, tmp_path, faults):
    objid = BIG_OBJID  # the first elliptical: always in the sample
    fake.faults[objid] = list(faults)
    fetch(tmp_path, n_galaxies=8)

    catalogue, images, labels = read_outputs(tmp_path)
    assert_aligned(catalogue, images, labels)
    assert objid in set(catalogue["objid"]) and len(catalogue) == 8
    assert fake.cutout_requests[objid] == len(faults) + 1


def test_cutouts_that_keep_failing_are_left_out_of_all_three_files_and_listed(monkeypatch, tmp_path):
    server = FakeSDSS(make_sky(n_spiral=6, n_elliptical=6, n_outside=2)).start()
    try:
        point_client_at(server, monkeypatch)
        outside = {str(galaxy["objid"]) for galaxy in server.galaxies if galaxy["dec"] < -30}
        always_503 = str(server.galaxies[3]["objid"])
        server.sticky_faults[always_503] = "503"
        fetch(tmp_path, n_galaxies=8)
    finally:
        server.stop()

    catalogue, images, labels = read_outputs(tmp_path)
    assert_aligned(catalogue, images, labels)
    failed = pd.read_csv(tmp_path / "failed_cutouts.csv", dtype={"objid": str})
    assert set(failed["objid"]) == outside | {always_503}
    assert not set(failed["objid"]) & set(catalogue["objid"])
    assert len(catalogue) == 8 - 3
    reasons = dict(zip(failed["objid"], failed["reason"]))
    permanent = dict(zip(failed["objid"], failed["permanent"]))
    assert all("404" in reasons[objid] and "footprint" in reasons[objid] and permanent[objid] for objid in outside)
    assert "503" in reasons[always_503] and not permanent[always_503]
    assert all(server.cutout_requests[objid] == 1 for objid in outside)  # a 404 is not retried
    assert server.cutout_requests[always_503] == RETRIES + 1


def test_a_cutout_drawing_failure_is_retried_a_bounded_few_times_then_listed(fake, tmp_path):
    objid = BIG_OBJID
    fake.sticky_faults[objid] = "500"
    fetch(tmp_path, n_galaxies=8)
    failed = pd.read_csv(tmp_path / "failed_cutouts.csv", dtype={"objid": str})
    assert list(failed["objid"]) == [objid]
    assert "Drawing the image failed" in failed["reason"][0] and not failed["permanent"][0]
    assert fake.cutout_requests[objid] == min(skyserver.BOUNDED_RETRIES, RETRIES) + 1


def test_a_galaxy_too_small_for_the_services_minimum_scale_is_left_out_with_the_reason(monkeypatch, tmp_path, capsys):
    sky = make_sky(n_spiral=4, n_elliptical=4)
    tiny = sky[1]
    tiny["petror90_g"] = 1.2  # 0.01 x 1.2" = 0.012"/pixel, below the 0.015 the service clamps to
    server = FakeSDSS(sky).start()
    try:
        point_client_at(server, monkeypatch)
        fetch(tmp_path, n_galaxies=8)
    finally:
        server.stop()
    catalogue, images, labels = read_outputs(tmp_path)
    assert_aligned(catalogue, images, labels)
    assert str(tiny["objid"]) not in set(catalogue["objid"]) and len(catalogue) == 7
    failed = pd.read_csv(tmp_path / "failed_cutouts.csv", dtype={"objid": str})
    assert list(failed["objid"]) == [str(tiny["objid"])] and failed["permanent"][0]
    assert "0.015" in failed["reason"][0] and failed["cutout_scale"][0] == pytest.approx(0.012)
    assert server.cutout_requests[str(tiny["objid"])] == 0
    assert "1 of them need a scale below" in capsys.readouterr().out


def test_maintenance_page_is_retried_then_raised_with_the_service_message(fake, tmp_path):
    fake.sql_mode = "503"
    with pytest.raises(SDSSQueryError, match="503 Service Unavailable.*No server is available.*gave up after 4"):
        fetch(tmp_path)
    assert fake.count("sqlsearch") == RETRIES + 1
    assert not tmp_path.joinpath(storage.CATALOGUE_FILE).exists()


def test_an_html_page_with_status_200_that_never_ends_is_raised_not_turned_into_data(fake, tmp_path):
    fake.sql_mode = "html"
    with pytest.raises(SDSSQueryError, match="Skyserver Error"):
        fetch(tmp_path)
    assert fake.count("sqlsearch") == RETRIES + 1 and fake.count("getjpeg") == 0


@pytest.mark.parametrize("fault", ["html200", "drop", "503", "429", "limit", "deadlock", "timeout500", "network500"])
@pytest.mark.parametrize("login", [False, True])
def test_a_transient_failure_on_the_sql_path_is_retried_and_the_run_succeeds(
        fake, credentials, tmp_path, monkeypatch, capsys, login, fault):
    monkeypatch.setenv("SDSS_QUERY_WINDOW", "0.3")
    fake.retry_after_seconds = 1
    fake.sql_faults = [fault]
    started = time.monotonic()
    fetch(tmp_path, n_galaxies=8, login=login)
    elapsed = time.monotonic() - started

    assert_aligned(*read_outputs(tmp_path))
    sql_requests = fake.count("casjobs" if login else "sqlsearch")
    acted_out = not (login and fault == "limit")  # the per-minute refusal is SkyServer's only
    assert sql_requests == 2 + acted_out  # two class queries, one of them sent twice
    if fault == "429":
        assert elapsed >= 1.0  # Retry-After honoured
        assert "waiting" in capsys.readouterr().err
    if fault == "limit" and not login:
        assert elapsed >= 0.3  # a whole query window
        assert "60 queries a minute" in capsys.readouterr().err


@pytest.mark.parametrize("login", [False, True])
def test_sql_error_raises_after_one_request_with_the_service_message(fake, credentials, tmp_path, login):
    with pytest.raises(SDSSQueryError, match="Invalid column name 'foo'") as raised:
        fetch(tmp_path, sql="SELECT TOP 5 g.objID, g.foo FROM Galaxy AS g", login=login)
    assert fake.count("casjobs" if login else "sqlsearch") == 1
    assert "gave up" not in str(raised.value)


@pytest.mark.parametrize("login", [False, True])
def test_a_query_slower_than_the_sql_timeout_is_sent_once(fake, credentials, tmp_path, monkeypatch, login):
    monkeypatch.setenv("SDSS_SQL_TIMEOUT", "0.3")
    fake.slow_seconds = 1.5
    fake.sql_faults = ["slow"]
    with pytest.raises(SDSSQueryError, match="SDSS_SQL_TIMEOUT=0.3 s.*not sent again"):
        fetch(tmp_path, login=login)
    assert fake.count("casjobs" if login else "sqlsearch") == 1


def test_the_sql_timeout_is_separate_from_the_cutout_timeout(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("SDSS_TIMEOUT", "0.3")
    monkeypatch.setenv("SDSS_SQL_TIMEOUT", "5")
    fake.slow_seconds = 0.8
    fake.sql_faults = ["slow"]
    fetch(tmp_path, n_galaxies=4)  # a query slower than SDSS_TIMEOUT is fine
    assert fake.count("sqlsearch") == 2


def test_queries_travel_on_one_line_for_databases_that_refuse_a_break_after_top(fake, tmp_path):
    fake.old_database = True
    fetch(tmp_path, n_galaxies=4)
    sql = "SELECT TOP 6\n g.objID, g.ra, g.dec, g.petroR90_g, g.lnLDeV_g, g.lnLExp_g, g.lnLDeV_r, g.lnLExp_r\n" \
          "FROM Galaxy AS g -- every galaxy\nWHERE g.ra > 0"
    fetch(tmp_path / "own", sql=sql)
    assert len(read_outputs(tmp_path / "own")[0]) == 6


def test_a_row_the_filter_would_refuse_is_raised_after_one_request(fake, tmp_path):
    sql = "SELECT TOP 600000 g.objID, g.ra, g.dec, g.petroR90_g, g.lnLDeV_g, g.lnLExp_g FROM Galaxy AS g"
    with pytest.raises(SDSSQueryError, match="limit is  top 500000"):
        fetch(tmp_path, sql=sql)
    assert fake.count("sqlsearch") == 1


def test_a_users_own_sql_is_checked_locally_before_anything_is_sent(fake, tmp_path):
    with pytest.raises(ValueError, match="sql must start with SELECT"):
        fetch(tmp_path, sql="DROP TABLE galaxies")
    assert fake.count() == 0


def test_empty_result_suggests_wider_limits(fake, tmp_path):
    with pytest.raises(SDSSQueryError, match="wider limits"):
        fetch(tmp_path, lower_z_limit=2.0, upper_z_limit=3.0)
    assert not any(tmp_path.iterdir())


def test_custom_sql_missing_columns_are_named(fake, tmp_path):
    with pytest.raises(ValueError, match=r"petroR90_g, lnLDeV_g, lnLExp_g, lnLDeV_r, lnLExp_r"):
        fetch(tmp_path, sql="SELECT TOP 5 g.objID, g.ra, g.dec FROM Galaxy AS g")
    with pytest.raises(ValueError, match=r"spiral, elliptical"):
        fetch(tmp_path, sql="SELECT TOP 5 g.objID, g.ra, g.dec, g.petroR90_g FROM Galaxy AS g", labels="galaxyzoo")


# --- resume ------------------------------------------------------------------------


class InterruptedProgress:
    """A tqdm stand-in that presses Ctrl-C after a few cutouts."""

    def __init__(self, *args, after=3, **kwargs):
        self.updates, self.after = 0, after

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def update(self, n=1):
        self.updates += n
        if self.updates >= self.after:
            raise KeyboardInterrupt


def test_rerun_after_ctrl_c_downloads_only_the_missing_cutouts(fake, tmp_path, monkeypatch, capsys):
    previous = {name: b"previous data set" for name in (storage.CATALOGUE_FILE, storage.IMAGES_FILE)}
    for name, content in previous.items():
        (tmp_path / name).write_bytes(content)
    fake.latency = 0.02
    with monkeypatch.context() as patch:
        patch.setattr(cutouts, "tqdm", InterruptedProgress)
        with pytest.raises(KeyboardInterrupt):
            fetch(tmp_path, n_galaxies=16, workers=2)

    assert all((tmp_path / name).read_bytes() == content for name, content in previous.items())
    cutout_dir = tmp_path / "cutouts"
    cached = {path.stem for path in cutout_dir.glob("*.jpg")}
    assert 3 <= len(cached) < 16
    assert not list(cutout_dir.glob(".*.tmp"))
    first_run_requests = fake.count("getjpeg")
    fake.reset_counts()
    capsys.readouterr()

    fetch(tmp_path, n_galaxies=16, workers=2)

    assert fake.count("getjpeg") == 16 - len(cached)
    assert not cached & {objid for objid, count in fake.cutout_requests.items() if count}
    assert first_run_requests < 16
    assert f"{16 - len(cached)} downloaded, {len(cached)} from cache, 0 failed" in capsys.readouterr().out
    assert_aligned(*read_outputs(tmp_path))


def test_a_cutout_cache_of_another_scale_is_refused_before_any_request(fake, tmp_path):
    fetch(tmp_path, n_galaxies=4)
    fake.reset_counts()
    with pytest.raises(ValueError, match="image_scale_factor"):
        fetch(tmp_path, n_galaxies=4, image_scale_factor=0.02)
    assert fake.count() == 0


# --- login ---------------------------------------------------------------------------


def test_a_wrong_password_makes_exactly_one_login_request(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCISERVER_USERNAME", USERNAME)
    monkeypatch.setenv("SCISERVER_PASSWORD", "wrong-password-123")
    with pytest.raises(SDSSQueryError) as raised:
        fetch(tmp_path, login=True)
    message = str(raised.value)
    assert "locks" in message and "401 Unauthorized" in message
    assert "wrong-password-123" not in message + capsys.readouterr().out
    assert fake.count("login") == 1 and fake.count() == 1
    assert not any(tmp_path.iterdir())


def test_lockout_message_is_reported_without_retrying(fake, tmp_path, monkeypatch):
    fake.login_attempts[USERNAME] = 3  # three failures already today
    monkeypatch.setenv("SCISERVER_USERNAME", USERNAME)
    monkeypatch.setenv("SCISERVER_PASSWORD", PASSWORD)
    with pytest.raises(SDSSQueryError, match="Maximum number of login attempts"):
        fetch(tmp_path, login=True)
    assert fake.count("login") == 1


def test_in_a_terminal_the_password_is_asked_with_getpass_and_sent_once(fake, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(skyserver, "_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or USERNAME)
    monkeypatch.setattr(skyserver.getpass, "getpass", lambda prompt: asked.append(prompt) or PASSWORD)
    fetch(tmp_path, n_galaxies=4, login=True, image_data=False)
    assert len(asked) == 2 and "password" in asked[1]
    assert fake.count("login") == 1 and fake.count("casjobs") == 2


def test_an_expired_token_is_reported_not_replaced_by_a_new_login(fake, credentials, tmp_path, monkeypatch):
    monkeypatch.setenv("SCISERVER_TOKEN", "gAAAAAexpired")
    with pytest.raises(SDSSQueryError, match="401.*SCISERVER_TOKEN"):
        fetch(tmp_path, login=True)
    assert fake.count("login") == 0 and fake.count("casjobs") == 1


def test_no_credentials_and_no_terminal_fails_before_any_request(fake, tmp_path):
    with pytest.raises(SDSSQueryError, match="SCISERVER_TOKEN"):
        fetch(tmp_path, login=True)
    assert fake.count() == 0


def test_credentials_never_appear_in_output_logs_or_files(fake, credentials, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    fetch(tmp_path, n_galaxies=4, login=True)
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    files = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    for secret in (PASSWORD, TOKEN):
        assert secret not in text
        assert secret.encode() not in files
    assert fake.count("casjobs") == 2  # the token was used, just never shown


# --- bad input, dry run ------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"n_galaxies": 0}, {"galaxy_type": "spirals"}, {"lower_z_limit": 0.3, "upper_z_limit": 0.1},
    {"lower_flux_limit": "50"}, {"data_release": "15"}, {"data_release": "DR15; DROP TABLE x"},
    {"image_scale_factor": -1.0}, {"labels": "zoo"}, {"workers": 0}, {"login": "yes"},
    {"image_size": 32}, {"upper_z_limit": float("nan")}, {"source": "sdsss"}, {"sql": ""},
])
def test_bad_input_fails_before_any_request_or_file(fake, tmp_path, options):
    out_dir = tmp_path / "out"
    n_galaxies = options.pop("n_galaxies", 8)
    with pytest.raises(ValueError):
        fetch(out_dir, n_galaxies=n_galaxies, **options)
    assert fake.count() == 0
    assert not out_dir.exists()


@pytest.mark.parametrize("template", [
    "SELECT TOP {n_galaxies} objid FROM Galaxy WHERE ({class_condition}) UNION SELECT objid FROM Star",
    "SELECT TOP {n_galaxies} objid FROM Galaxy WHERE ({class_condition}); DROP TABLE x",
    "SELECT TOP {n_galaxies} objid FROM Galaxy WHERE {user_text} AND ({class_condition})",
    "SELECT objid FROM Galaxy",
])
def test_a_broken_sql_template_fails_before_any_request(fake, tmp_path, monkeypatch, template):
    monkeypatch.setattr(sdss_query, "SQL_Query", template)
    with pytest.raises(ValueError, match="SQL_Query"):
        fetch(tmp_path / "out")
    assert fake.count() == 0


def test_bad_environment_setting_fails_before_any_request(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("SDSS_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SDSS_TIMEOUT"):
        fetch(tmp_path / "out")
    assert fake.count() == 0


@pytest.mark.parametrize("login", [False, True])
def test_dry_run_prints_sql_and_urls_and_sends_nothing(fake, credentials, tmp_path, capsys, login):
    fetch(tmp_path / "out", login=login, dry_run=True)
    output = capsys.readouterr().out
    assert output.count("SELECT TOP 4") == 2
    assert "(g.lnLDeV_g < -2000.0 AND g.lnLDeV_g + 0.1 < g.lnLExp_g)" in output
    assert f"{fake.url}/DR15/SkyServerWS/ImgCutout/getjpeg?ra=" in output
    if login:
        assert f"{fake.url}/CasJobs/RestApi/contexts/DR15/query" in output
    else:
        assert f"{fake.url}/DR15/SkyServerWS/SearchTools/SqlSearch?cmd=SELECT+TOP+4" in output
    assert fake.count() == 0 and not (tmp_path / "out").exists()
    assert PASSWORD not in output


# --- concurrency, rate, command line ------------------------------------------------


def test_no_more_connections_than_workers_are_opened(fake):
    fake.latency = 0.02
    galaxies = pd.DataFrame([{"objid": str(g["objid"]), "ra": g["ra"], "dec": g["dec"],
                              "petroR90_g": g["petror90_g"]} for g in fake.galaxies])
    fake.reset_counts()
    import tempfile
    with tempfile.TemporaryDirectory() as cache_dir:
        report = cutouts.download_cutouts(galaxies, cache_dir, data_release="DR15", image_scale_factor=0.01,
                                          image_size=IMAGE_SIZE, workers=3)
    assert report.downloaded == len(galaxies) and not report.failures
    assert 1 <= fake.max_open_connections <= 3


def test_rate_limiter_spaces_requests_at_the_configured_rate(monkeypatch):
    clock = {"now": 100.0, "slept": 0.0}

    def sleep(seconds):
        clock["now"] += seconds
        clock["slept"] += seconds

    monkeypatch.setattr(skyserver.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(skyserver.time, "sleep", sleep)
    limiter = skyserver.RateLimiter(rate=10, burst=1)
    for _ in range(6):
        limiter.acquire()
    assert clock["slept"] == pytest.approx(0.5)  # the first is free, then one every 0.1 s


def test_command_line_prints_one_line_on_a_service_error(fake, tmp_path, capsys):
    fake.sql_mode = "html"
    status = sdss_query.main(["--no-login", "--n-galaxies", "4", "--image-size", "64", "--out", str(tmp_path)])
    error_output = capsys.readouterr().err
    assert status == 1
    assert error_output.startswith("error: SkyServer SQL search sent an HTML page") and error_output.count("\n") == 1


def test_command_line_offers_every_documented_flag(capsys):
    with pytest.raises(SystemExit):
        sdss_query.main(["--help"])
    help_text = capsys.readouterr().out
    for flag in ("--n-galaxies", "--galaxy-type", "--z-min", "--z-max", "--flux-min", "--flux-max",
                 "--data-release", "--scale-factor", "--no-images", "--no-login", "--labels", "--workers",
                 "--out", "--synthetic"):
        assert flag in help_text


def test_token_object_hides_its_value():
    token = skyserver.SciServerToken(TOKEN)
    assert TOKEN not in repr(token) + str(token) + f"{token}"
    assert token.reveal() == TOKEN


def test_a_deadlock_that_does_not_pass_is_given_up_after_a_bounded_few_tries(fake, tmp_path):
    fake.sql_faults = ["deadlock"] * 10
    with pytest.raises(SDSSQueryError, match="deadlock victim"):
        fetch(tmp_path)
    assert fake.count("sqlsearch") == min(skyserver.BOUNDED_RETRIES, RETRIES) + 1


def test_an_exception_in_the_image_service_is_retried_and_a_lasting_one_is_retried_by_a_rerun(fake, tmp_path):
    passing, lasting = BIG_OBJID, str(int(BIG_OBJID) + 1)
    fake.faults[passing] = ["json500"]
    fake.sticky_faults[lasting] = "json500"
    fetch(tmp_path, n_galaxies=8)
    failed = pd.read_csv(tmp_path / "failed_cutouts.csv", dtype={"objid": str})
    assert list(failed["objid"]) == [lasting] and not failed["permanent"][0]
    assert "deadlock victim" in failed["reason"][0]
    assert fake.cutout_requests[passing] == 2
    del fake.sticky_faults[lasting]
    fake.reset_counts()
    fetch(tmp_path, n_galaxies=8)  # the rerun fetches only what is missing
    assert fake.count("getjpeg") == 1 and fake.cutout_requests[lasting] == 1
    assert pd.read_csv(tmp_path / "failed_cutouts.csv").empty


@pytest.mark.parametrize("login", [False, True])
def test_an_html_404_page_is_tried_once_and_names_the_address(fake, credentials, tmp_path, monkeypatch, login):
    monkeypatch.setenv("SDSS_SKYSERVER_URL", f"{fake.url}/moved")
    monkeypatch.setenv("SDSS_CASJOBS_URL", f"{fake.url}/moved/CasJobs/RestApi")
    with pytest.raises(SDSSQueryError, match=f"no such page at {fake.url}/moved/") as raised:
        fetch(tmp_path, login=login)
    assert not raised.value.transient and fake.count("other") == 1
    assert not (tmp_path / storage.IMAGES_FILE).exists()


def test_a_service_that_cannot_be_reached_is_said_plainly_and_quickly(fake, tmp_path, monkeypatch):
    address = unused_address()
    monkeypatch.setenv("SDSS_SKYSERVER_URL", address)
    monkeypatch.setenv("SDSS_BACKOFF_SECONDS", "1")
    started = time.monotonic()
    with pytest.raises(SDSSQueryError) as raised:
        fetch(tmp_path)
    assert str(raised.value).startswith("cannot reach SDSS (connection refused)")
    assert "--synthetic" in str(raised.value) and f"{address}/DR15/SkyServerWS" in str(raised.value)
    assert time.monotonic() - started < 10  # a few seconds of retries, not a minute


def test_a_name_that_does_not_resolve_is_said_to_be_offline():
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    cause = NameResolutionError("skyserver.sdss.org", None, socket.gaierror(-3, "Temporary failure in name resolution"))
    error = requests.exceptions.ConnectionError(MaxRetryError(None, "/DR15/SkyServerWS", cause))
    assert "does not resolve" in skyserver._unreachable_reason(error)
    assert skyserver._unreachable_reason(requests.exceptions.ConnectionError("Connection reset by peer")) is None


@pytest.mark.parametrize("release, login, image_data, allowed", [
    ("DR99", False, True, False), ("DR9", False, True, False), ("DR11", True, True, False),
    ("DR9", True, False, True), ("DR12", False, True, True), ("DR19", True, True, True),
])
def test_a_release_is_checked_against_the_routes_that_serve_it_before_any_request(
        fake, credentials, tmp_path, release, login, image_data, allowed):
    if allowed:
        fetch(tmp_path, data_release=release, login=login, image_data=image_data)
        assert fake.count() > 0
        return
    with pytest.raises(UsageError, match=f"data_release {release}: .* serves DR") as raised:
        fetch(tmp_path, data_release=release, login=login, image_data=image_data)
    assert "Galaxy Zoo 1" in str(raised.value) and fake.count() == 0 and not tmp_path.joinpath("galaxy_data.csv").exists()
