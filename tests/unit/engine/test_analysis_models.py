"""The pieces under the insight detectors: tidied spoken text and the stored linear models."""

from __future__ import annotations

import json

import pytest
from parley_engine.analysis.linear_model import MODELS_DIR, LinearModel, load_model
from parley_engine.analysis.spoken_text import tidy_spoken


@pytest.mark.parametrize(
    ("said", "written"),
    [
        ("Um so I'll I'll put up um the minutes,", "I'll put up the minutes."),
        (
            "So in some sense we're gonna we're gonna have to aim for a device",
            "In some sense we're gonna have to aim for a device.",
        ),
        ("but once you've learned it you can you can use your T_V_.", "Once you've learned it you can use your TV."),
        ("The thing is that that works.", "The thing is that that works."),
        ("Is it ready?", "Is it ready?"),
        ("Let's schedule a call.", "Let's schedule a call."),
        ("Umbrellas, uh, are by the door.", "Umbrellas are by the door."),
    ],
)
def test_spoken_text_loses_hesitations_and_restarts_but_no_words_that_carry_meaning(said: str, written: str) -> None:
    assert tidy_spoken(said) == written


def test_nothing_but_hesitation_is_left_as_it_was() -> None:
    assert tidy_spoken("Um.") == "Um."


def test_a_model_weighs_named_features_and_rescales_its_threshold_to_one_half() -> None:
    model = LinearModel("m", {"a": 2.0, "b": -1.0}, intercept=-1.0, threshold=0.2, metadata={})
    assert model.probability({}) == pytest.approx(1 / (1 + 2.718281828**1.0), rel=1e-6)
    assert model.probability({"a": 1.0, "unknown": 5.0}) == pytest.approx(1 / (1 + 2.718281828**-1.0), rel=1e-6)
    assert model.confidence(0.2) == pytest.approx(0.5)
    assert model.confidence(1.0) == pytest.approx(1.0) and model.confidence(0.0) == 0.0
    assert model.confidence(0.1) < 0.5 < model.confidence(0.3)
    assert LinearModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model


@pytest.mark.parametrize("name", ["questions", "action_items"])
def test_the_shipped_models_say_what_they_were_trained_on_and_how_well_they_did(name: str) -> None:
    assert (MODELS_DIR / f"{name}.json").exists()
    model = load_model(name)
    assert 0 < model.threshold < 1 and len(model.weights) > 50
    assert "trainedOn" in model.metadata and "outOfFold" in model.metadata
    assert model.metadata["command"].startswith(".venv/bin/python -m parley_devtools.train_insight_models")
