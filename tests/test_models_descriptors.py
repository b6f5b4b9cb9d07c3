"""What every ``MODELS`` descriptor declares (models/entry.py), checked for every registered model."""

from __future__ import annotations

import dataclasses

import pytest

from mlperf_bnas.models import MODELS, create_model


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_every_model_declares_the_seed_of_its_seeded_weights(name):
    """``pipeline.resolve_weights`` names the seeded-weights file by ``entry.weights_seed``: every
    model's Options has ``seed`` (default 0), and the descriptor reads it from there."""
    entry = create_model(name, {})
    seed = {f.name: f for f in dataclasses.fields(entry.Options)}.get("seed")
    assert seed is not None and seed.default == 0 and entry.weights_seed == 0
    assert create_model(name, {"seed": 7}).weights_seed == 7
