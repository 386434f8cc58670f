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

#: the trusted region, (low, high) per parameter: the map's points span alpha 0.1-10, eps 0.02-0.3 and
#: P/D 1.5-6, and it shows the finite-size DMFT helping at every mapped point with P/D >= 4 and eps <= 0.1
TRUSTED = {"alpha": (0.1, 10.0), "eps": (0.02, 0.1), "ratio": (4.0, 6.0)}
#: why the map rules out the two edges inside its span.  Below P/D = 4 (r1, x1) the training set is fit long
#: before the dynamics settles, and the static reaction to a point's own bump (docs/finite-size.md, sections 3d
#: and 7) keeps growing the memory of the fitted points: the spike and the cross covariance run away from the
#: networks'.  At eps = 0.3 (l1, alpha 4) the spike outgrows the networks' late in the window by the same loop
_MEASURED_WORSE = {("ratio", "low"): "the training set is fit early and the reaction to each point's own bump "
                                     "runs away",
                   ("eps", "high"): "the spike outgrows the networks' late in the window, after the training set is "
                                    "fit"}
_NAMES = {"alpha": "alpha", "eps": "eps", "ratio": "P/D"}


def trusted_region() -> str:
    """The trusted region in words, e.g. 'D >= 200, 0.1 <= alpha <= 10, 0.02 <= eps <= 0.1, 4 <= P/D <= 6'."""
    return ", ".join([f"D >= {MAPPED_DIMS[0]}"] + [f"{lo:g} <= {_NAMES[name]} <= {hi:g}"
                                                   for name, (lo, hi) in TRUSTED.items()])


def _rules(model: TwoLayerModel, dim: int) -> list[str]:
    """The reasons, if any, why the map does not vouch for the finite-size DMFT at these parameters."""
    reasons = []
    if dim < MAPPED_DIMS[0]:
        reasons.append(f"D = {dim} is below the mapped D = {MAPPED_DIMS[0]}-{MAPPED_DIMS[1]} (the terms are an "
                       "expansion in 1/D)")
    for name, (lo, hi) in TRUSTED.items():
        value = getattr(model, name)
        for side, outside, bound in (("low", value < lo, lo), ("high", value > hi, hi)):
            if not outside:
                continue
            why = _MEASURED_WORSE.get((name, side))
            where = "below" if side == "low" else "above"
            reasons.append(f"{_NAMES[name]} = {value:g} is {where} {bound:g}, " + (
                f"where the map shows it worse than the D -> inf DMFT at some points ({why})" if why
                else "outside the mapped region"))
    return reasons


def finite_size_caution(model: TwoLayerModel, dim: int) -> str | None:
    """The warning for a finite-size solve at these parameters, or None inside the trusted region."""
    reasons = _rules(model, dim)
    if not reasons:
        return None
    return ("warning: --finite-size is outside the region where it was measured to help: " + "; ".join(reasons)
            + f"; see {VALIDITY_MAP}")
