"""The opt-in bass-boost limit on loud targets (issue 15): a bass the mix lacks, boosted to a loud
reference's, becomes the peaks the clipper then distorts everything on."""
from __future__ import annotations

import importlib

import numpy as np
from scipy.signal import butter, sosfilt

from automix.mastering.chain import linear_phase_firs
from automix.mastering.profile import analyze_profile
from master_signals import song

M = importlib.import_module("automix.mastering.master")
SR = 44100


def _thin_mix_and_bassy_reference():
    mix = song(8.0, SR, seed=3, level_db=-20.0, bright=1.0)
    sos = butter(2, 250.0, btype="highpass", fs=SR, output="sos")
    thin = sosfilt(sos, mix, axis=-1).astype(np.float32)  # the mix lacks its bass
    ref = song(8.0, SR, seed=4, level_db=-12.0, bright=1.0)
    return thin, ref


def _bass_gain_db(settings) -> float:
    """Mid response of the planned chain at 80 Hz relative to 2 kHz (dB)."""
    fir = linear_phase_firs(settings, SR)[0]
    n = 1 << 15
    h = np.abs(np.fft.rfft(fir, n=n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    return float(20 * np.log10(h[np.argmin(np.abs(f - 80))] / h[np.argmin(np.abs(f - 2000))]))


def test_loud_targets_limit_the_bass_boost_when_asked_and_say_so():
    thin, ref = _thin_mix_and_bassy_reference()
    mix_p, ref_p = analyze_profile(thin, SR), analyze_profile(ref, SR)
    opts = M.MasteringOptions(loud_bass_boost_db=6.0)
    notes: list[str] = []
    loud, _ = M.plan_chain(mix_p, ref_p, SR, opts, -20.0, target_lufs=-9.0, notes=notes)
    quiet, _ = M.plan_chain(mix_p, ref_p, SR, opts, -20.0, target_lufs=-16.0)
    default, _ = M.plan_chain(mix_p, ref_p, SR, M.MasteringOptions(), -20.0, target_lufs=-9.0)
    assert M.MasteringOptions().loud_bass_boost_db is None  # opt-in: the default keeps the full match
    assert _bass_gain_db(quiet) > 6.0 + 3.0  # the match asks much more
    assert abs(_bass_gain_db(quiet) - _bass_gain_db(default)) < 0.1
    assert _bass_gain_db(loud) < _bass_gain_db(quiet) - 3.0
    assert notes and "bass boost held at +6 dB" in notes[0] and "--loud-bass-boost" in notes[0]
    # the limited chain's peaks driven to the target clip less: the energy above the ceiling drops
    from automix.loudness import integrated_loudness
    from automix.mastering.chain import render_chain

    over = []
    for settings in (loud, default):
        y = render_chain(thin, SR, settings).astype(np.float64)
        y *= 10 ** ((-9.0 - integrated_loudness(y, SR)) / 20)
        over.append(float(np.sum(np.maximum(np.abs(y) - 10 ** (-1 / 20), 0) ** 2) / np.sum(y ** 2)))
    assert over[0] < 0.7 * over[1]


def test_cli_reads_the_bass_limit():
    import argparse

    from automix.cli import master as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["master", "a.wav", "-o", "b.wav"])
    assert cli._options(args).loud_bass_boost_db is None
    args = parser.parse_args(["master", "a.wav", "-o", "b.wav", "--loud-bass-boost", "6"])
    assert cli._options(args).loud_bass_boost_db == 6.0
