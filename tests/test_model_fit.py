"""Feature-space fitting of the mix model (automix.model.fit_inverse) on synthesised multitracks."""
from dataclasses import dataclass

import numpy as np
import torch

from automix.dsp.params import STRIP
from automix.model import fit_inverse
from automix.model.roles import role_from_name

torch.set_num_threads(1)
SR = 16000


@dataclass
class _Song:
    """The parts of a cached song that make_examples reads."""

    stems: np.ndarray
    roles: tuple
    name: str = "song"
    sample_rate: int = SR

    @property
    def num_samples(self) -> int:
        return self.stems.shape[-1]

    def activity_db(self) -> np.ndarray:
        return np.zeros(4)


def _songs(n: int = 3):
    """Songs with the same instruments at the same levels, in different keys and tempos."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    out = []
    for k in range(n):
        kick = 0.5 * np.exp(-20 * ((t * (2 + 0.25 * k)) % 1)) * np.sin(2 * np.pi * (55 + 3 * k) * t)
        bass = 0.2 * np.sin(2 * np.pi * (80 + 10 * k) * t)
        hats = 0.02 * np.diff(rng.standard_normal(len(t) + 1))
        stems = np.stack([np.stack([s, s]) for s in (kick, bass, hats)]).astype(np.float32)
        out.append(_Song(stems, tuple(role_from_name(n) for n in ("kick", "bass", "hihat")), f"song{k}"))
    return out


def test_exact_inverse_has_zero_loss_and_wrong_gains_do_not():
    from automix.perturb import Perturbation

    p = Perturbation(gain_db=9.0, pan=0.0, eq_gain_db=0.0, tilt_db=6.0, compression_probability=0.0)
    stems = torch.randn(2, 3, 2, 100)
    strip = p.sample_strip(stems, torch.Generator().manual_seed(0))
    inverse = STRIP.neutral.repeat(2, 3, 1)
    for name in ("eq.low_shelf.freq_hz", "eq.high_shelf.freq_hz"):
        inverse[..., STRIP.index(name)] = strip[..., STRIP.index(name)]
    for name in ("gain_db", "eq.low_shelf.gain_db", "eq.high_shelf.gain_db"):
        inverse[..., STRIP.index(name)] = -strip[..., STRIP.index(name)]
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, parts = fit_inverse.inverse_loss(inverse, strip, mask, SR)
    assert parts["balance_db2"] < 1e-6 and parts["tone_db2"] < 1e-6 and parts["offset_db2"] < 1e-6
    # A common level change is free for the balance; a per-stem error is not.
    shifted = inverse.clone()
    shifted[..., STRIP.index("gain_db")] += 3.0
    assert fit_inverse.inverse_loss(shifted, strip, mask, SR)[1]["balance_db2"] < 1e-6
    wrong = inverse.clone()
    wrong[0, 0, STRIP.index("gain_db")] += 6.0
    assert fit_inverse.inverse_loss(wrong, strip, mask, SR)[1]["balance_db2"] > 1.0
    # Doing nothing leaves the perturbation's own spread.
    nothing = STRIP.neutral.repeat(2, 3, 1)
    assert fit_inverse.inverse_loss(nothing, strip, mask, SR)[1]["tone_db2"] > 0.5


def test_make_and_fit_learn_to_undo_the_perturbation_on_songs_never_seen(tmp_path):
    songs = _songs(6)
    written = fit_inverse.make_examples(songs, tmp_path, 128, excerpt_seconds=1.0, batch=8, segments=2,
                                        log=lambda s: None)
    assert len(written) == 16
    examples = fit_inverse.load_examples(tmp_path)
    assert examples["stems"].shape[0] == 128 and examples["group"].unique().numel() == 4
    folder = tmp_path.name
    assert examples["song_names"] and set(examples["song_names"]) <= {f"{folder}/song{k}" for k in range(6)}
    assert examples["bands_db"].shape == (128, 16, len(fit_inverse.TONE_FREQS_HZ))
    # The benchmark's protocol: gains within +/-9 dB.
    gi = STRIP.index("gain_db")
    gains = examples["perturbation"][..., gi][examples["mask"]]
    assert float(gains.abs().max()) <= 9.0 and float(gains.abs().max()) > 7.0
    held_out = f"{folder}/song5"
    assert (examples["song"] == examples["song_names"].index(held_out)).sum() > 10
    model, valid = fit_inverse.fit(examples, config=fit_inverse.MixModelConfig(d_model=32, n_heads=2, n_layers=1),
                                   steps=200, batch=32, valid_songs=[held_out], log=lambda s: None)
    # The stems' levels are random, but each instrument sits at the same level in every
    # song: on the song it never saw, the fitted model recovers most of the balance that
    # doing nothing leaves (the benchmark's measure, LU).
    assert set(valid["songs"]) == {held_out}
    assert valid["nothing_balance_lu"] > 3.0
    assert valid["balance_lu"] < 0.35 * valid["nothing_balance_lu"], valid


def test_validation_songs_come_from_every_folder():
    names = [f"midi/s{k:02d}" for k in range(63)] + [f"lmms/t{k:02d}" for k in range(14)]
    chosen = fit_inverse.choose_valid_songs(names, 0.13, seed=0)
    assert chosen == fit_inverse.choose_valid_songs(list(reversed(names)), 0.13, seed=0)
    assert sum(c.startswith("midi/") for c in chosen) == 8 and sum(c.startswith("lmms/") for c in chosen) == 2
    assert fit_inverse.choose_valid_songs(["a/x"], 0.5) == []


def test_fit_on_every_song_keeps_the_last_averaged_weights(tmp_path):
    """``valid_fraction=0`` fits on all examples (no validation) and returns the last step's
    weights; with ``ema`` those are the moving average, which still undoes the perturbation."""
    songs = _songs(4)
    fit_inverse.make_examples(songs, tmp_path, 64, excerpt_seconds=1.0, batch=8, segments=2, log=lambda s: None)
    examples = fit_inverse.load_examples(tmp_path)
    config = fit_inverse.MixModelConfig(d_model=32, n_heads=2, n_layers=1)
    model, result = fit_inverse.fit(examples, config=config, steps=150, batch=32, valid_fraction=0.0, ema=0.9,
                                    log=lambda s: None)
    assert result["step"] == 150 and "nothing_balance_lu" not in result
    mask, sr = examples["mask"], int(examples["sample_rate"])
    feats = fit_inverse.MixFeatures(examples["stems"], examples["mix"], None)
    with torch.no_grad():
        pred = model.predict(feats, examples["roles"], mask)
    fitted = fit_inverse.inverse_loss(pred, examples["perturbation"], mask, sr, examples["bands_db"])[1]
    nothing = fit_inverse.inverse_loss(STRIP.neutral.expand_as(pred), examples["perturbation"], mask, sr,
                                       examples["bands_db"])[1]
    assert fitted["balance_lu"] < 0.5 * nothing["balance_lu"], (fitted, nothing)


def test_mix_tone_error_is_the_loudness_matched_spectrum_error_of_the_mix():
    """``mix_tone_error_db`` against a numpy computation: bin-weighted RMS over frequency of the
    mix's band-power change minus its loudness change; a common gain costs nothing."""
    freqs = fit_inverse.TONE_FREQS_HZ.double().numpy()
    rng = np.random.default_rng(1)
    bands = torch.from_numpy(rng.uniform(-60, -20, (1, 3, len(freqs)))).float()
    change = torch.zeros(1, 3, len(freqs))
    change[0, 1, freqs > 1000] = 6.0  # one stem's highs up 6 dB
    mask = torch.ones(1, 3, dtype=torch.bool)
    got = float(fit_inverse.mix_tone_error_db(bands, change, mask, SR, n_fft=1024)[0])
    p = 10 ** (bands[0].double().numpy() / 10)
    before = p.sum(0)
    after = (p * 10 ** (change[0].double().numpy() / 10)).sum(0)
    error = 10 * np.log10(after / before) - 10 * np.log10(after.sum() / before.sum())
    bins = np.fft.rfftfreq(1024, 1 / SR)
    nearest = np.abs(np.log2(np.maximum(bins, 1.0))[:, None] - np.log2(freqs)[None, :]).argmin(1)
    weight = np.bincount(nearest, minlength=len(freqs)) / len(bins)
    assert abs(got - np.sqrt((weight * error ** 2).sum())) < 1e-3
    assert got > 0.5
    # The same level change for every stem in every band: loudness matching removes it.
    assert float(fit_inverse.mix_tone_error_db(bands, torch.full_like(change, 4.0), mask, SR)[0]) < 0.01
    # A padded (masked) stem does not count, whatever its change.
    mask3 = torch.tensor([[True, False, True]])
    assert float(fit_inverse.mix_tone_error_db(bands, change, mask3, SR)[0]) < 0.01


def test_fit_command_saves_an_ensemble_and_scores_it_on_the_held_out_songs(tmp_path, capsys):
    import json

    from automix.model.checkpoint import load_model
    from automix.model.mixnet import MixEnsemble

    examples_dir = tmp_path / "ex"
    fit_inverse.make_examples(_songs(4), examples_dir, 64, excerpt_seconds=1.0, batch=8, segments=2,
                              log=lambda s: None)
    out, report = tmp_path / "ens.pt", tmp_path / "fit.json"
    assert fit_inverse.main(["fit", "--examples", str(examples_dir), "--out", str(out), "--steps", "60",
                             "--batch", "16", "--d-model", "16", "--heads", "2", "--layers", "1",
                             "--valid-songs", "0.3", "--members", "2", "--json", str(report)]) == 0
    model, info = load_model(out)
    assert isinstance(model, MixEnsemble) and len(model.members) == 2 and info["members"] == 2
    assert len(info["member_valid_song_mean_balance_lu"]) == 2
    # song_balance of one member reproduces fit's own validation of that member ...
    examples = fit_inverse.load_examples(examples_dir)
    valid = json.loads(report.read_text())["valid"]
    first = fit_inverse.song_balance(model.members[0], examples, info["valid_songs"])
    for song, scores in valid["songs"].items():
        assert abs(first[song] - scores["balance_lu"]) < 1e-4
    # ... and the ensemble's score is the mean over the held-out songs of its own predictions.
    together = fit_inverse.song_balance(model, examples, info["valid_songs"])
    assert abs(together["mean"] - info["valid_song_mean_balance_lu"]) < 1e-6
    assert "ensemble" in capsys.readouterr().out
