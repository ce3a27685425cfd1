"""Synthetic run results for the report tests: no model, no torch, just numbers."""

from __future__ import annotations

import numpy as np

from trustml.report import RunResults

PROTOCOL_TEXT = """trustml: 1
name: synthetic
seed: 7
data:
  builtin: cosmology2d
task: regression
"""


def make_summary(*, name: str = "synthetic-cnn", verdict: str = "pass") -> dict:
    rng = np.random.default_rng(0)
    members = 3
    nominal = [0.1 * i for i in range(1, 10)]
    return {
        "name": name,
        "task": "regression",
        "verdict": verdict,
        "seed": 7,
        "metrics": {
            "rmse": {"value": 0.1234, "ci": [0.11, 0.135]},
            "nll": {"value": -0.5678, "ci": [-0.61, -0.52]},
            "coverage": {"value": 0.9012, "ci": [0.87, 0.93]},
        },
        "baseline_metrics": {
            "rmse": {"value": 1.0021, "ci": [0.95, 1.05]},
            "nll": {"value": 1.4189, "ci": [1.37, 1.47]},
        },
        "acceptance": [
            {
                "metric": "coverage",
                "bound": "min",
                "threshold": 0.85,
                "value": 0.9012,
                "passed": True,
            },
            {
                "metric": "nll",
                "bound": "max",
                "threshold": 1.0,
                "value": -0.5678,
                "passed": verdict == "pass",
            },
        ],
        "data": {
            "source": "builtin:cosmology2d",
            "n_samples": 2000,
            "input_shape": [1, 32, 32],
            "target_names": ["omega_m", "sigma_8"],
            "splits": {"train": 1400, "calibration": 300, "test": 300},
            "fingerprint": "ab" * 32,
        },
        "model": {"name": "cnn", "n_parameters": 23456, "summary": "Conv2d(1, 16)\nConv2d(16, 32)"},
        "uncertainty": {
            "method": "deep_ensemble",
            "members": members,
            "train": {"epochs": 20, "batch_size": 64, "lr": 0.001},
            "history": {
                "loss": [list(np.exp(-np.linspace(0, 3, 20)) + 0.05 * k) for k in range(members)],
                "val_loss": [
                    list(np.exp(-np.linspace(0, 2.5, 20)) + 0.1 + 0.05 * k) for k in range(members)
                ],
            },
        },
        "calibration": {"method": "conformal", "alpha": 0.1, "quantile": 1.64},
        "coverage_curve": {
            "nominal": nominal,
            "empirical": [min(1.0, p + 0.01) for p in nominal],
            "empirical_raw": [max(0.0, p - 0.12 * rng.random()) for p in nominal],
        },
        "attribution": {
            "method": "integrated_gradients",
            "n_examples": 4,
            "target": "omega_m",
            "checks": {
                "completeness": {
                    "value": 0.003,
                    "threshold": 0.05,
                    "passed": True,
                    "detail": "max relative completeness gap",
                },
                "randomization": {
                    "value": 0.12,
                    "threshold": 0.5,
                    "passed": True,
                    "detail": "rank correlation after weight randomisation",
                },
            },
        },
    }


def make_arrays(
    *,
    n_test: int = 300,
    n_targets: int = 2,
    spatial: tuple[int, ...] = (32, 32),
    n_examples: int = 4,
    members: int = 3,
    channels: int = 1,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(n_test, n_targets)).astype(np.float32)
    std = (0.2 + 0.1 * rng.random((n_test, n_targets))).astype(np.float32)
    mean = (targets + std * rng.normal(size=(n_test, n_targets))).astype(np.float32)
    inputs = rng.normal(size=(n_examples, channels, *spatial)).astype(np.float32)
    maps = (inputs[None] * rng.normal(1.0, 0.3, size=(members, *inputs.shape))).astype(np.float32)
    return {
        "test/targets": targets,
        "test/mean": mean,
        "test/std": std,
        "test/lower": mean - 1.645 * std,
        "test/upper": mean + 1.645 * std,
        "attribution/inputs": inputs,
        "attribution/maps": maps,
        "attribution/target_index": np.zeros(n_examples, dtype=np.int64),
    }


def make_manifest() -> dict:
    return {
        "created_at": "2025-01-01T00:00:00+00:00",
        "versions": {"trustml": "0.1.0", "numpy": np.__version__, "torch": "2.5.0"},
        "python": "3.11.9",
        "platform": "Linux-x86_64",
        "command": ["trustml", "evaluate", "protocol.yaml"],
        "seed": 7,
        "protocol_sha256": "cd" * 32,
        "data_fingerprint": "ab" * 32,
    }


def make_results(**array_options) -> RunResults:
    return RunResults(
        summary=make_summary(),
        arrays=make_arrays(**array_options),
        manifest=make_manifest(),
        protocol_text=PROTOCOL_TEXT,
    )
