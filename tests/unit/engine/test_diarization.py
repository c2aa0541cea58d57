"""Speakers of single-channel audio: the checkpoint reader, the NumPy speaker encoder, clustering, and the whole path.

The last tests need flite and the ``resemblyzer`` weights; everything else runs on hand-made numbers.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from parley_engine.speech import SpeechOptions, SpeechRecognizer
from parley_engine.speech.diarization import Diarizer, SpeechSpan, agglomerate, speaker_labels
from parley_engine.speech.speaker_encoder import (
    MEL_BANDS,
    SpeakerEncoder,
    bundled_weights_path,
    mel_power_frames,
    partial_slices,
    read_legacy_checkpoint,
)

from parley_devtools.speech_samples import Turn, flite_available, synthesize_conversation

ID_PREFIX = "1234567890"


# --- the legacy checkpoint reader -------------------------------------------------------------------------


class _FakeStorage:
    """Stands in for a torch storage while pickling: ``persistent_id`` turns it into the storage record."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


def _legacy_checkpoint(path: Path, tensors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``tensors`` the way ``torch.save`` did before PyTorch 1.6, with stand-in ``torch`` modules."""
    torch_module = types.ModuleType("torch")
    utils_module = types.ModuleType("torch._utils")
    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    torch_module.FloatStorage = float_storage  # type: ignore[attr-defined]

    def _rebuild_tensor_v2(*args: Any) -> None:  # only its name is pickled
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_module._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch_module)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_module)

    storages = {
        name: _FakeStorage(str(index), array.astype("<f4")) for index, (name, array) in enumerate(tensors.items())
    }

    class _Tensor:
        def __init__(self, storage: _FakeStorage) -> None:
            self.storage = storage

        def __reduce__(self) -> tuple[Any, ...]:
            shape = self.storage.data.shape
            strides = tuple(step // 4 for step in self.storage.data.strides)
            return (_rebuild_tensor_v2, (self.storage, 0, shape, strides, False, OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, _FakeStorage):
                return ("storage", float_storage, obj.key, "cpu", obj.data.size)
            return None

    state = OrderedDict((name, _Tensor(storage)) for name, storage in storages.items())
    with path.open("wb") as file:
        pickle.dump(0x1950A86A20F9469CFC6C, file, protocol=2)
        pickle.dump(1001, file, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, file, protocol=2)
        _Pickler(file, protocol=2).dump({"step": 3, "model_state": state})
        pickle.dump([storage.key for storage in storages.values()], file, protocol=2)
        for storage in storages.values():
            file.write(storage.data.size.to_bytes(8, "little"))
            file.write(storage.data.tobytes())


def test_a_legacy_checkpoint_reads_as_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {"weight": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.array([0.5, -1.0], np.float32)}
    path = tmp_path / "model.pt"
    _legacy_checkpoint(path, tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # reading needs no torch at all

    checkpoint = read_legacy_checkpoint(path)

    assert checkpoint["step"] == 3
    assert list(checkpoint["model_state"]) == ["weight", "bias"]
    np.testing.assert_array_equal(checkpoint["model_state"]["weight"], tensors["weight"])
    np.testing.assert_array_equal(checkpoint["model_state"]["bias"], tensors["bias"])


def test_a_checkpoint_naming_any_other_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as file:
        pickle.dump(0x1950A86A20F9469CFC6C, file, protocol=2)
        pickle.dump(1001, file, protocol=2)
        pickle.dump({"little_endian": True}, file, protocol=2)
        pickle.dump(Path("/etc/passwd"), file, protocol=2)  # any class outside the allowed few
    with pytest.raises(pickle.UnpicklingError, match="unexpected class"):
        read_legacy_checkpoint(path)


# --- the encoder's arithmetic --------------------------------------------------------------------------------


def _sigmoid(value: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-value))


def _reference_lstm_embedding(state: dict[str, np.ndarray], mel: np.ndarray) -> np.ndarray:
    """torch.nn.LSTM's documented equations, one frame and one layer at a time, for a single window."""
    sequence = mel.astype(np.float64)
    for layer in range(3):
        w_ih, w_hh = state[f"lstm.weight_ih_l{layer}"], state[f"lstm.weight_hh_l{layer}"]
        b = state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]
        size = w_hh.shape[1]
        h, c, outputs = np.zeros(size), np.zeros(size), []
        for x in sequence:
            gates = w_ih @ x + w_hh @ h + b
            i, f = _sigmoid(gates[:size]), _sigmoid(gates[size : 2 * size])
            g, o = np.tanh(gates[2 * size : 3 * size]), _sigmoid(gates[3 * size :])
            c = f * c + i * g
            h = o * np.tanh(c)
            outputs.append(h)
        sequence = np.array(outputs)
    embedded = np.maximum(state["linear.weight"] @ h + state["linear.bias"], 0.0)
    return embedded / np.linalg.norm(embedded)


def test_the_batched_lstm_matches_the_step_by_step_equations() -> None:
    generator = np.random.default_rng(7)
    hidden = 8
    state = {"linear.weight": generator.normal(size=(hidden, hidden)), "linear.bias": generator.normal(size=hidden)}
    for layer in range(3):
        inputs = MEL_BANDS if layer == 0 else hidden
        state[f"lstm.weight_ih_l{layer}"] = generator.normal(scale=0.3, size=(4 * hidden, inputs))
        state[f"lstm.weight_hh_l{layer}"] = generator.normal(scale=0.3, size=(4 * hidden, hidden))
        state[f"lstm.bias_ih_l{layer}"] = generator.normal(scale=0.1, size=4 * hidden)
        state[f"lstm.bias_hh_l{layer}"] = generator.normal(scale=0.1, size=4 * hidden)
    state32 = {name: value.astype(np.float32) for name, value in state.items()}
    mels = generator.uniform(0, 1, size=(3, 20, MEL_BANDS)).astype(np.float32)

    embedded = SpeakerEncoder(state32).embed_partials(mels)

    expected = np.stack([_reference_lstm_embedding(state, mel) for mel in mels])
    np.testing.assert_allclose(embedded, expected, atol=1e-4)


def test_mel_frames_follow_the_hop_and_catch_a_tone_in_the_right_band() -> None:
    seconds = 1.0
    tone = np.sin(2 * np.pi * 1000 * np.arange(int(16_000 * seconds)) / 16_000).astype(np.float32)

    frames = mel_power_frames(tone)

    assert frames.shape == (101, MEL_BANDS)  # centred frames every 10 ms: 1 + 16000 / 160
    loudest = np.argmax(frames[50])
    # 1 kHz is 15 on the Slaney mel scale; 40 bands up to 8 kHz (45.25) peak every 1.104, band 13 at 15.45.
    assert loudest == 13
    assert frames[50, loudest] > 100 * frames[50, -1]


def test_partial_windows_cover_an_utterance_like_resemblyzer() -> None:
    assert partial_slices(8_000) == [slice(0, 160)]  # shorter than one window: one, zero-padded
    long_slices = partial_slices(16_000 * 5)
    assert long_slices[0] == slice(0, 160)
    assert all(window.stop - window.start == 160 for window in long_slices)
    assert long_slices[-1].stop * 160 >= 16_000 * 5 * 0.75


# --- clustering ----------------------------------------------------------------------------------------------


def _voices(directions: list[int], *, noise: float = 0.05, seed: int = 1) -> np.ndarray:
    """Unit vectors near one of a few orthogonal "voice" directions."""
    generator = np.random.default_rng(seed)
    vectors = np.eye(16)[directions] + generator.normal(scale=noise, size=(len(directions), 16))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_agglomeration_stops_at_the_threshold_or_at_the_asked_count() -> None:
    embeddings = _voices([0, 1, 0, 2, 1, 2])
    similarity = embeddings @ embeddings.T

    free = agglomerate(similarity, threshold=0.7)
    forced = agglomerate(similarity, threshold=0.7, speaker_count=2)

    assert free[0] == free[2] and free[1] == free[4] and free[3] == free[5]
    assert len(set(free)) == 3
    assert len(set(forced)) == 2


def test_speakers_are_numbered_by_first_appearance_and_short_sentences_join_the_nearest() -> None:
    embeddings = _voices([2, 0, 2, 0, 0, 2])
    # The fifth sentence is short: its embedding is noisy, so it must not found a speaker of its own.
    embeddings[4] = (embeddings[4] + _voices([5])[0]) / np.linalg.norm(embeddings[4] + _voices([5])[0])
    durations = [2.0, 2.5, 1.8, 3.0, 0.4, 2.2]

    assert speaker_labels(embeddings, durations) == [0, 1, 0, 1, 1, 0]
    assert speaker_labels(embeddings, durations, speaker_count=1) == [0] * 6


def test_one_voice_stays_one_speaker() -> None:
    embeddings = _voices([3] * 6, noise=0.1)
    assert set(speaker_labels(embeddings, [2.0] * 6)) == {0}


# --- with the real weights -----------------------------------------------------------------------------------

needs_weights = pytest.mark.skipif(
    bundled_weights_path() is None or not flite_available(),
    reason="needs flite and the resemblyzer wheel's weights (installed without its dependencies)",
)


@needs_weights
def test_the_encoder_tells_flite_voices_apart(tmp_path: Path) -> None:
    weights = bundled_weights_path()
    assert weights is not None
    turns = [
        Turn("slt", "The mobile app crashed twice during the demo yesterday."),
        Turn("rms", "Who owns the migration of the billing database?"),
        Turn("slt", "Please keep the customer updated while we investigate."),
        Turn("rms", "I will draft the proposal and send it for review."),
    ]
    placed = synthesize_conversation(turns, tmp_path / "dialogue.wav")
    from parley_engine.speech.media import decode_audio

    samples = decode_audio(tmp_path / "dialogue.wav").mono()
    spans = [SpeechSpan(turn.speech_start, turn.speech_end) for turn in placed]

    assert Diarizer(SpeakerEncoder.from_file(weights)).speakers(samples, spans) == [0, 1, 0, 1]


@needs_weights
def test_a_mono_dialogue_gets_a_speaker_per_voice(tmp_path: Path) -> None:
    turns = [
        Turn("awb", "Thanks for waiting, I think everyone has joined now."),
        Turn("slt", "Before we begin, does anyone have something urgent to raise?"),
        Turn("awb", "The warehouse in Denver is running low on packaging material."),
    ]
    synthesize_conversation(turns, tmp_path / "call.wav")
    recognizer = SpeechRecognizer()

    utterances = recognizer.transcribe(tmp_path / "call.wav", SpeechOptions(), id_prefix=ID_PREFIX)
    alone = recognizer.transcribe(
        tmp_path / "call.wav", SpeechOptions(diarization_speaker_count=1), id_prefix=ID_PREFIX
    )

    assert recognizer.diarizes
    assert [utterance.speaker.name for utterance in utterances] == ["Speaker 1", "Speaker 2", "Speaker 1"]
    assert {utterance.speaker.name for utterance in alone} == {"Speaker 1"}
