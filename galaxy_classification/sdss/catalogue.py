"""The galaxy catalogue: the SQL that asks for it and the table that comes back.

The sample is asked for with one query per class (never UNION: the SkyServer
filter refuses it), so galaxy_type='both' gets exactly half spirals and half
ellipticals when the sky has enough of each. The ``SQL_Query`` template
(``sdss_query.py``) is filled only with validated numbers and the SQL of a
:class:`label_rules.LabelRule`, then sent as one line without comments, as
astroquery does: older SkyServer databases refuse a line break after ``TOP n``,
and SkyServer deletes a ``--`` comment up to the end of the line. A user's own
``sql=`` gets the same local checks.

Service rows become a DataFrame whose 64-bit ids stay exact text.
"""

import re
import string
from dataclasses import dataclass

import pandas as pd

from galaxy_classification import CLASS_NAMES, ELLIPTICAL, SPIRAL
from galaxy_classification.errors import UsageError
from galaxy_classification.sdss.parameters import class_counts

NUMBER_FIELDS = ("n_galaxies", "lower_z_limit", "upper_z_limit", "lower_flux_limit", "upper_flux_limit")
TEMPLATE_FIELDS = (*NUMBER_FIELDS, "class_condition", "label_columns", "label_join")

PROJECT_COLUMNS = ("objid", "ra", "dec", "petroR90_g", "petroR90_r", "petroFlux_g", "specObjID",
                   "lnLDeV_g", "lnLExp_g", "lnLDeV_r", "lnLExp_r", "z",
                   "p_el_debiased", "p_cs_debiased", "nvote")
REQUIRED_COLUMNS = ("objid", "ra", "dec", "petroR90_g")

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


def class_queries(sample, sql_template, rule):
    """The catalogue queries for a validated sample: one per class asked for.
    ``rule`` is a :class:`label_rules.LabelRule`."""
    fields = _template_fields(sql_template, rule)
    n_spiral, n_elliptical = class_counts(sample.n_galaxies, sample.galaxy_type)
    queries = []
    for label, count in ((SPIRAL, n_spiral), (ELLIPTICAL, n_elliptical)):
        if count == 0:
            continue
        values = {
            "n_galaxies": count,
            "lower_z_limit": sample.lower_z_limit, "upper_z_limit": sample.upper_z_limit,
            "lower_flux_limit": sample.lower_flux_limit, "upper_flux_limit": sample.upper_flux_limit,
            "class_condition": rule.condition(label),
            "label_columns": rule.select_sql, "label_join": rule.join_sql,
        }
        sql = one_line_sql(sql_template.format(**{name: values[name] for name in fields}))
        check_sql_search_filter(sql, "SQL_Query")
        queries.append(ClassQuery(label, count, sql))
    return queries


def custom_query(sql):
    """The user's own ``sql=`` query, on one line, checked like the template."""
    if not isinstance(sql, str) or not sql.strip():
        raise UsageError(f"sql must be the text of a SELECT query, got {sql!r}")
    sql = one_line_sql(sql)
    check_sql_search_filter(sql, "sql")
    return [ClassQuery(None, 0, sql)]


def _template_fields(sql_template, rule):
    if not isinstance(sql_template, str) or not sql_template.strip():
        raise UsageError(f"SQL_Query must be the text of a SELECT query, got {sql_template!r}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(sql_template) if name is not None}
    except ValueError as error:
        raise UsageError(f"SQL_Query is not a valid template ({error}); write literal braces as {{{{ }}}}") from None
    unknown = sorted(fields - set(TEMPLATE_FIELDS))
    if unknown:
        raise UsageError(f"SQL_Query uses unknown fields {unknown}; allowed: {', '.join(TEMPLATE_FIELDS)}")
    needed = {"n_galaxies", "class_condition"} | ({"label_columns", "label_join"} if rule.join_sql else set())
    missing = sorted(needed - fields)
    if missing:
        raise UsageError(f"SQL_Query must contain the fields {', '.join('{' + m + '}' for m in missing)} "
                         f"(needed for labels={rule.name!r})")
    return fields


def one_line_sql(sql):
    """The query without ``--`` and ``/* */`` comments (not inside quotes), on
    one line with single spaces outside quoted strings."""
    def outside_strings(match):
        return match.group(0) if match.group(0).startswith("'") else " "

    without_comments = _SQL_COMMENT_OR_STRING.sub(outside_strings, sql)
    pieces = re.split(r"('(?:[^']|'')*')", without_comments)
    return "".join(piece if piece.startswith("'") else re.sub(r"\s+", " ", piece) for piece in pieces).strip()


def check_sql_search_filter(sql, name):
    """Refuse SQL that SkyServer's filter (spExecuteSQL) would refuse or mangle:
    it must be one SELECT statement, without ';', UNION or a leading WITH."""
    if not re.match(r"select\s", sql, re.I):
        raise UsageError(f"{name} must start with SELECT (no WITH, no leading comment)")
    if ";" in sql:
        raise UsageError(f"{name} must be a single statement without ';'")
    if re.search(r"\bunion\b", sql, re.I):
        raise UsageError(f"{name} must not use UNION: the project runs one query per class instead")


# --- parsing ---------------------------------------------------------------------


def normalise_column_names(columns):
    """Service spellings (objID, specobjid, LNLDEV_G, ...) -> the project's spelling."""
    spelling = {name.lower(): name for name in PROJECT_COLUMNS}
    return [spelling.get(str(column).strip().lower(), str(column).strip()) for column in columns]


def missing_columns(catalogue, rule):
    return [name for name in (*REQUIRED_COLUMNS, *rule.columns) if name not in catalogue.columns]


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
        raise UsageError(f"column {column} arrived as a floating-point number ({value!r}) and its exact value is "
                         "lost; select it as CAST(... AS VARCHAR(20))")
    return str(value).strip()


def _numbers_if_possible(values):
    present = values.map(lambda value: value is not None and str(value).strip() != "")
    numbers = pd.to_numeric(values.where(present), errors="coerce")
    return numbers if numbers.notna().sum() == present.sum() else values
