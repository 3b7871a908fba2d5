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

Mastering itself needs no torch: :func:`load_predictor` reads the same checkpoint into numpy
arrays (:func:`automix.weights.read_weight_arrays`) and :class:`ArrayMasteringNet` runs the same
MLP in numpy (float32, exact GELU), equal to the torch model to float rounding (tested). The torch
:class:`MasteringNet` is for training; it is defined on first use (importing torch then).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from automix.dsp.params import MASTERING, PARAM_TABLE_VERSION
from automix.errors import ModelError
from automix.mastering.profile import Profile, normalised
from automix.mastering.tonal import FITTED

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
    """Feature vector ``(2 F + 1,)`` float32 tensor for one (mix, reference) pair (:func:`feature_array`)."""
    import torch

    return torch.from_numpy(feature_array(mix, ref))


def feature_array(mix: Profile, ref: Profile) -> np.ndarray:
    """Feature vector ``(2 F + 1,)`` float32 (numpy) for one (mix, reference) pair."""
    n = min(len(mix.freqs_hz), len(ref.freqs_hz))
    freqs = mix.freqs_hz[:n]
    idx = feature_index(freqs)
    tone = normalised(ref.total_db[:n], freqs) - normalised(mix.total_db[:n], freqs)
    stereo = _side_mid(ref, n) - _side_mid(mix, n)
    crest = (ref.crest_db - mix.crest_db) if math.isfinite(ref.crest_db - mix.crest_db) else 0.0
    feats = np.concatenate([np.clip(tone[idx], -30, 30) / 10.0, np.clip(stereo[idx], -30, 30) / 10.0, [crest / 10.0]])
    return feats.astype(np.float32)


@lru_cache(maxsize=1)
def _torch_net_class():
    import torch
    from torch import nn

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

    MasteringNet.__module__ = __name__
    MasteringNet.__qualname__ = "MasteringNet"
    return MasteringNet


def __getattr__(name: str):
    if name == "MasteringNet":  # the torch model, defined when first asked for (training, tests)
        return _torch_net_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ArrayMasteringNet:
    """The mastering MLP in numpy (inference only): the weights of a :class:`MasteringNet` checkpoint.

    ``Linear -> GELU -> Linear -> GELU -> Linear -> sigmoid`` in float32 (GELU exact, by the error
    function), the sigmoid outputs placed at the predicted parameters' unit positions and mapped to
    values by :meth:`ParamTable.from_unit` (float32, like the torch model's).
    """

    def __init__(self, state: dict, n_features: int, hidden: int):
        self.n_features, self.hidden = int(n_features), int(hidden)
        try:
            self.layers = [(np.asarray(state[f"body.{i}.weight"], np.float32), np.asarray(state[f"body.{i}.bias"], np.float32))
                           for i in (0, 2, 4)]
        except KeyError as exc:
            raise ModelError(f"mastering model weights lack {exc.args[0]}") from None
        shapes = [w.shape for w, _ in self.layers]
        if shapes != [(self.hidden, self.n_features), (self.hidden, self.hidden), (len(PREDICTED), self.hidden)]:
            raise ModelError(f"mastering model weights have shapes {shapes}, not those of its declared size")
        self.index = np.array([MASTERING.index(n) for n in PREDICTED])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Features ``(B, D)`` float32 -> MASTERING values ``(B, P)`` float32."""
        from scipy.special import erf

        h = np.asarray(features, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = (0.5 * h * (1.0 + erf(h / np.float32(math.sqrt(2.0))))).astype(np.float32)
        neutral = MASTERING.neutral_like(dtype=np.float64)
        unit = np.repeat(MASTERING.to_unit(neutral).astype(np.float32)[None], h.shape[0], axis=0)
        unit[:, self.index] = 1.0 / (1.0 + np.exp(-h))
        return MASTERING.from_unit(unit)


def restored_spectrum_loss(values: torch.Tensor, mix_mid_db: torch.Tensor, mix_side_db: torch.Tensor,
                           ref_total_db: torch.Tensor, ref_side_mid_db: torch.Tensor, freqs_hz: torch.Tensor,
                           sample_rate: float) -> torch.Tensor:
    """Per-example loss ``(B,)``: tonal (dB^2) + 0.25 x width error after applying ``values`` to the mix's profile.

    The chain's exact response (EQ on mid and side, width on side) is applied to the
    mix's band levels; the restored stereo spectrum is compared with the reference after
    level normalisation (mean over the bands), and the side-to-mid levels likewise.
    """
    import torch

    from automix.dsp.eq import eq_response
    from automix.mastering.width import side_response_db

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

    import torch

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
    from automix.weights import read_weights

    path = Path(path)
    payload = _checked(path, read_weights(path, "mastering-model", HINT))
    model = _torch_net_class()(int(payload["n_features"]), int(payload["hidden"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


HINT = "train one with 'python -m train.train_mastering'"


def _checked(path: Path, payload: dict) -> dict:
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: not an automix mastering model (or from another version)")
    if payload.get("predicted") != list(PREDICTED):
        raise ModelError(f"{path}: predicts other parameters than this automix version; retrain it")
    return payload


def load_predictor(path: str | Path = DEFAULT_MODEL) -> ArrayMasteringNet:
    """Load a :class:`MasteringNet` checkpoint as an :class:`ArrayMasteringNet` (numpy, no torch import);
    raises :class:`ModelError` like :func:`load_model`."""
    from automix.weights import read_weight_arrays

    path = Path(path)
    payload = _checked(path, read_weight_arrays(path, "mastering-model", HINT))
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not an automix mastering model (no weights)")
    return ArrayMasteringNet(state, int(payload["n_features"]), int(payload["hidden"]))


def predict_values(model, mix: Profile, ref: Profile):
    """MASTERING values ``(P,)`` float32 the model proposes for ``mix`` towards ``ref``: a torch tensor from a
    :class:`MasteringNet`, a numpy array from an :class:`ArrayMasteringNet`."""
    if isinstance(model, ArrayMasteringNet):
        return model(feature_array(mix, ref)[None])[0].astype(np.float32)
    import torch

    with torch.no_grad():
        return model(profile_features(mix, ref)[None])[0].float()
