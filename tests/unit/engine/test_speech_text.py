"""Speech post-processing without the model: sentence re-splitting, vocabulary correction, options, WER."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from parley_engine.speech import SpeechOptions
from parley_engine.speech.recognizer import joined_words
from parley_engine.speech.sentences import RecognizedWord, sentence_text, split_sentences
from parley_engine.speech.vocabulary import VocabularyCorrector, edit_distance

from parley_devtools.eval_speech import normalize_words, word_error_rate


def spoken(text: str, *, start: float = 0.0, step: float = 0.3, pause_before: dict[int, float] | None = None):
    """Words of ``text`` at regular times, with extra silence before the given word indexes."""
    words = []
    clock = start
    for index, token in enumerate(text.split()):
        clock += (pause_before or {}).get(index, 0.0)
        words.append(RecognizedWord(text=token, start=clock, end=clock + step * 0.8, probability=0.9))
        clock += step
    return words


def texts(words: list[RecognizedWord]) -> list[str]:
    return [sentence_text(sentence) for sentence in split_sentences(words)]


def test_segments_cut_mid_sentence_are_rejoined_and_split_at_punctuation() -> None:
    # Whisper's segments might have been "Hello everyone, can we" / "review it? I will send it." — words don't care.
    words = spoken("Hello everyone, can we review it? I will send it.")
    assert texts(words) == ["Hello everyone, can we review it?", "I will send it."]


def test_abbreviations_and_quotes_do_not_confuse_sentence_ends() -> None:
    assert texts(spoken('Mr. Smith said "done." Then we left!')) == ['Mr. Smith said "done."', "Then we left!"]


def test_a_long_pause_ends_a_sentence_without_punctuation() -> None:
    words = spoken("we are done here next item is budget", pause_before={4: 2.0})
    assert texts(words) == ["we are done here", "next item is budget"]


def test_every_word_lands_in_exactly_one_sentence() -> None:
    words = spoken("One. Two three? Four five six")
    sentences = list(split_sentences(words))
    assert [word for sentence in sentences for word in sentence] == words


def test_edit_distance() -> None:
    assert edit_distance("symbol", "symbl") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


def test_vocabulary_fixes_near_misses_keeping_punctuation_and_times() -> None:
    corrector = VocabularyCorrector(["Symbl", "Kubernetes"])
    words = spoken("We moved symbol, to kubernettes.")
    corrected = corrector.correct(words)
    assert [word.text for word in corrected] == ["We", "moved", "Symbl,", "to", "Kubernetes."]
    assert corrected[2].start == words[2].start


def test_vocabulary_leaves_short_terms_alone_unless_only_case_differs() -> None:
    corrector = VocabularyCorrector(["Acme"])
    assert [word.text for word in corrector.correct(spoken("acme makes acne cream"))] == [
        "Acme",
        "makes",
        "acne",
        "cream",
    ]


def test_multi_word_terms_merge_the_words_they_replace() -> None:
    corrector = VocabularyCorrector(["Parley Engine"])
    words = spoken("the parly engine works")
    corrected = corrector.correct(words)
    assert [word.text for word in corrected] == ["the", "Parley Engine", "works"]
    assert (corrected[1].start, corrected[1].end) == (words[1].start, words[2].end)


def test_options_accept_symbl_camel_case() -> None:
    options = SpeechOptions.model_validate(
        {
            "languageCode": "en-GB",
            "customVocabulary": ["Parley"],
            "channelMetadata": [{"channel": 2, "speaker": {"name": "Ann", "email": "ann@example.com"}}],
        }
    )
    assert options.language_code == "en-GB"
    assert options.channel_metadata[0].speaker.email == "ann@example.com"
    assert options.wants_channels
    assert not SpeechOptions().wants_channels


def test_wer_normalizes_case_punctuation_and_numbers() -> None:
    assert normalize_words("Revenue grew 12% at 10:30, on the 1st!") == (
        ["revenue", "grew", "twelve", "percent", "at", "ten", "thirty", "on", "the", "first"]
    )
    assert word_error_rate("Can you send it by Friday?", "can you send it by friday") == 0.0
    assert word_error_rate("one two three four", "one too three") == pytest.approx(0.5)


def test_wer_spells_out_contractions_and_settles_spellings() -> None:
    assert normalize_words("I'm sure they're OK, it's alright; Mira's behaviour won't change.") == [
        *["i", "am", "sure", "they", "are", "okay", "it", "is", "all", "right"],
        *["mira's", "behavior", "will", "not", "change"],
    ]
    assert word_error_rate("I'll send the behavioural notes.", "I will send the behavioral notes") == 0.0
    # Still a real error when the words differ.
    assert word_error_rate("I'll send it", "I'd send it") == pytest.approx(1 / 4)


@dataclass(frozen=True)
class FasterWhisperWord:
    word: str
    start: float
    end: float
    probability: float


def test_pieces_without_a_leading_space_join_the_word_before_them() -> None:
    # faster-whisper reports "160,000" as " 160" + ",000": one word, spanning both pieces' times.
    pieces = [
        FasterWhisperWord(" He", 0.0, 0.2, 0.9),
        FasterWhisperWord(" asked", 0.2, 0.5, 0.8),
        FasterWhisperWord(" 160", 0.5, 0.9, 0.7),
        FasterWhisperWord(",000", 0.9, 1.3, 0.6),
        FasterWhisperWord(" base.", 1.3, 1.7, 0.95),
        FasterWhisperWord(" ", 1.7, 1.7, 0.1),
    ]

    words = list(joined_words(pieces))

    assert [word.text for word in words] == ["He", "asked", "160,000", "base."]
    assert (words[2].start, words[2].end, words[2].probability) == (0.5, 1.3, 0.6)
    assert sentence_text(words) == "He asked 160,000 base."


def test_a_term_written_as_one_word_may_be_heard_as_several() -> None:
    corrector = VocabularyCorrector(["Symbl.ai", "follow-up"])
    corrected = corrector.correct(spoken("ask symbol ai for a follow up"))
    assert [word.text for word in corrected] == ["ask", "Symbl.ai", "for", "a", "follow-up"]
