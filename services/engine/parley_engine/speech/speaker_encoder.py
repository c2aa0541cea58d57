"""Speaker embeddings without a deep-learning framework: Resemblyzer's voice encoder, run in NumPy.

The ``resemblyzer`` wheel (Apache-2.0) carries its trained weights (``pretrained.pt``, 17 MB): a 3-layer LSTM
over 40-band mel power frames followed by a linear layer, giving a 256-dimensional, L2-normalised "d-vector"
per 1.6-s window. The package itself imports torch; only its weights file is used here, read by a small
reader of PyTorch's legacy checkpoint format that builds nothing but arrays, and the forward pass is the same
arithmetic as ``torch.nn.LSTM``. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

SAMPLE_RATE = 16_000
# Resemblyzer's hyper-parameters (resemblyzer/hparams.py); the weights were trained with exactly these.
MEL_WINDOW_SAMPLES = 400  # 25 ms
MEL_HOP_SAMPLES = 160  # 10 ms
MEL_BANDS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial window
LSTM_LAYERS = 3
TARGET_DBFS = -30.0
# Partial windows per second of speech: Resemblyzer's default (1.3) overlaps them by half; 0.7 barely overlaps
# and halves the work, with the same speaker separation on the diarization evaluation.
PARTIALS_PER_SECOND = 0.7
MIN_LAST_PARTIAL_COVERAGE = 0.75

WEIGHTS_DISTRIBUTION = "resemblyzer"
WEIGHTS_FILE = "resemblyzer/pretrained.pt"
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C

Floats = npt.NDArray[np.float32]


def bundled_weights_path() -> Path | None:
    """``pretrained.pt`` of the installed ``resemblyzer`` distribution, found without importing it (torch)."""
    try:
        distribution = importlib.metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(WEIGHTS_FILE)))
    return path if path.is_file() else None


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements


def _rebuild_tensor(storage: _StorageRef, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], *_: Any):
    return _TensorRef(storage, offset, tuple(shape), tuple(strides))


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64}


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch checkpoint into placeholders; refuses every class but the few a state dict uses."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storage_dtypes: dict[str, np.dtype[Any]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected class in the checkpoint: {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ("storage", storage type, key, location, element count[, view metadata])
        _, storage_type, key, *_ = pid
        reference = _StorageRef(str(key), np.dtype(_STORAGE_DTYPES[storage_type]))
        self.storage_dtypes[reference.key] = reference.dtype
        return reference


def read_legacy_checkpoint(path: Path) -> Any:
    """A checkpoint saved by ``torch.save`` before PyTorch 1.6, with every tensor as a NumPy array.

    That format is four pickles (magic number, protocol, system info, the object), then a pickled list of
    storage keys, then for each key the storage's element count (int64) and its raw little-endian data.
    """
    with path.open("rb") as file:
        if _plain_pickle(file) != _LEGACY_TORCH_MAGIC:
            raise ValueError(f"{path} is not a legacy PyTorch checkpoint")
        _plain_pickle(file)  # protocol version
        system_info = _plain_pickle(file)
        if not isinstance(system_info, dict) or not system_info.get("little_endian", False):
            raise ValueError(f"{path} was not saved on a little-endian machine")
        unpickler = _CheckpointUnpickler(file)
        tree = unpickler.load()
        storages: dict[str, npt.NDArray[Any]] = {}
        for key in _plain_pickle(file):
            dtype = unpickler.storage_dtypes[key]
            count = int.from_bytes(file.read(8), "little")
            storages[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype.newbyteorder("<"))
    return _materialize(tree, storages)


class _PlainUnpickler(pickle.Unpickler):
    """For the checkpoint's header pickles: numbers, strings, lists and dicts, never a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected class in the checkpoint header: {module}.{name}")


def _plain_pickle(file: IO[bytes]) -> Any:
    return _PlainUnpickler(file).load()


def _materialize(tree: Any, storages: Mapping[str, npt.NDArray[Any]]) -> Any:
    """The unpickled object with every tensor placeholder replaced by a (copied, writable) array."""
    if isinstance(tree, _TensorRef):
        base = storages[tree.storage.key]
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[tree.offset :], shape=tree.shape, strides=tuple(step * item for step in tree.strides)
        )
        return np.array(view, dtype=base.dtype.newbyteorder("="))
    if isinstance(tree, dict):
        return type(tree)((key, _materialize(value, storages)) for key, value in tree.items())
    if isinstance(tree, list | tuple):
        return type(tree)(_materialize(value, storages) for value in tree)
    return tree


def _slaney_mel_filters() -> Floats:
    """librosa's default mel filter bank (Slaney scale and area normalisation) for Resemblyzer's STFT."""
    frequencies = np.linspace(0, SAMPLE_RATE / 2, MEL_WINDOW_SAMPLES // 2 + 1)

    def hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        linear_mel = hz / (200.0 / 3)
        log_region = hz >= 1000.0
        mel = linear_mel.copy()
        mel[log_region] = 15.0 + np.log(hz[log_region] / 1000.0) / (np.log(6.4) / 27.0)
        return mel

    def mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        hz = mel * (200.0 / 3)
        log_region = mel >= 15.0
        hz[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_region] - 15.0))
        return hz

    edges = mel_to_hz(np.linspace(0.0, float(hz_to_mel(np.array([SAMPLE_RATE / 2]))[0]), MEL_BANDS + 2))
    widths = np.diff(edges)
    ramps = edges[:, np.newaxis] - frequencies[np.newaxis, :]
    lower = -ramps[:-2] / widths[:-1, np.newaxis]
    upper = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return weights.astype(np.float32)


_MEL_FILTERS = _slaney_mel_filters()
# A periodic Hann window, as librosa's STFT uses.
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(MEL_WINDOW_SAMPLES) / MEL_WINDOW_SAMPLES)).astype(np.float32)


def mel_power_frames(samples: Floats) -> Floats:
    """``librosa.feature.melspectrogram(y, sr=16000, n_fft=400, hop_length=160, n_mels=40)``, frames first.

    Power (not log) mel energies of centred, zero-padded frames: what Resemblyzer feeds its LSTM.
    """
    half = MEL_WINDOW_SAMPLES // 2
    padded = np.pad(samples.astype(np.float32, copy=False), (half, half))
    frame_count = 1 + (padded.size - MEL_WINDOW_SAMPLES) // MEL_HOP_SAMPLES
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_WINDOW_SAMPLES)[::MEL_HOP_SAMPLES][:frame_count]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    return (power.astype(np.float32) @ _MEL_FILTERS.T).astype(np.float32)


def normalized_volume(samples: Floats) -> Floats:
    """Raise quiet speech to -30 dBFS (never lower loud speech), as Resemblyzer's preprocessing does."""
    mean_square = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    if mean_square <= 0.0:
        return samples
    gain_db = TARGET_DBFS - 10 * np.log10(mean_square)
    return samples if gain_db <= 0 else (samples * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def partial_slices(sample_count: int) -> list[slice]:
    """Where the 1.6-s partial windows of an utterance start and end, in mel frames (Resemblyzer's rule)."""
    frame_count = int(np.ceil((sample_count + 1) / MEL_HOP_SAMPLES))
    frame_step = max(1, round(SAMPLE_RATE / PARTIALS_PER_SECOND / MEL_HOP_SAMPLES))
    steps = max(1, frame_count - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(start, start + PARTIAL_FRAMES) for start in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (sample_count - last.start * MEL_HOP_SAMPLES) / (PARTIAL_FRAMES * MEL_HOP_SAMPLES)
    if coverage < MIN_LAST_PARTIAL_COVERAGE and len(slices) > 1:
        slices.pop()
    return slices


def _sigmoid(values: Floats) -> Floats:
    return (0.5 * (1.0 + np.tanh(0.5 * values))).astype(np.float32)


class SpeakerEncoder:
    """Embeds speech as a unit vector that is close for the same voice and far for different voices."""

    def __init__(self, model_state: Mapping[str, Floats]) -> None:
        self._layers = [
            (
                np.ascontiguousarray(model_state[f"lstm.weight_ih_l{layer}"].T),
                np.ascontiguousarray(model_state[f"lstm.weight_hh_l{layer}"].T),
                model_state[f"lstm.bias_ih_l{layer}"] + model_state[f"lstm.bias_hh_l{layer}"],
            )
            for layer in range(LSTM_LAYERS)
        ]
        self._linear_weight = np.ascontiguousarray(model_state["linear.weight"].T)
        self._linear_bias = model_state["linear.bias"]

    @classmethod
    def from_file(cls, path: Path) -> SpeakerEncoder:
        return cls(read_legacy_checkpoint(path)["model_state"])

    def embed_partials(self, mels: Floats) -> Floats:
        """``torch.nn.LSTM`` (gates in/forget/cell/out), then ReLU(linear(last hidden state)), L2-normalised.

        ``mels``: (windows, 160, 40) mel power frames; returns (windows, 256).
        """
        # One BLAS thread: 160 small products per layer are latency-bound, and OpenBLAS's worker threads, spinning
        # against CTranslate2's for the same cores, made them about 30 times slower than one thread on a busy host.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._forward(mels)

    def _forward(self, mels: Floats) -> Floats:
        sequence = mels
        hidden = np.zeros((mels.shape[0], 0), dtype=np.float32)
        for weight_input, weight_hidden, bias in self._layers:
            size = weight_hidden.shape[0]
            # The input projection of every time step at once; only the recurrence needs the loop.
            projected = sequence @ weight_input + bias
            hidden = np.zeros((mels.shape[0], size), dtype=np.float32)
            cell = np.zeros_like(hidden)
            outputs = np.empty((mels.shape[0], mels.shape[1], size), dtype=np.float32)
            for step in range(mels.shape[1]):
                gates = projected[:, step] + hidden @ weight_hidden
                sigmoids = _sigmoid(gates)  # the input, forget and output gates (the cell slice is unused)
                input_gate, forget_gate = sigmoids[:, :size], sigmoids[:, size : 2 * size]
                output_gate = sigmoids[:, 3 * size :]
                candidate = np.tanh(gates[:, 2 * size : 3 * size])
                cell = forget_gate * cell + input_gate * candidate
                hidden = output_gate * np.tanh(cell)
                outputs[:, step] = hidden
            sequence = outputs
        embedded = np.maximum(hidden @ self._linear_weight + self._linear_bias, 0.0)
        return _unit_rows(embedded)

    def embed_utterances(self, utterances: Sequence[Floats]) -> Floats:
        """One embedding per utterance: the normalised mean of its partial windows' embeddings, all in one batch."""
        windows: list[Floats] = []
        owners: list[int] = []
        for index, samples in enumerate(utterances):
            slices = partial_slices(samples.size)
            padded_length = slices[-1].stop * MEL_HOP_SAMPLES
            padded = np.pad(normalized_volume(samples), (0, max(0, padded_length - samples.size)))
            mel = mel_power_frames(padded)
            windows.extend(mel[part] for part in slices)
            owners.extend([index] * len(slices))
        if not windows:
            return np.zeros((0, self._linear_bias.size), dtype=np.float32)
        partials = self.embed_partials(np.stack(windows))
        sums = np.zeros((len(utterances), partials.shape[1]), dtype=np.float32)
        np.add.at(sums, np.array(owners), partials)
        return _unit_rows(sums)


def _unit_rows(matrix: Floats) -> Floats:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


EncoderFactory = Callable[[], SpeakerEncoder | None]


def bundled_encoder() -> SpeakerEncoder | None:
    """The encoder with the installed ``resemblyzer`` weights, or None when that package is not installed."""
    path = bundled_weights_path()
    return SpeakerEncoder.from_file(path) if path is not None else None
