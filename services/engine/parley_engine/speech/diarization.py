"""Who spoke when in single-channel audio: speaker embeddings of the recognized sentences, clustered.

Each recognized sentence (its span from first word start to last word end) is embedded with the speaker
encoder; sentences are grouped by average-linkage agglomerative clustering on cosine similarity, merging while
the two closest groups are more alike than ``SAME_SPEAKER_SIMILARITY`` (or until the caller's speaker count is
reached). Sentences shorter than ``RELIABLE_SECONDS`` give unsteady embeddings ("Okay.", "Sure."), so they do
not shape the groups; each joins the group whose centroid it is closest to. Speakers are numbered by their
first sentence: "Speaker 1" speaks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parley_engine.speech.speaker_encoder import SAMPLE_RATE, SpeakerEncoder

# Chosen on the tuning dialogues of parley_devtools.eval_diarization (never on the ones it reports): the same
# flite voice scores 0.8-0.95 between sentences of a second or more, different voices 0.3-0.7.
SAME_SPEAKER_SIMILARITY = 0.75
RELIABLE_SECONDS = 1.0

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SpeechSpan:
    """Where one sentence is in the recording, in seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


def agglomerate(similarity: Floats, *, threshold: float, speaker_count: int | None = None) -> list[int]:
    """Average-linkage clustering of items by pairwise ``similarity``; a cluster index per item.

    Merges the most similar pair of clusters while their average similarity is at least ``threshold``, or,
    with ``speaker_count``, until exactly that many clusters remain (never fewer than one per item).
    """
    count = similarity.shape[0]
    if count == 0:
        return []
    members: dict[int, list[int]] = {index: [index] for index in range(count)}
    linkage = similarity.astype(np.float64, copy=True)
    np.fill_diagonal(linkage, -np.inf)
    target = max(1, min(speaker_count, count)) if speaker_count else 1
    while len(members) > target:
        alive = np.array(sorted(members))
        sub = linkage[np.ix_(alive, alive)]
        flat = int(np.argmax(sub))
        left, right = (int(alive[flat // alive.size]), int(alive[flat % alive.size]))
        if speaker_count is None and sub.flat[flat] < threshold:
            break
        left_size, right_size = len(members[left]), len(members[right])
        # Lance-Williams update for average linkage: the merged cluster's similarity to every other cluster.
        merged_row = (left_size * linkage[left] + right_size * linkage[right]) / (left_size + right_size)
        linkage[left, :] = merged_row
        linkage[:, left] = merged_row
        linkage[left, left] = -np.inf
        linkage[right, :] = -np.inf
        linkage[:, right] = -np.inf
        members[left] += members.pop(right)
    labels = [0] * count
    for label, items in enumerate(members.values()):
        for item in items:
            labels[item] = label
    return labels


def speaker_labels(
    embeddings: Floats,
    durations: Sequence[float],
    *,
    speaker_count: int | None = None,
    threshold: float = SAME_SPEAKER_SIMILARITY,
) -> list[int]:
    """A 0-based speaker per sentence, numbered in order of first appearance."""
    count = embeddings.shape[0]
    if count == 0:
        return []
    if speaker_count == 1 or count == 1:
        return [0] * count
    reliable = [index for index, seconds in enumerate(durations) if seconds >= RELIABLE_SECONDS]
    if len(reliable) < 2:
        reliable = list(range(count))
    core = embeddings[reliable]
    core_labels = agglomerate(core @ core.T, threshold=threshold, speaker_count=speaker_count)
    cluster_count = max(core_labels) + 1
    centroids = np.stack(
        [core[[i for i, label in enumerate(core_labels) if label == c]].mean(axis=0) for c in range(cluster_count)]
    )
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.argmax(embeddings @ centroids.T, axis=1)
    labels[reliable] = core_labels
    first_seen = {int(label): order for order, label in enumerate(dict.fromkeys(int(label) for label in labels))}
    return [first_seen[int(label)] for label in labels]


class Diarizer:
    """Gives each recognized sentence of a single-channel recording a speaker number."""

    def __init__(self, encoder: SpeakerEncoder, *, threshold: float = SAME_SPEAKER_SIMILARITY) -> None:
        self._encoder = encoder
        self._threshold = threshold

    def speakers(self, samples: Floats, spans: Sequence[SpeechSpan], *, speaker_count: int | None = None) -> list[int]:
        """A 0-based speaker per span; ``speaker_count`` (Symbl's ``diarizationSpeakerCount``) fixes how many."""
        clips = [
            samples[int(span.start * SAMPLE_RATE) : max(int(span.end * SAMPLE_RATE), int(span.start * SAMPLE_RATE) + 1)]
            for span in spans
        ]
        embeddings = self._encoder.embed_utterances(clips)
        return speaker_labels(
            embeddings,
            [span.seconds for span in spans],
            speaker_count=speaker_count,
            threshold=self._threshold,
        )
