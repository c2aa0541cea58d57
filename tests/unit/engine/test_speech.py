"""Speech-to-text end to end on synthetic flite speech: formats, timings, channels, and the failures callers see.

Audio is generated at test time; the recognizer (Whisper base, ~2 s to load) is shared by the module. It runs
without diarization here, so single-channel audio is one speaker; test_diarization covers speakers of mono audio.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from parley_engine.conversation import Utterance
from parley_engine.speech import MediaError, NoAudioTrack, SpeechOptions, SpeechRecognizer

from parley_devtools.eval_speech import word_error_rate
from parley_devtools.speech_samples import (
    PlacedTurn,
    Turn,
    convert_audio,
    flite_available,
    make_video,
    synthesize_conversation,
    synthesize_wav,
)

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite (Debian package) is needed to synthesize speech")

SENTENCE = "The marketing team finished the landing page on Tuesday."
ID_PREFIX = "1234567890"
ALICE_LINES = ["Good morning, thanks for joining the call.", "Yes, the budget is ready for review."]
BOB_LINES = ["Happy to be here. Shall we start with the budget?"]


@pytest.fixture(scope="module")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer(diarize=False)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("speech")
    synthesize_wav(SENTENCE, "slt", directory / "sentence.wav")
    synthesize_conversation(
        [Turn("slt", ALICE_LINES[0]), Turn("rms", BOB_LINES[0]), Turn("slt", ALICE_LINES[1])],
        directory / "call.wav",
        stereo=True,
    )
    return directory


@pytest.fixture(scope="module")
def mono_call(media_dir: Path) -> tuple[Path, list[PlacedTurn]]:
    """Three sentences in two voices on one channel, with where each voice really starts and stops."""
    turns = [Turn("slt", ALICE_LINES[0]), Turn("rms", BOB_LINES[0]), Turn("awb", ALICE_LINES[1])]
    path = media_dir / "mono-call.wav"
    return path, synthesize_conversation(turns, path)


def transcript(utterances: list[Utterance]) -> str:
    return " ".join(utterance.text for utterance in utterances)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".ogg", ".m4a"])
def test_audio_formats_are_transcribed(recognizer: SpeechRecognizer, media_dir: Path, suffix: str) -> None:
    path = media_dir / "sentence.wav"
    if suffix != ".wav":
        path = convert_audio(path, media_dir / f"sentence{suffix}")

    utterances = recognizer.transcribe(path, SpeechOptions(), first_message_index=7, id_prefix=ID_PREFIX)

    assert word_error_rate(SENTENCE, transcript(utterances)) < 0.35
    assert [utterance.id for utterance in utterances] == [
        f"{ID_PREFIX}{index:06d}" for index in range(7, 7 + len(utterances))
    ]
    assert all(len(utterance.id) == 16 and utterance.id.isdigit() for utterance in utterances)
    assert {utterance.speaker.name for utterance in utterances} == {"Speaker 1"}
    assert all(utterance.channel is None for utterance in utterances)


def test_word_timings_are_ordered_and_inside_the_recording(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    # Mono mix of the three-turn call: several sentences, so ordering across utterances is checked too.
    utterances = recognizer.transcribe(media_dir / "call.wav", SpeechOptions(), id_prefix=ID_PREFIX)
    duration = 12.5  # generous upper bound of the synthesized call (about 10.5 s)

    assert len(utterances) >= 3
    words = [word for utterance in utterances for word in utterance.words or []]
    assert words
    for word in words:
        assert 0.0 <= word.start_offset <= word.end_offset <= duration
        assert word.score is not None and 0.0 <= word.score <= 1.0
    assert all(earlier.start_offset <= later.start_offset for earlier, later in itertools.pairwise(words))
    for utterance in utterances:
        assert utterance.words
        assert utterance.start_offset == utterance.words[0].start_offset
        assert utterance.end_offset == utterance.words[-1].end_offset
        assert utterance.text == " ".join(word.word for word in utterance.words)


def test_word_times_match_where_each_sentence_is_spoken(
    recognizer: SpeechRecognizer, mono_call: tuple[Path, list[PlacedTurn]]
) -> None:
    path, placed = mono_call
    utterances = recognizer.transcribe(path, SpeechOptions(), id_prefix=ID_PREFIX)

    words = [word for utterance in utterances for word in utterance.words or []]
    for turn in placed:
        # Words whose middle falls inside this sentence's audio (the 0.6 s pauses keep sentences apart).
        inside = [w for w in words if turn.start <= (w.start_offset + w.end_offset) / 2 <= turn.end]
        assert word_error_rate(turn.text, " ".join(word.word for word in inside)) < 0.35
        assert inside[0].start_offset == pytest.approx(turn.speech_start, abs=0.5)
        assert inside[-1].end_offset == pytest.approx(turn.speech_end, abs=0.5)


def test_stereo_with_channel_metadata_names_each_channels_speaker(
    recognizer: SpeechRecognizer, media_dir: Path
) -> None:
    options = SpeechOptions.model_validate(
        {
            "channelMetadata": [
                {"channel": 1, "speaker": {"name": "Alice", "email": "alice@example.com"}},
                {"channel": 2, "speaker": {"name": "Bob", "email": "bob@example.com"}},
            ]
        }
    )

    utterances = recognizer.transcribe(media_dir / "call.wav", options, id_prefix=ID_PREFIX)

    alice = [utterance for utterance in utterances if utterance.speaker.name == "Alice"]
    bob = [utterance for utterance in utterances if utterance.speaker.name == "Bob"]
    assert len(alice) + len(bob) == len(utterances)
    assert {utterance.channel for utterance in alice} == {1}
    assert {utterance.channel for utterance in bob} == {2}
    assert alice[0].speaker.email == "alice@example.com"
    assert word_error_rate(" ".join(ALICE_LINES), transcript(alice)) < 0.35
    assert word_error_rate(" ".join(BOB_LINES), transcript(bob)) < 0.35
    # Merged by time: Alice opens, Bob answers, Alice closes.
    assert [utterance.start_offset or 0.0 for utterance in utterances] == sorted(
        utterance.start_offset or 0.0 for utterance in utterances
    )
    assert utterances[0].speaker.name == "Alice" and utterances[-1].speaker.name == "Alice"
    assert [utterance.id for utterance in utterances] == [f"{ID_PREFIX}{i:06d}" for i in range(len(utterances))]


def test_separate_recognition_without_names_numbers_the_speakers(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    options = SpeechOptions(enable_separate_recognition_per_channel=True)
    utterances = recognizer.transcribe(media_dir / "call.wav", options, id_prefix=ID_PREFIX)
    assert {(utterance.channel, utterance.speaker.name) for utterance in utterances} == {
        (1, "Speaker 1"),
        (2, "Speaker 2"),
    }


def test_stereo_without_channel_options_is_one_speaker(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    utterances = recognizer.transcribe(media_dir / "call.wav", SpeechOptions(), id_prefix=ID_PREFIX)
    assert {utterance.speaker.name for utterance in utterances} == {"Speaker 1"}
    assert word_error_rate(" ".join([ALICE_LINES[0], BOB_LINES[0], ALICE_LINES[1]]), transcript(utterances)) < 0.35


def test_video_with_audio_is_transcribed(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    video = make_video(media_dir / "with-audio.mp4", wav_path=media_dir / "sentence.wav")
    utterances = recognizer.transcribe(video, SpeechOptions(), id_prefix=ID_PREFIX)
    assert word_error_rate(SENTENCE, transcript(utterances)) < 0.35


def test_custom_vocabulary_spelling_reaches_the_transcript(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    options = SpeechOptions(custom_vocabulary=["Marketing-Team"])
    utterances = recognizer.transcribe(media_dir / "sentence.wav", options, id_prefix=ID_PREFIX)
    assert "Marketing-Team" in transcript(utterances)


def test_video_without_audio_raises_no_audio_track(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    video = make_video(media_dir / "silent-film.mp4", wav_path=None)
    with pytest.raises(NoAudioTrack, match="no audio track"):
        recognizer.transcribe(video, SpeechOptions(), id_prefix=ID_PREFIX)


@pytest.mark.parametrize("name", ["upload.mp3", "upload.bin", "upload"])
def test_garbage_bytes_raise_media_error(recognizer: SpeechRecognizer, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not audio, just some text pretending to be a file\n" * 50)
    with pytest.raises(MediaError, match="not a decodable audio/video file") as raised:
        recognizer.transcribe(path, SpeechOptions(), id_prefix=ID_PREFIX)
    assert not isinstance(raised.value, NoAudioTrack)


def test_non_english_language_is_refused(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    with pytest.raises(MediaError, match="language fr-FR is not supported by this engine"):
        recognizer.transcribe(media_dir / "sentence.wav", SpeechOptions(language_code="fr-FR"), id_prefix=ID_PREFIX)


def test_id_prefix_must_be_ten_digits(recognizer: SpeechRecognizer, media_dir: Path) -> None:
    with pytest.raises(ValueError, match="10 digits"):
        recognizer.transcribe(media_dir / "sentence.wav", SpeechOptions(), id_prefix="12345")
