"""The galaxy catalogue: which galaxies are spirals and which are ellipticals.

The likelihood rule (the project's default, ``labels='likelihood'``) compares
the de Vaucouleurs (bulge, n=4) and exponential (disc, n=1) profile fits of
each galaxy in the g band, as SDSS's photometric pipeline reports them:

- elliptical: both fits valid (ln L > -999) and the de Vaucouleurs fit is
  better by more than 0.1 in ln L;
- spiral: the de Vaucouleurs fit is hopeless (ln L < -2000) and the
  exponential fit is better by more than 0.1.

The two tests are disjoint; galaxies passing neither are not in the sample.
``labels='galaxyzoo'`` uses the Galaxy Zoo 1 debiased flags instead
(``zooSpec.spiral`` / ``zooSpec.elliptical``; uncertain galaxies are left out).
The same conditions appear in SQL (``SPIRAL_CONDITION``/``ELLIPTICAL_CONDITION``)
and in Python (:func:`likelihood_labels`), so the synthetic sky and the SDSS
query agree on what a label means.

This module also builds the catalogue SQL from the ``SQL_Query`` template and
turns service rows into a DataFrame whose 64-bit ids stay exact text.
"""

import re
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import CLASS_NAMES, ELLIPTICAL, SPIRAL
from .parameters import class_counts

ELLIPTICAL_CONDITION = "g.lnLDeV_g > -999.0 AND g.lnLExp_g > -999.0 AND g.lnLDeV_g > g.lnLExp_g + 0.1"
SPIRAL_CONDITION = "g.lnLDeV_g < -2000.0 AND g.lnLDeV_g + 0.1 < g.lnLExp_g"


def likelihood_labels(catalogue):
    """Labels from the lnLDeV_g / lnLExp_g columns: 0 spiral, 1 elliptical, -1 neither."""
    deV = catalogue["lnLDeV_g"].to_numpy(dtype=float)
    exp = catalogue["lnLExp_g"].to_numpy(dtype=float)
    elliptical = (deV > -999.0) & (exp > -999.0) & (deV > exp + 0.1)
    spiral = (deV < -2000.0) & (deV + 0.1 < exp)
    labels = np.full(len(catalogue), -1, dtype=np.int64)
    labels[elliptical] = ELLIPTICAL
    labels[spiral] = SPIRAL
    return labels


# --- SQL -------------------------------------------------------------------------
#
# The sample is asked for with one query per class (never UNION: the SkyServer
# filter refuses it), so galaxy_type='both' gets exactly half spirals and half
# ellipticals when the sky has enough of each. The template (sdss_query.SQL_Query)
# is filled only with validated numbers and the whitelisted fragments below.

GALAXY_ZOO_COLUMNS = ", zs.spiral, zs.elliptical, zs.uncertain, zs.p_cs_debiased, zs.p_el_debiased"
GALAXY_ZOO_JOIN = "\n  JOIN zooSpec AS zs ON zs.objid = g.objID"
GALAXY_ZOO_SPIRAL_CONDITION = "zs.spiral = 1 AND zs.elliptical = 0 AND zs.uncertain = 0"
GALAXY_ZOO_ELLIPTICAL_CONDITION = "zs.elliptical = 1 AND zs.spiral = 0 AND zs.uncertain = 0"

CLASS_CONDITIONS = {
    ("likelihood", SPIRAL): SPIRAL_CONDITION,
    ("likelihood", ELLIPTICAL): ELLIPTICAL_CONDITION,
    ("galaxyzoo", SPIRAL): GALAXY_ZOO_SPIRAL_CONDITION,
    ("galaxyzoo", ELLIPTICAL): GALAXY_ZOO_ELLIPTICAL_CONDITION,
}
LABEL_FIELDS = {"likelihood": {"label_columns": "", "label_join": ""},
                "galaxyzoo": {"label_columns": GALAXY_ZOO_COLUMNS, "label_join": GALAXY_ZOO_JOIN}}
NUMBER_FIELDS = ("n_galaxies", "lower_z_limit", "upper_z_limit", "lower_flux_limit", "upper_flux_limit")
TEMPLATE_FIELDS = (*NUMBER_FIELDS, "class_condition", "label_columns", "label_join")

PROJECT_COLUMNS = ("objid", "ra", "dec", "petroR90_g", "petroFlux_g", "specObjID", "lnLDeV_g", "lnLExp_g", "z")
REQUIRED_COLUMNS = ("objid", "ra", "dec", "petroR90_g")
LABEL_RULE_COLUMNS = {"likelihood": ("lnLDeV_g", "lnLExp_g"), "galaxyzoo": ("spiral", "elliptical")}

_SQL_COMMENT_OR_STRING = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class ClassQuery:
    """One catalogue query: ``n_galaxies`` of class ``label`` (None: the user's own query)."""

    label: object
    n_galaxies: int
    sql: str

    @property
    def description(self):
        if self.label is None:
            return "your sql= query"
        return f"{self.n_galaxies} {CLASS_NAMES[self.label]}s"


def class_queries(sample, sql_template, label_rule):
    """The catalogue queries for a validated sample: one per class asked for."""
    fields = _template_fields(sql_template, label_rule)
    n_spiral, n_elliptical = class_counts(sample.n_galaxies, sample.galaxy_type)
    queries = []
    for label, count in ((SPIRAL, n_spiral), (ELLIPTICAL, n_elliptical)):
        if count == 0:
            continue
        values = {
            "n_galaxies": count,
            "lower_z_limit": sample.lower_z_limit, "upper_z_limit": sample.upper_z_limit,
            "lower_flux_limit": sample.lower_flux_limit, "upper_flux_limit": sample.upper_flux_limit,
            "class_condition": CLASS_CONDITIONS[label_rule, label],
            **LABEL_FIELDS[label_rule],
        }
        sql = strip_sql_comments(sql_template.format(**{name: values[name] for name in fields}))
        check_sql_search_filter(sql)
        queries.append(ClassQuery(label, count, sql))
    return queries


def custom_query(sql):
    """The user's own ``sql=`` text, sent as it is: it is their query."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError(f"sql must be the text of a SELECT query, got {sql!r}")
    return [ClassQuery(None, 0, sql.strip())]


def _template_fields(sql_template, label_rule):
    if not isinstance(sql_template, str) or not sql_template.strip():
        raise ValueError(f"SQL_Query must be the text of a SELECT query, got {sql_template!r}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(sql_template) if name is not None}
    except ValueError as error:
        raise ValueError(f"SQL_Query is not a valid template ({error}); write literal braces as {{{{ }}}}") from None
    unknown = sorted(fields - set(TEMPLATE_FIELDS))
    if unknown:
        raise ValueError(f"SQL_Query uses unknown fields {unknown}; allowed: {', '.join(TEMPLATE_FIELDS)}")
    needed = {"n_galaxies", "class_condition"} | ({"label_columns", "label_join"} if label_rule == "galaxyzoo" else set())
    missing = sorted(needed - fields)
    if missing:
        raise ValueError(f"SQL_Query must contain the fields {', '.join('{' + m + '}' for m in missing)} "
                         f"(needed for labels={label_rule!r})")
    return fields


def strip_sql_comments(sql):
    """Remove ``--`` and ``/* */`` comments (not inside quotes) and blank lines.

    SkyServer deletes a ``--`` comment up to the end of the line; in SQL that
    travels joined onto one line that would swallow the rest of the query.
    """
    def keep_strings(match):
        return match.group(0) if match.group(0).startswith("'") else " "

    without_comments = _SQL_COMMENT_OR_STRING.sub(keep_strings, sql)
    lines = (line.strip() for line in without_comments.splitlines())
    return "\n".join(line for line in lines if line)


def check_sql_search_filter(sql):
    """Refuse SQL the SkyServer filter would mangle: it must start with SELECT,
    and ';' or UNION would be cut into a syntax error."""
    if not re.match(r"select\s", sql, re.I):
        raise ValueError("SQL_Query must start with SELECT (no WITH, no leading comment)")
    if ";" in sql:
        raise ValueError("SQL_Query must be a single statement without ';'")
    if re.search(r"\bunion\b", sql, re.I):
        raise ValueError("SQL_Query must not use UNION: the project runs one query per class instead")


# --- parsing ---------------------------------------------------------------------


def normalise_column_names(columns):
    """Service spellings (objID, specobjid, LNLDEV_G, ...) -> the project's spelling."""
    spelling = {name.lower(): name for name in PROJECT_COLUMNS}
    return [spelling.get(str(column).strip().lower(), str(column).strip()) for column in columns]


def missing_columns(catalogue, label_rule):
    return [name for name in (*REQUIRED_COLUMNS, *LABEL_RULE_COLUMNS[label_rule]) if name not in catalogue.columns]


def rows_to_frame(columns, rows):
    """A DataFrame from service rows. Id columns (objid, specObjID, any name
    ending in 'id') stay exact text: specObjID can exceed 2^63."""
    frame = pd.DataFrame(rows, columns=normalise_column_names(columns), dtype=object)
    for column in frame.columns:
        if column.lower().endswith("id"):
            frame[column] = [_exact_id_text(column, value) for value in frame[column]]
        else:
            frame[column] = _numbers_if_possible(frame[column])
    return frame


def _exact_id_text(column, value):
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return ""
    if isinstance(value, float):
        # a double has 53 bits: an 18-20 digit id in one has already lost digits
        raise ValueError(f"column {column} arrived as a floating-point number ({value!r}) and its exact value is "
                         "lost; select it as CAST(... AS VARCHAR(20))")
    return str(value).strip()


def _numbers_if_possible(values):
    present = values.map(lambda value: value is not None and str(value).strip() != "")
    numbers = pd.to_numeric(values.where(present), errors="coerce")
    return numbers if numbers.notna().sum() == present.sum() else values


def galaxy_zoo_labels(catalogue):
    """Labels from the Galaxy Zoo 1 debiased flags: 0 spiral, 1 elliptical,
    -1 uncertain (or both flags, which the flags' definition rules out)."""
    def flag(name):
        if name not in catalogue.columns:
            return np.zeros(len(catalogue), dtype=bool)
        return pd.to_numeric(catalogue[name], errors="coerce").fillna(0).to_numpy() == 1

    spiral, elliptical, uncertain = flag("spiral"), flag("elliptical"), flag("uncertain")
    labels = np.full(len(catalogue), -1, dtype=np.int64)
    labels[spiral & ~elliptical & ~uncertain] = SPIRAL
    labels[elliptical & ~spiral & ~uncertain] = ELLIPTICAL
    return labels


LABEL_RULES = {"likelihood": likelihood_labels, "galaxyzoo": galaxy_zoo_labels}
