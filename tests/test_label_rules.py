"""A label rule means the same thing in SQL and in Python.

The SQL that goes to SDSS and the local labeller (used on a user's own
``sql=`` rows and by the synthetic sky) must agree on every galaxy, above all
on those sitting right at a cut-off. The SQL side is evaluated by the loopback
fake's own little SQL engine, which knows nothing of the project's code.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

import sdss_query
from galaxy_classification import ELLIPTICAL, SPIRAL
from galaxy_classification.sdss import catalogue, label_rules, parameters
from galaxy_classification.sdss.label_rules import GALAXY_ZOO, LIKELIHOOD

from fake_sdss import _matches


def near(value, steps=(-0.5, -0.05, 0.0, 0.05, 0.5)):
    return [value + step for step in steps]


def rows_near_every_cut_off():
    """lnL values just below, at and just above each cut-off and each 0.1 margin."""
    rows = []
    for dev_g, exp_offset, dev_r_offset, exp_r in itertools.product(
            near(-2000.0) + near(-999.0) + [-300.0],
            (-0.15, -0.1, -0.05, 0.05, 0.1, 0.15),  # lnLExp_g - lnLDeV_g
            (-0.15, -0.1, -0.05, 0.05, 0.1, 0.15),  # lnLDeV_r - lnLExp_r
            near(-999.0) + [-300.0]):
        rows.append({"lnLDeV_g": dev_g, "lnLExp_g": dev_g + exp_offset,
                     "lnLDeV_r": exp_r + dev_r_offset, "lnLExp_r": exp_r})
    return pd.DataFrame(rows)


def sql_says(rule, label, row):
    galaxy = {name.lower(): value for name, value in row.items()}
    return _matches(galaxy, f"Galaxy AS g WHERE ({rule.condition(label)})")


def test_the_likelihood_labeller_agrees_with_its_sql_at_every_cut_off():
    table = rows_near_every_cut_off()
    labels = LIKELIHOOD.labels(table)
    for row, label in zip(table.to_dict("records"), labels):
        assert sql_says(LIKELIHOOD, SPIRAL, row) == (label == SPIRAL), row
        assert sql_says(LIKELIHOOD, ELLIPTICAL, row) == (label == ELLIPTICAL), row
    assert {SPIRAL, ELLIPTICAL, -1} == set(labels)  # the grid reaches all three outcomes


def test_the_seed_tests_ellipticals_in_r_and_spirals_in_g():
    # an elliptical by its r-band fits although its g-band fits would say disc
    r_band_elliptical = {"lnLDeV_g": -500.0, "lnLExp_g": -100.0, "lnLDeV_r": -50.0, "lnLExp_r": -400.0}
    # the g-band test alone would have called this one elliptical; the seed does not
    g_band_only = {"lnLDeV_g": -50.0, "lnLExp_g": -400.0, "lnLDeV_r": -500.0, "lnLExp_r": -100.0}
    spiral = {"lnLDeV_g": -2500.0, "lnLExp_g": -300.0, "lnLDeV_r": -2400.0, "lnLExp_r": -350.0}
    failed_r_fit = {"lnLDeV_g": -50.0, "lnLExp_g": -400.0, "lnLDeV_r": -50.0, "lnLExp_r": -999.5}
    table = pd.DataFrame([r_band_elliptical, g_band_only, spiral, failed_r_fit])
    assert list(LIKELIHOOD.labels(table)) == [ELLIPTICAL, -1, SPIRAL, -1]


def test_missing_values_get_no_label():
    table = pd.DataFrame({"lnLDeV_g": [None, -2500.0], "lnLExp_g": [-1.0, ""], "lnLDeV_r": [-1.0, -1.0],
                          "lnLExp_r": [-5.0, -5.0]})
    assert list(LIKELIHOOD.labels(table)) == [-1, -1]


def test_galaxy_zoo_flags_in_sql_and_python_agree():
    table = pd.DataFrame([{"spiral": s, "elliptical": e, "uncertain": u}
                          for s, e, u in itertools.product((0, 1), repeat=3)])
    labels = GALAXY_ZOO.labels(table)
    for row, label in zip(table.to_dict("records"), labels):
        galaxy = dict(row)
        assert _matches(galaxy, f"x WHERE ({GALAXY_ZOO.spiral_condition})") == (label == SPIRAL)
        assert _matches(galaxy, f"x WHERE ({GALAXY_ZOO.elliptical_condition})") == (label == ELLIPTICAL)


@pytest.mark.parametrize("rule", list(label_rules.LABEL_RULES.values()))
def test_every_rule_the_template_sends_selects_what_its_labeller_reads(rule):
    sample = parameters.validate_sample_parameters(4, "both", 0.1, 0.3, 50, 500, "DR15", True, 0.01)
    for query in catalogue.class_queries(sample, sdss_query.SQL_Query, rule):
        selected = {name.split(".")[-1].split(" AS ")[-1].lower()
                    for name in query.sql.split(" FROM ")[0].removeprefix(f"SELECT TOP {query.n_galaxies} ").split(", ")}
        assert {column.lower() for column in rule.columns} <= selected
        assert f"AND ({rule.condition(query.label)})" in query.sql


def test_an_unknown_rule_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="labels must be one of 'likelihood', 'galaxyzoo'"):
        label_rules.label_rule("zoo")
    assert np.array_equal(LIKELIHOOD.labels(pd.DataFrame(columns=list(LIKELIHOOD.columns))), [])
