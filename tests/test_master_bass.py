"""The bass-boost limit on loud targets (issue 15): a bass the mix lacks, boosted to a loud reference's,
becomes the peaks the clipper then distorts everything on; the limit takes the largest boosts down as
far as a tonal budget allows. And the limiter behind the clipper runs short times."""
from __future__ import annotations

import importlib

import numpy as np
from scipy.signal import sosfilt

from automix.mastering.chain import linear_phase_firs
from automix.mastering.profile import analyze_profile
from master_signals import song

M = importlib.import_module("automix.mastering.master")
SR = 44100


def _thin_mix_and_bassy_reference():
    from automix.dsp.biquad import design_peaking

    mix = song(8.0, SR, seed=3, level_db=-20.0, bright=1.0)
    b, a = design_peaking(np.float64(80.0), -15.0, 1.2, SR)
    thin = sosfilt(np.concatenate([b, a])[None], mix, axis=-1).astype(np.float32)  # the mix lacks its low bass
    ref = song(8.0, SR, seed=4, level_db=-12.0, bright=1.0)
    return thin, ref


def _bass_gain_db(settings) -> float:
    """Mid response of the planned chain at 80 Hz relative to 2 kHz (dB)."""
    fir = linear_phase_firs(settings, SR)[0]
    n = 1 << 15
    h = np.abs(np.fft.rfft(fir, n=n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    return float(20 * np.log10(h[np.argmin(np.abs(f - 80))] / h[np.argmin(np.abs(f - 2000))]))


def test_loud_targets_limit_the_bass_boost_within_the_tone_budget_and_say_so():
    thin, ref = _thin_mix_and_bassy_reference()
    mix_p, ref_p = analyze_profile(thin, SR), analyze_profile(ref, SR)
    opts = M.MasteringOptions()
    assert opts.bass_tone_db == 1.0
    notes: list[str] = []
    loud, _ = M.plan_chain(mix_p, ref_p, SR, opts, -20.0, target_lufs=-9.0, notes=notes)
    quiet, _ = M.plan_chain(mix_p, ref_p, SR, opts, -20.0, target_lufs=-16.0)
    free, _ = M.plan_chain(mix_p, ref_p, SR, M.MasteringOptions(bass_tone_db=None), -20.0, target_lufs=-9.0)
    assert _bass_gain_db(quiet) > M.LOUD_BASS_FLOOR_DB + 3.0  # the match asks much more
    quiet_free, _ = M.plan_chain(mix_p, ref_p, SR, M.MasteringOptions(bass_tone_db=None), -20.0, target_lufs=-16.0)
    assert abs(_bass_gain_db(quiet) - _bass_gain_db(quiet_free)) < 0.01  # a quiet target: no limit
    # no budget on the loud target: the full match too (its low end designed the plain way, see FINE_LOW_END)
    assert abs(_bass_gain_db(quiet) - _bass_gain_db(free)) < 1.5
    assert _bass_gain_db(loud) < _bass_gain_db(quiet) - 2.0
    assert notes and "bass boost held at +" in notes[0] and "--bass-tone none" in notes[0]
    # the limited chain driven to the target clips less: the energy above the ceiling drops
    from automix.loudness import integrated_loudness
    from automix.mastering.chain import render_chain

    over = []
    for settings in (loud, free):
        y = render_chain(thin, SR, settings).astype(np.float64)
        y *= 10 ** ((-9.0 - integrated_loudness(y, SR)) / 20)
        over.append(float(np.sum(np.maximum(np.abs(y) - 10 ** (-1 / 20), 0) ** 2) / np.sum(y ** 2)))
    assert over[0] < 0.97 * over[1]


def test_bass_limit_is_the_lowest_cap_within_the_budget():
    f = np.geomspace(20, 20000, 61)
    t = np.where(f < 120, 15.0, 0.0) + np.where((f > 1000) & (f < 3000), -2.0, 0.0)

    def cost(cap):
        d = np.where(f < M.LOUD_BASS_HZ, np.minimum(t, cap) - t, 0.0)[(f >= 31.5) & (f <= 16000)]
        return float(np.sqrt(np.mean((d - d.mean()) ** 2)))

    cap, c = M.bass_limit(f, t, 1.0)
    assert M.LOUD_BASS_FLOOR_DB < cap < 15.0 and abs(c - 1.0) < 1e-3 and abs(cost(cap) - c) < 1e-9
    assert cost(cap - 0.05) > 1.0  # lower would cost more than the budget
    assert M.bass_limit(f, t, 20.0)[0] == M.LOUD_BASS_FLOOR_DB  # never below the floor
    small = np.where(f < 120, 4.0, 0.0)
    assert M.bass_limit(f, small, 0.1) == (4.0, 0.0)  # boosts under the floor are kept


def test_limiter_behind_the_clipper_runs_short_times():
    assert M.MasteringOptions().limiter_times() == (1.5, 30.0)
    assert M.MasteringOptions(clipper=False).limiter_times() == (5.0, 150.0)
    assert M.MasteringOptions(lookahead_ms=3.0).limiter_times() == (3.0, 30.0)


def test_cli_reads_the_bass_tone_budget():
    import argparse

    from automix.cli import master as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["master", "a.wav", "-o", "b.wav"])
    assert cli._options(args).bass_tone_db == 1.0
    args = parser.parse_args(["master", "a.wav", "-o", "b.wav", "--bass-tone", "none"])
    assert cli._options(args).bass_tone_db is None
