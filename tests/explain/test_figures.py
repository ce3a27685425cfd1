"""Figures: Figure objects without pyplot state, for every input rank and every curve."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from trustml.explain import (
    CheckResult,
    plot_attribution,
    plot_curves,
    plot_maps_2d,
    plot_randomization,
    plot_sequence,
    plot_volume,
)

RNG = np.random.default_rng(0)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    return buf.getvalue()


@pytest.mark.parametrize(
    "sample_shape,panels",
    [
        ((6,), 1),
        ((20, 3), 3),
        ((2, 30), 3),
        ((1, 8, 8), 3),
        ((1, 4, 6, 6), 9),
        ((1, 2, 4, 6, 6), 9),
    ],
)
def test_every_rank_has_a_figure(sample_shape, panels):
    members = RNG.normal(size=(3, 2, *sample_shape))
    inputs = RNG.normal(size=(2, *sample_shape))
    fig = plot_attribution(members, 1, inputs=inputs if len(sample_shape) > 1 else None)
    assert isinstance(fig, Figure)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == (panels if len(sample_shape) > 1 else 0)
    assert _png(fig).startswith(b"\x89PNG")


def test_maps_are_colour_blind_safe_and_symmetric():
    members = RNG.normal(size=(4, 1, 1, 8, 8))
    fig = plot_maps_2d(members)
    mean_ax, std_ax = [ax for ax in fig.axes if ax.images]
    mean_img, std_img = mean_ax.images[0], std_ax.images[0]
    assert mean_img.get_cmap().name == "RdBu_r" and std_img.get_cmap().name == "cividis"
    lo, hi = mean_img.get_clim()
    assert lo == -hi
    np.testing.assert_allclose(mean_img.get_array(), members[:, 0, 0].mean(0))
    np.testing.assert_allclose(std_img.get_array(), members[:, 0, 0].std(0))


def test_one_member_has_no_std_panel():
    fig = plot_maps_2d(RNG.normal(size=(1, 1, 2, 5, 5)), channel=1)
    assert len([ax for ax in fig.axes if ax.images]) == 1


def test_volume_slices_pass_through_the_strongest_voxel():
    members = np.zeros((2, 1, 1, 5, 6, 7))
    members[:, 0, 0, 1, 2, 3] = 5.0
    fig = plot_volume(members)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert any("D = 1" in t for t in titles) and any("W = 3" in t for t in titles)
    proj = plot_volume(members, mode="projection")
    assert all("max" in ax.get_title() for ax in proj.axes if ax.images)
    with pytest.raises(ValueError, match="'mode' parameter"):
        plot_volume(members, mode="mip")


def test_sequence_heatmap_is_time_by_feature():
    fig = plot_sequence(RNG.normal(size=(2, 1, 40, 3)), feature_names=["u", "v", "w"])
    ax = [a for a in fig.axes if a.images][0]
    assert ax.images[0].get_array().shape == (3, 40)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["u", "v", "w"]
    assert fig.axes[1].get_xlabel() == "time step" or any(
        a.get_xlabel() == "time step" for a in fig.axes
    )


def _curve(name: str) -> CheckResult:
    f = np.linspace(0, 1, 11)
    att = np.exp(-5 * f) if name == "deletion" else 1 - np.exp(-5 * f)
    extra = {"fraction": f.tolist(), "attribution": att.tolist(), "random": (1 - f).tolist(),
             "random_std": [0.05] * 11}  # fmt: skip
    return CheckResult(name, 0.3, 0.05, True, "", ">=", extra)


def test_curves_and_randomization_plots_accept_results_and_their_dicts():
    fig = plot_curves(_curve("deletion"), _curve("insertion").as_dict())
    assert len(fig.axes) == 2 and "deletion" in fig.axes[0].get_title()
    rnd = CheckResult(
        "randomization", 0.1, 0.5, True, "", "<",
        {"stages": ["original", "fc", "conv"], "spearman_abs": [1.0, 0.4, 0.1],
         "spearman": [1.0, 0.3, 0.0], "spearman_abs_std": [0.0, 0.1, 0.05]},
    )  # fmt: skip
    fig = plot_randomization(rnd.as_dict())
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["original", "fc", "conv"]
    assert _png(fig).startswith(b"\x89PNG")


def test_no_pyplot_state():
    plot_maps_2d(RNG.normal(size=(2, 1, 1, 4, 4)))
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        plot_maps_2d(np.zeros((2, 3)))
    with pytest.raises(IndexError):
        plot_maps_2d(np.zeros((2, 1, 1, 4, 4)), index=3)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        plot_maps_2d(np.zeros((2, 1, 1, 4)))
