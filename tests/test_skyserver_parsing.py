"""Building and parsing SDSS requests, on canned replies from tests/data/.

Each canned file is a literal reply shape from ../shared/sdss/PROTOCOL.md; the
parsers must turn data into data and every error shape into SDSSQueryError
with the service's own message.
"""

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from galaxy_classification.errors import CutoutBodyError, SDSSQueryError
from galaxy_classification.sdss import catalogue, skyserver
from galaxy_classification.sdss.label_rules import GALAXY_ZOO, LIKELIHOOD

DATA = Path(__file__).resolve().parent / "data"
BIG_SPECOBJID = 10133099161583616000


def canned_text(name):
    return (DATA / name).read_text()


def canned_bytes(name):
    return (DATA / name).read_bytes()


# --- SkyServer SqlSearch -----------------------------------------------------------


def test_sql_search_csv_skips_exactly_the_table_line_and_keeps_ids_as_text():
    columns, rows = skyserver.parse_sql_search_response(200, "text/plain", canned_text("sqlsearch_galaxies.csv"))
    frame = catalogue.rows_to_frame(columns, rows)
    assert len(frame) == 2
    assert frame.loc[0, "specObjID"] == str(BIG_SPECOBJID)
    assert frame.loc[0, "objid"] == "1237648720693755918"
    assert frame["ra"].dtype == float and frame.loc[1, "lnLDeV_g"] == -2500.0


def test_sql_search_with_zero_rows_returns_only_the_header():
    columns, rows = skyserver.parse_sql_search_response(200, "text/plain", canned_text("sqlsearch_empty.csv"))
    assert columns == ["objid", "ra", "dec"] and rows == []


@pytest.mark.parametrize("name, status, content_type, message, transient", [
    ("sqlsearch_error_message.csv", 200, "text/plain", "must be a select statement: DROP TABLE foo", False),
    ("sqlsearch_limit.csv", 200, "text/plain", "limit is  top 500000", False),
    ("sqlsearch_sql_error.json", 500, "application/json; charset=utf-8", "Invalid column name 'foo'.", False),
    ("sqlsearch_missing_cmd.json", 400, "application/json; charset=utf-8", "not enough parameters", False),
    ("maintenance_503.html", 503, "text/html", "503 Service Unavailable No server is available", True),
    ("maintenance_503.html", 200, "text/plain", "No server is available", True),  # an HTML body is never data
    ("skyserver_error_200.html", 200, "text/html", "Skyserver Error", True),
    ("skyserver_busy_200.html", 200, "text/html", "try again later", True),
    ("sqlsearch_query_limit.csv", 200, "text/plain", "Maximum 60 queries allowed per minute", True),
])
def test_sql_search_errors_raise_with_the_service_message(name, status, content_type, message, transient):
    with pytest.raises(SDSSQueryError, match=message) as raised:
        skyserver.parse_sql_search_response(status, content_type, canned_text(name))
    assert raised.value.status_code == status
    assert raised.value.transient is transient


def test_the_query_limit_refusal_waits_a_whole_window(monkeypatch):
    monkeypatch.delenv("SDSS_QUERY_WINDOW", raising=False)
    with pytest.raises(SDSSQueryError, match="waiting the whole 60 s window") as raised:
        skyserver.parse_sql_search_response(200, "text/plain", canned_text("sqlsearch_query_limit.csv"))
    assert raised.value.retry_after == 60


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_busy_statuses_are_transient_and_retry_after_is_read(status):
    with pytest.raises(SDSSQueryError) as raised:
        skyserver.parse_sql_search_response(status, "text/plain", "busy", {"Retry-After": "7"})
    assert raised.value.transient and raised.value.retry_after == 7


def test_sql_travels_url_encoded_in_the_query_string():
    sql = "SELECT TOP 1 u+g AS colour FROM Galaxy WHERE name = '#1' AND a < b & c"
    prepared = skyserver.build_sql_search_request(sql, "DR17").prepare()
    parts = urlsplit(prepared.url)
    assert parts.path == "/DR17/SkyServerWS/SearchTools/SqlSearch"
    assert "%2B" in parts.query and "%23" in parts.query and "%26" in parts.query
    assert parse_qs(parts.query) == {"cmd": [sql], "format": ["csv"]}
    assert prepared.method == "GET"


# --- CasJobs ---------------------------------------------------------------------------


def test_casjobs_json_result_keeps_big_integers_exact():
    columns, rows = skyserver.parse_casjobs_response(200, "application/json", canned_text("casjobs_galaxies.json"))
    frame = catalogue.rows_to_frame(columns, rows)
    assert frame.loc[0, "specObjID"] == str(BIG_SPECOBJID)
    assert frame.loc[1, "specObjID"] == "299489677444933632"
    assert frame.loc[0, "objid"] == "1237648720693755918"


def test_casjobs_sql_error_and_expired_token_raise_with_the_service_message():
    with pytest.raises(SDSSQueryError, match="Invalid column name 'foo'") as raised:
        skyserver.parse_casjobs_response(500, "application/json", canned_text("casjobs_error.json"))
    assert not raised.value.transient
    with pytest.raises(SDSSQueryError, match="401.*SCISERVER_TOKEN"):
        skyserver.parse_casjobs_response(401, "application/json", canned_text("casjobs_unauthorized.json"))
    with pytest.raises(SDSSQueryError, match="No server is available"):
        skyserver.parse_casjobs_response(200, "text/html", canned_text("maintenance_503.html"))


def test_casjobs_request_goes_to_the_release_context_with_the_token_header():
    token = skyserver.SciServerToken("gAAAAAsecret")
    request = skyserver.build_casjobs_request("SELECT 1", "DR16", token).prepare()
    assert request.method == "POST"
    assert request.url.endswith("/CasJobs/RestApi/contexts/DR16/query")
    assert request.headers["X-Auth-Token"] == "gAAAAAsecret"
    assert b'"Query": "SELECT 1"' in request.body


def test_an_id_that_arrived_as_a_float_is_refused_not_rounded():
    with pytest.raises(ValueError, match="specObjID.*CAST"):
        catalogue.rows_to_frame(["objid", "specObjID"], [["1", 1.0133099161583616e19]])


# --- login --------------------------------------------------------------------------------


def test_login_token_comes_from_the_x_subject_token_header_or_else_the_body():
    token = skyserver.parse_login_response(200, {"X-Subject-Token": "gAAAAAheader"}, "gAAAAAbody", "alice")
    assert token.reveal() == "gAAAAAheader"
    assert skyserver.parse_login_response(200, {}, "gAAAAAbody\n", "alice").reveal() == "gAAAAAbody"
    with pytest.raises(SDSSQueryError, match="no token"):
        skyserver.parse_login_response(200, {}, "<html>login page</html>", "alice")


@pytest.mark.parametrize("name, message", [
    ("login_rejected.json", "401 Unauthorized"),
    ("login_locked.json", "Maximum number of login attempts reached"),
    ("login_bad_body.json", "could not be parsed"),
])
def test_a_refused_login_says_the_account_locks_and_is_not_retried(name, message):
    with pytest.raises(SDSSQueryError, match=message) as raised:
        skyserver.parse_login_response(500, {}, canned_text(name), "alice")
    assert "locks" in str(raised.value) and "not retried" in str(raised.value)


def test_login_request_body_and_path():
    request = skyserver.build_login_request("alice", "s3cret").prepare()
    assert request.method == "POST" and request.url.endswith("/login-portal/keystone/v3/tokens")
    assert b'"name": "alice"' in request.body and b'"password": "s3cret"' in request.body


def test_urllib3_sends_every_request_once_so_only_the_classifier_retries():
    retry = skyserver.make_session().get_adapter("https://skyserver.sdss.org").max_retries
    assert retry.total == 0 and retry.read is False


# --- cutouts -----------------------------------------------------------------------------


def test_cutout_request_asks_for_a_square_image_without_overlays():
    prepared = skyserver.build_cutout_request(197.614455642896, 18.438168853724, 0.0512, 512, "DR15").prepare()
    parts = urlsplit(prepared.url)
    assert parts.path == "/DR15/SkyServerWS/ImgCutout/getjpeg"
    assert parse_qs(parts.query, keep_blank_values=True) == {
        "ra": ["197.614455642896"], "dec": ["18.438168853724"], "scale": ["0.0512"],
        "width": ["512"], "height": ["512"], "opt": [""]}


def test_cutout_jpeg_decodes_to_size_by_size_by_three():
    pixels = skyserver.parse_cutout_response(200, "OK", "image/jpeg", canned_bytes("cutout_64.jpg"), 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype.name == "uint8"


def test_a_404_with_a_jpeg_body_is_a_permanent_failure_not_an_image():
    with pytest.raises(SDSSQueryError, match="outside the SDSS footprint") as raised:
        skyserver.parse_cutout_response(404, "NOT FOUND. Requested (ra, dec) is outside the SDSS footprint.",
                                        "image/jpeg", canned_bytes("cutout_outside_footprint.jpg"), 64)
    assert not raised.value.transient


def test_a_clamped_cutout_of_the_wrong_size_is_refused():
    with pytest.raises(SDSSQueryError, match="64x64 pixels, asked for 128x128") as raised:
        skyserver.parse_cutout_response(200, "OK", "image/jpeg", canned_bytes("cutout_64.jpg"), 128)
    assert not raised.value.transient


@pytest.mark.parametrize("body", [
    canned_bytes("cutout_64.jpg")[:300],  # cut off mid-body
    b"\xff\xd8\xff\xe0 not really a jpeg",
])
def test_a_body_that_is_not_a_complete_jpeg_is_worth_retrying(body):
    with pytest.raises(CutoutBodyError) as raised:
        skyserver.parse_cutout_response(200, "OK", "image/jpeg", body, 64)
    assert raised.value.transient


def test_an_html_page_instead_of_a_cutout_is_worth_retrying_whatever_its_status_but_404():
    for status in (200, 500, 503):
        with pytest.raises(SDSSQueryError, match="HTML page") as raised:
            skyserver.parse_cutout_response(status, "x", "text/html", canned_bytes("maintenance_503.html"), 64)
        assert raised.value.transient and raised.value.max_retries is None


def test_an_html_404_page_is_final_and_names_the_address():
    url = "https://skyserver.sdss.org/DR9/SkyServerWS/ImgCutout/getjpeg"
    for parse in (lambda: skyserver.parse_cutout_response(404, "Not Found", "text/html", canned_bytes("iis_404.html"),
                                                          64, url=url),
                  lambda: skyserver.parse_sql_search_response(404, "text/html", canned_text("iis_404.html"), url=url)):
        with pytest.raises(SDSSQueryError, match="no such page at " + re.escape(url)) as raised:
            parse()
        assert not raised.value.transient and "DR12 to DR19" in str(raised.value)


@pytest.mark.parametrize("message", [
    "Transaction (Process ID 73) was deadlocked on lock resources with another process and has been chosen as the "
    "deadlock victim. Rerun the transaction.",
    "Execution Timeout Expired.  The timeout period elapsed prior to completion of the operation or the server is "
    "not responding.",
    "A network-related or instance-specific error occurred while establishing a connection to SQL Server.",
    "The server is too busy. Please try again later.",
])
def test_sql_servers_passing_hiccups_are_transient_a_bounded_few_times(message):
    body = json.dumps({"ErrorCode": 500, "ErrorType": "InternalServerError", "ErrorMessage": message})
    for parse in (lambda: skyserver.parse_sql_search_response(500, "application/json", body),
                  lambda: skyserver.parse_casjobs_response(500, "application/json", json.dumps({"Error Message": message})),
                  lambda: skyserver.parse_cutout_response(500, "InternalServerError", "application/json",
                                                          body.encode(), 64)):
        with pytest.raises(SDSSQueryError) as raised:
            parse()
        assert raised.value.transient and raised.value.max_retries == skyserver.BOUNDED_RETRIES


@pytest.mark.parametrize("message", ["Invalid column name 'foo'.", "Incorrect syntax near 'FROM'.",
                                     "Conversion failed when converting the varchar value 'x' to data type int."])
def test_a_query_at_fault_stays_final(message):
    body = json.dumps({"ErrorCode": 500, "ErrorType": "InternalServerError", "ErrorMessage": message})
    with pytest.raises(SDSSQueryError, match=re.escape(message)) as raised:
        skyserver.parse_sql_search_response(500, "application/json", body)
    assert not raised.value.transient


def test_an_unescaped_quote_in_a_csv_reply_names_its_line():
    text = '#Table1\nobjid,name,ra\n1237648720693755918,plain,150.1\n1237648720693755919,"a "quoted" word",150.2\n'
    with pytest.raises(SDSSQueryError, match="line 4"):
        skyserver.parse_sql_search_response(200, "text/plain", text)


def test_replies_are_read_as_utf8_whatever_the_headers_say():
    class Reply:
        content = "#Table1\nname\nÅngström\n".encode()

    assert skyserver.reply_text(Reply()) == "#Table1\nname\nÅngström\n"


def test_a_drawing_failure_is_retried_only_a_bounded_few_times():
    with pytest.raises(SDSSQueryError, match="Drawing the image failed") as raised:
        skyserver.parse_cutout_response(500, "INTERNAL SERVER ERROR. Drawing the image failed.", "image/jpeg",
                                        canned_bytes("cutout_64.jpg"), 64)
    assert raised.value.transient and raised.value.max_retries == skyserver.BOUNDED_RETRIES


def test_cutout_400_and_5xx_carry_the_service_message():
    with pytest.raises(SDSSQueryError, match="ra must be in") as raised:
        skyserver.parse_cutout_response(400, "BadRequest", "application/json", canned_bytes("getjpeg_bad_ra.json"), 64)
    assert not raised.value.transient
    with pytest.raises(SDSSQueryError, match="503") as raised:
        skyserver.parse_cutout_response(503, "Service Unavailable", "text/html", canned_bytes("maintenance_503.html"), 64)
    assert raised.value.transient


# --- catalogue SQL ---------------------------------------------------------------------


def sample(**changes):
    from galaxy_classification.sdss.parameters import validate_sample_parameters

    values = dict(n_galaxies=9, galaxy_type="both", lower_z_limit=0.1, upper_z_limit=0.3, lower_flux_limit=50,
                  upper_flux_limit=500, data_release="dr15", image_data=True, image_scale_factor=0.01)
    values.update(changes)
    return validate_sample_parameters(**values)


def test_both_means_one_query_per_class_half_each_with_the_class_test_parenthesised():
    import sdss_query

    queries = catalogue.class_queries(sample(), sdss_query.SQL_Query, LIKELIHOOD)
    assert [(query.label, query.n_galaxies) for query in queries] == [(0, 5), (1, 4)]
    spiral_sql, elliptical_sql = (query.sql for query in queries)
    assert spiral_sql.startswith("SELECT TOP 5 g.objID") and elliptical_sql.startswith("SELECT TOP 4 g.objID")
    assert spiral_sql.endswith(f"AND ({LIKELIHOOD.spiral_condition})")
    assert elliptical_sql.endswith(f"AND ({LIKELIHOOD.elliptical_condition})")
    for sql in (spiral_sql, elliptical_sql):
        assert "s.z BETWEEN 0.1 AND 0.3" in sql and "g.petroFlux_g BETWEEN 50.0 AND 500.0" in sql
        assert "AND g.petroR90_g > 0" in sql
        assert "lnLDeV_r" in sql and "lnLExp_r" in sql
        assert ";" not in sql and "--" not in sql and "UNION" not in sql.upper()
        assert "\n" not in sql and "  " not in sql  # one line: old databases refuse a break after TOP n
        assert "zooSpec" not in sql


def test_the_seed_conditions_are_sent_word_for_word():
    # the seed's sample definition (Steckler 2019): ellipticals in r, spirals in g
    assert LIKELIHOOD.elliptical_condition == ("g.lnLDeV_r > g.lnLExp_r + 0.1 AND g.lnLExp_r > -999.0 "
                                               "AND g.lnLDeV_g > -999.0")
    assert LIKELIHOOD.spiral_condition == "g.lnLDeV_g < -2000.0 AND g.lnLDeV_g + 0.1 < g.lnLExp_g"


def test_galaxy_zoo_queries_join_zoospec_and_exclude_uncertain_galaxies():
    import sdss_query

    queries = catalogue.class_queries(sample(galaxy_type="elliptical"), sdss_query.SQL_Query, GALAXY_ZOO)
    assert len(queries) == 1 and queries[0].label == 1 and queries[0].n_galaxies == 9
    sql = queries[0].sql
    assert "JOIN zooSpec AS zs ON zs.objid = g.objID" in sql
    assert "AND (zs.elliptical = 1 AND zs.spiral = 0 AND zs.uncertain = 0)" in sql
    assert "zs.spiral, zs.elliptical" in sql
    assert "zs.p_el_debiased, zs.p_cs_debiased, zs.nvote" in sql  # volunteer agreement travels along


def test_comments_in_an_edited_template_are_removed_but_strings_are_kept():
    template = ("SELECT TOP {n_galaxies} objid -- the id\n, 'a--b' AS tag /* note */ FROM Galaxy AS g\n"
                "WHERE ({class_condition})")
    sql = catalogue.class_queries(sample(galaxy_type="spiral"), template, LIKELIHOOD)[0].sql
    assert sql == f"SELECT TOP 9 objid , 'a--b' AS tag FROM Galaxy AS g WHERE ({LIKELIHOOD.spiral_condition})"


def test_a_users_own_sql_gets_the_same_checks_and_travels_on_one_line():
    [query] = catalogue.custom_query("SELECT TOP 5\n  objid, 'x  y' AS tag -- why\nFROM Galaxy /* c */ WHERE ra > 1")
    assert query.sql == "SELECT TOP 5 objid, 'x  y' AS tag FROM Galaxy WHERE ra > 1"
    for bad in ("WITH t AS (SELECT 1) SELECT * FROM t", "SELECT 1; DROP TABLE x",
                "SELECT objid FROM Galaxy UNION SELECT objid FROM Star", "-- note\n DELETE FROM x"):
        with pytest.raises(ValueError, match="^sql must"):
            catalogue.custom_query(bad)


def test_galaxy_zoo_needs_the_label_fields_in_the_template():
    template = "SELECT TOP {n_galaxies} objid FROM Galaxy AS g WHERE ({class_condition})"
    with pytest.raises(ValueError, match="label_columns.*label_join"):
        catalogue.class_queries(sample(), template, GALAXY_ZOO)


def test_galaxy_zoo_label_rule():
    import pandas as pd

    frame = pd.DataFrame({"spiral": [1, 0, 0, 1], "elliptical": [0, 1, 0, 0], "uncertain": [0, 0, 1, 1]})
    assert list(GALAXY_ZOO.labels(frame)) == [0, 1, -1, -1]


def test_column_names_are_normalised_to_the_project_spelling():
    assert catalogue.normalise_column_names(["OBJID", "specobjid", "PetroR90_G", "lnldev_g", "Z", "extra"]) == [
        "objid", "specObjID", "petroR90_g", "lnLDeV_g", "z", "extra"]


def test_service_message_reads_every_error_shape():
    assert skyserver.service_message('{"Error Message":"bad"}') == "bad"
    assert skyserver.service_message('{"ErrorMessage":"worse"}') == "worse"
    assert skyserver.service_message('{"error":{"message":"worst"}}') == "worst"
    assert skyserver.service_message("<html><body><h1>Oops</h1> down</body></html>") == "Oops down"
