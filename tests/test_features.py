"""Features against librosa, windowing, padding, and the budget's segment arithmetic."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from tagger.analysis.features import (
    HOP,
    MIN_SAMPLES,
    N_FFT,
    N_FRAMES,
    N_MELS,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    cut_windows,
    log_mel,
    log_mel_segment,
    mel_filterbank,
    plan_windows,
    repeat_pad,
    window_starts,
)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(len(t))).astype(np.float32)


def test_mel_filterbank_is_librosas_slaney() -> None:
    ref = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    np.testing.assert_allclose(mel_filterbank(), ref, rtol=1e-5, atol=1e-8)


def test_log_mel_matches_librosa() -> None:
    y = _signal(7.3)
    ref = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                         n_mels=N_MELS, pad_mode="reflect").T
    ref = np.log10(1 + 10000 * ref)
    ours = log_mel(y)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (1 + len(y) // HOP, N_MELS)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_loud_audio_stays_finite() -> None:
    # musicnn's float16 cast overflows to +inf for mel power > 6.55 under NumPy 2.
    y = np.clip(_signal(4.0) * 50, -1, 1).astype(np.float32)
    assert np.isfinite(log_mel(y)).all()


def test_segment_frames_equal_full_track_frames() -> None:
    y = _signal(30.0, seed=3)
    full = log_mel(y)
    plan = plan_windows(len(y), budget=4)
    assert len(plan.starts) == 4
    for start, (first, count) in zip(plan.starts, plan.segments):
        if first < 0:
            continue  # the first window needs reflect padding; covered below
        seg = log_mel_segment(y[first:first + count])
        assert seg.shape == (N_FRAMES, N_MELS)
        np.testing.assert_allclose(seg, full[start:start + N_FRAMES], atol=1e-5)


def test_first_segment_with_reflect_padding() -> None:
    y = _signal(10.0, seed=4)
    padded = np.pad(y[:WINDOW_SAMPLES - HOP], (HOP, 0), mode="reflect")
    np.testing.assert_allclose(log_mel_segment(padded), log_mel(y)[:N_FRAMES], atol=1e-5)


def test_windows_have_no_overlap_by_default_and_drop_the_tail() -> None:
    assert window_starts(187 * 3 + 100) == [0, 187, 374]
    assert window_starts(186) == []
    assert window_starts(400, hop=93) == [0, 93, 186]


def test_budget_takes_the_centre_window_of_equal_sections() -> None:
    starts = window_starts(187 * 100, budget=5)
    assert starts == [187 * 10, 187 * 30, 187 * 50, 187 * 70, 187 * 90]
    assert len(set(window_starts(187 * 10, budget=8))) == 8  # never the same window twice
    assert window_starts(187 * 3, budget=5) == [0, 187, 374]  # fewer windows than budget


def test_short_tracks_are_padded_by_repetition_not_dropped() -> None:
    y = _signal(1.2)
    padded = repeat_pad(y)
    assert len(padded) >= MIN_SAMPLES
    np.testing.assert_array_equal(padded[len(y):2 * len(y)], y)
    windows = cut_windows(log_mel(padded), window_starts(len(log_mel(padded))))
    assert windows.shape == (1, N_FRAMES, N_MELS)
    with pytest.raises(ValueError):
        repeat_pad(np.zeros(0, np.float32))
