"""Report figures, drawn with matplotlib's Agg canvas (never pyplot, so no global state).

Every function takes plain arrays, lists and mappings and returns a
:class:`matplotlib.figure.Figure` (or ``None`` when there is nothing to draw; ``has_<name>``
says so beforehand, without drawing); :func:`to_data_uri` turns one into an embeddable PNG.
Colours are colour-blind safe (Okabe-Ito for categories, cividis/viridis for magnitudes, a
symmetric diverging map for signed values). Several methods compared in one run are drawn in
the same colour everywhere: the ``i``-th method gets ``OKABE_ITO[i]``.

One module per report section that draws: :mod:`.training`, :mod:`.calibration`,
:mod:`.uncertainty`, :mod:`.shift`, :mod:`.checks`, :mod:`.attribution`, :mod:`.search` and
:mod:`.acquisition`;
shared pieces in :mod:`._base`.
"""

from trustml.report.figures._base import (
    BLUE,
    DPI,
    GREEN,
    GREY,
    MAX_CHANNEL_ROWS,
    MAX_LINE_CHANNELS,
    MAX_SCATTER_POINTS,
    MAX_TARGET_PANELS,
    OKABE_ITO,
    ORANGE,
    VERMILLION,
    check_member_maps,
    method_colour,
    to_data_uri,
)
from trustml.report.figures.acquisition import (
    Curve,
    has_learning_curves,
    learning_curves,
    strategy_colours,
)
from trustml.report.figures.attribution import attribution_example, attribution_grid, slice_note
from trustml.report.figures.calibration import (
    coverage_curves,
    has_coverage_curves,
    has_pit_histograms,
    pit_histograms,
    predicted_vs_true,
    reliability_diagram,
)
from trustml.report.figures.checks import check_curves, check_field, has_check_curves
from trustml.report.figures.search import has_search_trials, search_trials
from trustml.report.figures.shift import (
    LadderBound,
    LadderLine,
    LadderPanel,
    has_ladder_curves,
    ladder_curves,
    ladder_positions,
)
from trustml.report.figures.training import has_training_curves, training_curves
from trustml.report.figures.uncertainty import (
    aleatoric_epistemic,
    entropy_histogram,
    has_spread_skill,
    has_uncertainty_under_shift,
    predictive_entropy,
    spread_skill,
    uncertainty_under_shift,
)

__all__ = [
    "check_member_maps",
    "BLUE",
    "DPI",
    "GREEN",
    "GREY",
    "MAX_CHANNEL_ROWS",
    "MAX_LINE_CHANNELS",
    "MAX_SCATTER_POINTS",
    "MAX_TARGET_PANELS",
    "OKABE_ITO",
    "ORANGE",
    "VERMILLION",
    "Curve",
    "LadderBound",
    "LadderLine",
    "LadderPanel",
    "aleatoric_epistemic",
    "attribution_example",
    "attribution_grid",
    "check_curves",
    "check_field",
    "coverage_curves",
    "entropy_histogram",
    "has_check_curves",
    "has_coverage_curves",
    "has_ladder_curves",
    "has_learning_curves",
    "has_pit_histograms",
    "has_search_trials",
    "has_spread_skill",
    "has_training_curves",
    "has_uncertainty_under_shift",
    "ladder_curves",
    "ladder_positions",
    "learning_curves",
    "method_colour",
    "pit_histograms",
    "predicted_vs_true",
    "predictive_entropy",
    "reliability_diagram",
    "search_trials",
    "slice_note",
    "spread_skill",
    "strategy_colours",
    "to_data_uri",
    "training_curves",
    "uncertainty_under_shift",
]
