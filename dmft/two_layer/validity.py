"""Where ``finite_size=True`` can be trusted: the region in which the validity map (docs/finite-size.md,
section 7; ``data/validity_map.json``, made by ``examples/validity_map.py``) shows the finite-size DMFT
no worse than the D -> inf DMFT against networks, and the warning outside it.

The map compares both DMFTs with N = inf networks at 10 points (alpha 0.1-10, eps 0.02-0.3, P/D 1.5-6)
and D = 200, 400.  The rules below are the simplest description of its verdicts; ``tests/test_validity.py``
checks them against every mapped point.
"""
from __future__ import annotations

from ..params import TwoLayerModel

#: where the user is sent for the measurements behind the warning
VALIDITY_MAP = "the --finite-size validity map (docs/finite-size.md, section 7; data/validity_map.json)"

#: the input dimensions the map measured
MAPPED_DIMS = (200, 400)

#: the box of the mapped parameters: outside it the map says nothing
MAPPED_ALPHA = (0.1, 10.0)
MAPPED_EPS = (0.02, 0.3)
MAPPED_RATIO = (1.5, 6.0)  # of which the map vouches for MIN_RATIO and above
#: the smallest P/D at which the map shows the finite-size DMFT helping at every mapped point.  Below it the
#: training set is fit long before the dynamics settles, and the static reaction to a point's own bump
#: (docs/finite-size.md, sections 3d and 7) keeps growing the memory of the fitted points: the spike and the
#: cross covariance run away from the networks'
MIN_RATIO = 4.0
#: the largest eps at which every mapped point with P/D >= MIN_RATIO helps: at eps = 0.3 one of the two does not
#: (alpha 4: the spike outgrows the networks' late in the window, after the training set is fit, by the same loop)
MAX_EPS = 0.1


def _rules(model: TwoLayerModel, dim: int) -> list[str]:
    """The reasons, if any, why the map does not vouch for the finite-size DMFT at these parameters."""
    reasons = []
    if dim < MAPPED_DIMS[0]:
        reasons.append(f"D = {dim} is below the mapped D = {MAPPED_DIMS[0]}-{MAPPED_DIMS[1]} (the terms are an "
                       "expansion in 1/D)")
    if model.ratio < MIN_RATIO:
        reasons.append(f"P/D = {model.ratio:g} is below {MIN_RATIO:g}, where the map shows it worse than the D -> inf "
                       "DMFT at some points (the training set is fit early and the reaction to each point's own bump "
                       "runs away)")
    if model.eps > MAX_EPS:
        reasons.append(f"eps = {model.eps:g} is above {MAX_EPS:g}, where the map shows it worse than the D -> inf "
                       "DMFT at some points (the fitted points' spike outgrows the networks' late in the window)")
    if model.ratio > MAPPED_RATIO[1]:
        reasons.append(f"P/D = {model.ratio:g} is above the mapped {MAPPED_RATIO[0]:g}-{MAPPED_RATIO[1]:g}")
    for name, value, (lo, hi) in (("alpha", model.alpha, MAPPED_ALPHA), ("eps", model.eps, MAPPED_EPS)):
        if not lo <= value <= hi and not (name == "eps" and value > MAX_EPS):
            reasons.append(f"{name} = {value:g} is outside the mapped {lo:g}-{hi:g}")
    return reasons


def finite_size_caution(model: TwoLayerModel, dim: int) -> str | None:
    """The warning for a finite-size solve at these parameters, or None inside the trusted region."""
    reasons = _rules(model, dim)
    if not reasons:
        return None
    return ("warning: --finite-size is outside the region where it was measured to help: " + "; ".join(reasons)
            + f"; see {VALIDITY_MAP}")
