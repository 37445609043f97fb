"""What makes a galaxy a spiral or an elliptical: the label rules.

A :class:`LabelRule` is the whole of one rule in one object: the SQL tests the
catalogue query sends, the columns it selects and needs, the local labeller
that applies the same tests to a table (a user's own ``sql=`` rows, the
synthetic sky) and its cut-offs. The SQL builder, the parser, the command
line's choices and the synthetic sky all read these objects, so a rule is
written once.

``likelihood`` is the seed's rule, on SDSS's profile fits (de Vaucouleurs, a
bulge, against exponential, a disc):

- elliptical: in the r band the de Vaucouleurs fit beats the exponential one
  by more than 0.1 in ln L, the r-band exponential fit and the g-band
  de Vaucouleurs fit being valid (ln L > -999);
- spiral: in the g band the de Vaucouleurs fit is hopeless (ln L < -2000) and
  the exponential one is better by more than 0.1.

The two are disjoint (lnLDeV_g > -999 against < -2000). The cut-offs are fixed
numbers in ln L, and |ln L| grows with signal-to-noise: bright, well-resolved
discs fail the de Vaucouleurs fit badly enough to pass the spiral test far more
easily than faint ones, so the rule favours bright, large spirals.

``galaxyzoo`` uses the Galaxy Zoo 1 debiased flags (``zooSpec``: a class flag
is 1 when its debiased vote fraction exceeds 0.8); uncertain galaxies are left
out, and the vote fractions travel with the catalogue.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from galaxy_classification import ELLIPTICAL, SPIRAL, UNLABELLED
from galaxy_classification.errors import UsageError

# the likelihood rule's cut-offs, in ln L
HOPELESS_FIT = -2000.0  # a de Vaucouleurs fit this bad means "not a bulge"
VALID_FIT = -999.0  # below this SDSS marks a fit as failed
MARGIN = 0.1  # how much better the winning fit must be


def _numbers(catalogue, column):
    return pd.to_numeric(catalogue[column], errors="coerce").to_numpy(dtype=np.float64)


def likelihood_labels(catalogue):
    """0 spiral, 1 elliptical, -1 neither, by the seed's profile-fit tests."""
    dev_g, exp_g = _numbers(catalogue, "lnLDeV_g"), _numbers(catalogue, "lnLExp_g")
    dev_r, exp_r = _numbers(catalogue, "lnLDeV_r"), _numbers(catalogue, "lnLExp_r")
    with np.errstate(invalid="ignore"):
        elliptical = (dev_r > exp_r + MARGIN) & (exp_r > VALID_FIT) & (dev_g > VALID_FIT)
        spiral = (dev_g < HOPELESS_FIT) & (dev_g + MARGIN < exp_g)
    return _labels(spiral, elliptical)


def galaxy_zoo_labels(catalogue):
    """0 spiral, 1 elliptical, -1 uncertain, from the Galaxy Zoo 1 debiased flags."""
    def flag(name):
        if name not in catalogue.columns:
            return np.zeros(len(catalogue), dtype=bool)
        return _numbers(catalogue, name) == 1

    spiral, elliptical, uncertain = flag("spiral"), flag("elliptical"), flag("uncertain")
    return _labels(spiral & ~elliptical & ~uncertain, elliptical & ~spiral & ~uncertain)


def _labels(spiral, elliptical):
    labels = np.full(len(spiral), UNLABELLED, dtype=np.int64)
    labels[elliptical] = ELLIPTICAL
    labels[spiral] = SPIRAL
    return labels


@dataclass(frozen=True)
class LabelRule:
    """One way of labelling galaxies, in SQL and in Python alike."""

    name: str
    summary: str
    spiral_condition: str  # SQL over the aliases g (Galaxy) and zs (zooSpec)
    elliptical_condition: str
    columns: tuple  # what the labeller reads; a catalogue without them cannot be labelled
    labeller: object  # catalogue (DataFrame) -> int64 labels, -1 for neither
    select_sql: str = ""  # the SQL_Query template's {label_columns}
    join_sql: str = ""  # the SQL_Query template's {label_join}
    cut_offs: dict = field(default_factory=dict)

    def condition(self, label):
        return {SPIRAL: self.spiral_condition, ELLIPTICAL: self.elliptical_condition}[label]

    def labels(self, catalogue):
        return self.labeller(catalogue)


LIKELIHOOD = LabelRule(
    name="likelihood",
    summary="the seed's profile-fit likelihood tests (ellipticals in r, spirals in g)",
    spiral_condition=f"g.lnLDeV_g < {HOPELESS_FIT} AND g.lnLDeV_g + {MARGIN} < g.lnLExp_g",
    elliptical_condition=(f"g.lnLDeV_r > g.lnLExp_r + {MARGIN} AND g.lnLExp_r > {VALID_FIT} "
                          f"AND g.lnLDeV_g > {VALID_FIT}"),
    columns=("lnLDeV_g", "lnLExp_g", "lnLDeV_r", "lnLExp_r"),
    labeller=likelihood_labels,
    cut_offs={"hopeless_fit": HOPELESS_FIT, "valid_fit": VALID_FIT, "margin": MARGIN},
)

GALAXY_ZOO = LabelRule(
    name="galaxyzoo",
    summary="Galaxy Zoo 1 debiased volunteer flags (zooSpec), uncertain galaxies left out",
    spiral_condition="zs.spiral = 1 AND zs.elliptical = 0 AND zs.uncertain = 0",
    elliptical_condition="zs.elliptical = 1 AND zs.spiral = 0 AND zs.uncertain = 0",
    columns=("spiral", "elliptical"),
    labeller=galaxy_zoo_labels,
    select_sql=(", zs.spiral, zs.elliptical, zs.uncertain, zs.p_el_debiased, zs.p_cs_debiased, zs.nvote"),
    join_sql=" JOIN zooSpec AS zs ON zs.objid = g.objID",
    cut_offs={"debiased_fraction": 0.8},
)

LABEL_RULES = {rule.name: rule for rule in (LIKELIHOOD, GALAXY_ZOO)}


def label_rule(name):
    """The rule called ``name``, or ValueError naming the choices."""
    if name not in LABEL_RULES:
        raise UsageError(f"labels must be one of {', '.join(map(repr, LABEL_RULES))}, got {name!r}")
    return LABEL_RULES[name]
