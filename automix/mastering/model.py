"""The mastering model: predicts the chain's EQ bands and width from the mix's and the reference's profiles.

Inputs are per-band differences on a 1/3-octave grid (25 Hz - 16 kHz) between the
reference and the mix (level-normalised stereo spectrum, side-to-mid level), plus
their crest-factor difference. A small MLP maps them to unit positions (sigmoid heads)
of the :data:`PREDICTED` MASTERING parameters (EQ bands and width per region), which
:meth:`ParamTable.from_unit` turns into values.

Training is self-supervised on mastered music (``train/train_mastering.py``): a master
is degraded by a random EQ, width change and gain; the model sees (degraded, original)
and is scored by how well its chain's *exact frequency response* (differentiable biquad
responses) moves the degraded profile back onto the original. At mastering time its
prediction is the starting point of the per-track refinement (a trust-region fit through
the same differentiable response, :func:`automix.mastering.tonal.fit_parametric_eq`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automix.dsp.eq import eq_response
from automix.dsp.params import MASTERING, PARAM_TABLE_VERSION
from automix.errors import ModelError
from automix.weights import read_weights
from automix.mastering.profile import Profile, normalised
from automix.mastering.tonal import FITTED
from automix.mastering.width import side_response_db

#: Parameters the model predicts (EQ bands, then width per region).
PREDICTED: tuple[str, ...] = FITTED + ("width.low_side_db", "width.mid_side_db", "width.high_side_db")

#: Model input grid: every other point of the profile's 1/6-octave grid from 25 Hz to 16 kHz.
FEATURE_RANGE_HZ = (24.0, 16500.0)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "mastering.pt"
"""Shipped weights (used when present)."""

FORMAT_VERSION = 1


def feature_index(freqs_hz: np.ndarray) -> np.ndarray:
    """Indices of the grid points used as features (1/3-octave spacing within :data:`FEATURE_RANGE_HZ`)."""
    idx = np.nonzero((freqs_hz >= FEATURE_RANGE_HZ[0]) & (freqs_hz <= FEATURE_RANGE_HZ[1]))[0]
    return idx[::2]


def _side_mid(p: Profile, n: int) -> np.ndarray:
    return np.clip(p.side_db[:n] - p.mid_db[:n], -30.0, 10.0)


def profile_features(mix: Profile, ref: Profile) -> torch.Tensor:
    """Feature vector ``(2 F + 1,)`` float32 for one (mix, reference) pair."""
    n = min(len(mix.freqs_hz), len(ref.freqs_hz))
    freqs = mix.freqs_hz[:n]
    idx = feature_index(freqs)
    tone = normalised(ref.total_db[:n], freqs) - normalised(mix.total_db[:n], freqs)
    stereo = _side_mid(ref, n) - _side_mid(mix, n)
    crest = (ref.crest_db - mix.crest_db) if math.isfinite(ref.crest_db - mix.crest_db) else 0.0
    feats = np.concatenate([np.clip(tone[idx], -30, 30) / 10.0, np.clip(stereo[idx], -30, 30) / 10.0, [crest / 10.0]])
    return torch.from_numpy(feats.astype(np.float32))


class MasteringNet(nn.Module):
    """MLP: features ``(B, D)`` -> MASTERING values ``(B, P)`` (predicted entries set, others neutral)."""

    def __init__(self, n_features: int, hidden: int = 128):
        super().__init__()
        self.n_features = n_features
        self.hidden = hidden
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                  nn.Linear(hidden, len(PREDICTED)))
        self.register_buffer("index", torch.tensor([MASTERING.index(n) for n in PREDICTED]), persistent=False)
        neutral_unit = MASTERING.to_unit(MASTERING.neutral.double()).float()
        with torch.no_grad():  # start at neutral settings
            self.body[-1].weight.mul_(0.1)
            self.body[-1].bias.copy_(torch.logit(neutral_unit[self.index].clamp(0.02, 0.98)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        unit = MASTERING.to_unit(MASTERING.neutral.double()).float().to(features.device)
        unit = unit.expand(features.shape[0], -1).clone()
        unit[:, self.index] = torch.sigmoid(self.body(features))
        return MASTERING.from_unit(unit)


def restored_spectrum_loss(values: torch.Tensor, mix_mid_db: torch.Tensor, mix_side_db: torch.Tensor,
                           ref_total_db: torch.Tensor, ref_side_mid_db: torch.Tensor, freqs_hz: torch.Tensor,
                           sample_rate: float) -> torch.Tensor:
    """Per-example loss ``(B,)``: tonal (dB^2) + 0.25 x width error after applying ``values`` to the mix's profile.

    The chain's exact response (EQ on mid and side, width on side) is applied to the
    mix's band levels; the restored stereo spectrum is compared with the reference after
    level normalisation (mean over the bands), and the side-to-mid levels likewise.
    """
    eq_db = 20.0 * torch.log10(eq_response(values.double(), MASTERING, freqs_hz, sample_rate).abs().clamp_min(1e-9))
    side_db = side_response_db(values.double(), freqs_hz, sample_rate)
    mid = mix_mid_db + eq_db
    side = mix_side_db + eq_db + side_db
    total = 10.0 * torch.log10(torch.pow(10.0, mid / 10.0) + torch.pow(10.0, side / 10.0) + 1e-30)
    err = (total - total.mean(-1, keepdim=True)) - (ref_total_db - ref_total_db.mean(-1, keepdim=True))
    width_err = (side - mid).clamp(-30, 10) - ref_side_mid_db
    return (err ** 2).mean(-1) + 0.25 * (width_err ** 2).mean(-1)


def save_model(model: MasteringNet, path: str | Path, meta: dict) -> Path:
    """Atomically save weights + metadata (loadable with ``weights_only=True``)."""
    import io

    from automix.mastering.report import atomic_write_bytes

    payload = {"format_version": FORMAT_VERSION, "param_table_version": PARAM_TABLE_VERSION,
               "predicted": list(PREDICTED), "n_features": model.n_features, "hidden": model.hidden,
               "state_dict": model.state_dict(), "meta": meta}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = atomic_write_bytes(Path(path), buffer.getvalue(), overwrite=True)
    return path


def load_model(path: str | Path = DEFAULT_MODEL) -> MasteringNet:
    """Load a :class:`MasteringNet` checkpoint; raises :class:`ModelError` with a clear message."""
    path = Path(path)
    payload = read_weights(path, "mastering-model", "train one with 'python -m train.train_mastering'")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: not an automix mastering model (or from another version)")
    if payload.get("predicted") != list(PREDICTED):
        raise ModelError(f"{path}: predicts other parameters than this automix version; retrain it")
    model = MasteringNet(int(payload["n_features"]), int(payload["hidden"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def predict_values(model: MasteringNet, mix: Profile, ref: Profile) -> torch.Tensor:
    """MASTERING values ``(P,)`` the model proposes for ``mix`` towards ``ref``."""
    with torch.no_grad():
        return model(profile_features(mix, ref)[None])[0].float()
