"""One-click mixing: the Python API behind ``automix mix``, ``automix suggest`` and ``automix render``.

Flow::

    load_stems(files or folder)        any format / rate / length -> common rate, aligned at
                                       the start, padded to the longest; silent stems and
                                       unreadable files reported, not fatal
    suggest(stems, model)              features of the stems (analysis excerpts at the model's
                                       rate) -> MixModel -> strip settings per stem, then
                                       --amount and group trims           -> MixSettings
    render(stems, settings)            the console's exact path, block by block, full length
    mix(inputs, output, ...)           all of the above + writing the mix, the processed
                                       stems (--stems-out, they sum to the mix), the settings
                                       file and, optionally, a master

Everything raises :mod:`automix.errors` types with messages a musician understands.

A mix from a checkpoint runs without torch: the model's numpy inference
(:mod:`automix.model.inference`, :mod:`automix.model.array_features`), numpy settings and the
console's numpy kernel path. Torch is imported only where it is needed -- a model passed in
memory (a torch :class:`~automix.model.mixnet.MixModel`), a ``reference`` (its fader fit is a
gradient descent), stems below 22.05 kHz (resampled for the analysis with torchaudio) -- and
then those steps run as before. The functions take and return numpy arrays or torch tensors
(each gives back the kind it was given).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from automix.dsp.biquad import _is_torch
from automix.dsp.params import STRIP
from automix.errors import AudioError, OutputExistsError, SettingsError
from automix.model.inference import ArrayMixEnsemble, ArrayMixModel
from automix.model.roles import GROUPS, ROLES, group_of_role, role_from_name
from automix.settings_io import MixSettings, save_settings
from automix.stems_reader import (AUDIO_EXTENSIONS, MAX_STEMS, SILENCE_PEAK_DBFS, StemAudio,  # noqa: F401
                                  find_stem_files, read_stems)

#: Features are read from at most this much audio per stem (evenly spaced excerpts).
ANALYSIS_SECONDS = 30.0
#: Length of each analysis excerpt.
ANALYSIS_SEGMENT_SECONDS = 3.0
#: From this rate up, the model's features do not depend on the sample rate.
FEATURE_RATE_HZ = 22050
#: Rendering block length (the console carries filter and compressor state across blocks).
BLOCK_SECONDS = 30.0

#: Highest sample peak (dBFS) of a mix whose settings the model chose: above it every fader
#: comes down by the same amount (the balance is unchanged), leaving room for mastering.
MIX_PEAK_CEILING_DBFS = -1.0


# ============================================================================ stems
@dataclass
class Stems:
    """Stems ready for the model and the console: :class:`automix.stems_reader.StemAudio`
    (same fields and meaning) with the audio as ``samples``, a numpy ``[S, 2, T]`` float32 array
    (the reader's memory; a torch tensor given here is viewed as numpy), and ``roles``, indices
    into :data:`automix.model.roles.ROLES`. :attr:`audio` is the same memory as a torch tensor.
    """

    files: list[str]
    paths: list[Path]
    samples: np.ndarray
    sample_rate: int
    roles: list[int]
    silent: list[bool]
    lengths: list[int]
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    peaks_dbfs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if _is_torch(self.samples):
            self.samples = self.samples.detach().cpu().numpy()

    @property
    def audio(self):
        """The audio as a torch ``[S, 2, T]`` float32 tensor sharing :attr:`samples`' memory (imports torch)."""
        import torch

        return torch.from_numpy(self.samples)

    @property
    def num_stems(self) -> int:
        return len(self.files)

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def role_names(self) -> list[str]:
        return [ROLES[r] for r in self.roles]


def peak_dbfs(audio):
    """Sample peak of each item of ``audio`` ``[S, C, T]`` in dBFS, ``[S]`` (a tensor for a tensor,
    an array for an array).

    From the largest and smallest sample (two reductions): no whole-signal ``abs`` copy, which
    for 8 stems of 3.5 minutes would be 0.6 GB of fresh memory.
    """
    flat = audio.reshape(audio.shape[0], -1)
    if not _is_torch(audio):
        if flat.shape[-1] == 0:
            return np.full(audio.shape[0], -240.0)
        peak = np.maximum(flat.max(axis=-1), -flat.min(axis=-1))
        return 20 * np.log10(np.maximum(peak, 1e-12))
    import torch

    if flat.shape[-1] == 0:
        return torch.full((audio.shape[0],), -240.0)
    peak = torch.maximum(flat.amax(dim=-1), -flat.amin(dim=-1))
    return 20 * torch.log10(peak.clamp_min(1e-12))


def load_stems(inputs: str | Path | Sequence[str | Path], sample_rate: int | None = None,
               progress: Callable[[str], None] | None = None) -> Stems:
    """Load stems of any supported format, sample rate, channel count and length, as :class:`Stems`.

    :func:`automix.stems_reader.read_stems` (its parameters, skipping of unreadable files,
    silence and DC handling, and errors) plus roles from the file names.
    """
    return stems_from_audio(read_stems(inputs, sample_rate, progress))


def stems_from_audio(read: StemAudio) -> Stems:
    """:class:`Stems` (with roles from the file names) from stems read by
    :func:`automix.stems_reader.read_stems` (no copy of the audio)."""
    roles = [role_from_name(n) for n in read.files]
    return Stems(read.files, read.paths, read.audio, read.sample_rate, roles, read.silent,
                 read.lengths, read.notes, read.skipped, read.peaks_dbfs)


# ============================================================================ analysis / prediction
def analysis_audio(audio, sample_rate: int, target_rate: int | None = None,
                   max_seconds: float = ANALYSIS_SECONDS,
                   segment_seconds: float = ANALYSIS_SEGMENT_SECONDS):
    """What the model analyses: evenly spaced excerpts (at most ``max_seconds``), resampled.

    Parameters
    ----------
    audio : Tensor or numpy array ``[..., C, T]`` (the result is of the same kind; resampling a
        numpy array imports torch)
    sample_rate : int
    target_rate : int, optional
        Resample the excerpts to this rate. Only needed below 22.05 kHz: the features are
        measured in Hz and ms over 30 Hz-11 kHz, so they read the same from 22.05 kHz up.

    Returns
    -------
    (Tensor ``[..., C, T']``, rate)
    """
    total = audio.shape[-1]
    limit = int(max_seconds * sample_rate)
    if total > limit:
        seg = int(segment_seconds * sample_rate)
        n_seg = max(1, limit // seg)
        starts = np.linspace(0, total - seg, n_seg).astype(int)
        pieces = [audio[..., s: s + seg] for s in starts]
        if _is_torch(audio):
            import torch

            audio = torch.cat(pieces, -1)
        else:
            audio = np.concatenate(pieces, -1)
    if target_rate and target_rate != sample_rate:
        if not _is_torch(audio):
            import torch

            resampled, rate = analysis_audio(torch.from_numpy(np.ascontiguousarray(audio)), sample_rate, target_rate,
                                             max_seconds, segment_seconds)
            return resampled.numpy(), rate
        import torchaudio.functional as AF

        g = math.gcd(int(sample_rate), int(target_rate))
        audio = AF.resample(audio, sample_rate // g, target_rate // g)
        sample_rate = int(target_rate)
    return audio, sample_rate


def load_reference(path: str | Path, sample_rate: int) -> torch.Tensor:
    """A reference mix ``[2, T]`` at ``sample_rate`` (at most :data:`ANALYSIS_SECONDS` analysed)."""
    import torch

    from automix.audio import check_not_silent, load_audio

    ref = load_audio(path, sample_rate=sample_rate, mono_to_stereo=True, downmix=True)
    check_not_silent(ref)  # a silent reference has no balance or tone to follow
    return torch.from_numpy(np.asarray(ref.samples, dtype=np.float32))


def predict_strip(model, stems: Stems, analysis_rate: int | None = None,
                  reference=None, match_reference: bool = True):
    """The model's settings ``[S, P]`` for the non-silent stems; silent stems get neutral settings.

    Parameters
    ----------
    model : MixModel / MixEnsemble (torch: the result is a tensor) or ArrayMixModel /
        ArrayMixEnsemble (numpy inference, no torch: the result is a numpy array; no reference)
    stems : Stems
    analysis_rate : int, optional
        Rate the model was trained at; stems below 22.05 kHz are analysed at this rate
        (from 22.05 kHz up the features do not depend on the rate, so nothing is resampled).
    reference : Tensor ``[2, T]`` at ``stems.sample_rate``, optional
        A mix to follow: the model reads its features, then (``match_reference``) the faders
        are fitted so the stems' summed spectrum takes the reference's shape
        (:func:`automix.reference_balance.match_reference_balance`).
    match_reference : bool
        Fit the faders to the reference (default); False leaves it to the model alone.
    """
    arrays = isinstance(model, (ArrayMixModel, ArrayMixEnsemble))
    if arrays and reference is not None:
        raise SettingsError("following a reference needs the torch model (load it with automix.model.checkpoint)")
    if arrays:
        values = STRIP.neutral_like(stems.num_stems, dtype=np.float32)
    else:
        values = STRIP.neutral.repeat(stems.num_stems, 1)
    active = [i for i, s in enumerate(stems.silent) if not s]
    if not active:
        return values
    target = analysis_rate if stems.sample_rate < FEATURE_RATE_HZ else None
    measured = len(stems.peaks_dbfs) == stems.num_stems  # the peaks measured while reading (else one pass)
    if arrays:
        peak_db = (np.asarray(stems.peaks_dbfs, dtype=np.float32) if measured else peak_dbfs(stems.samples))[active]
        from automix.audio import usable_cpus
        from automix.model.array_features import stem_features_array

        x, rate = analysis_audio(stems.samples, stems.sample_rate, target)  # excerpts of every stem, then the active
        if len(active) != stems.num_stems:
            x = x[active]
        stem_feats, mix_feats = stem_features_array(x[None], rate, workers=usable_cpus())
        pred = model.predict(stem_feats, mix_feats, np.array([[stems.roles[i] for i in active]]))[0]
        values[active] = tidy_settings(STRIP.clamp(pred.astype(np.float32)), peak_db)
        return values
    import torch

    audio = stems.audio if len(active) == stems.num_stems else stems.audio[active]  # no copy when all play
    x, rate = analysis_audio(audio, stems.sample_rate, target)
    ref = None
    if reference is not None:
        ref, _ = analysis_audio(reference, stems.sample_rate, target)
        ref = ref[None]
    roles = torch.tensor([[stems.roles[i] for i in active]])
    model.eval()
    from automix.audio import usable_cpus
    from automix.model.features import items_on_threads

    with torch.no_grad(), items_on_threads(usable_cpus()):  # one stem per CPU, torch single-threaded
        feats = model.analyse(x[None], rate, None, ref)
        pred = model.predict(feats, roles)[0]
    peak_db = (torch.tensor(stems.peaks_dbfs) if measured else peak_dbfs(stems.audio))[active]
    chosen = tidy_settings(STRIP.clamp(pred.float()), peak_db)
    if ref is not None and match_reference:
        from automix.reference_balance import match_reference_balance

        chosen = match_reference_balance(chosen, x, ref[0], rate)
    values[active] = chosen
    return values


def tidy_settings(values: torch.Tensor, peak_dbfs: torch.Tensor) -> torch.Tensor:
    """Switch off processors whose effect the model left below audibility.

    A sigmoid head never outputs exactly "off", so the model's compressor and saturator sit
    a hair away from neutral (ratio 1.03:1 at -0.6 dBFS, 1 % wet...). Such a compressor can
    reduce the gain by at most ``(peak - threshold) * (1 - 1/ratio)``; below 0.2 dB it is
    switched off, as are saturation under 1 % wet or 0.1 dB drive and a high-pass under 1 %.
    Switched-off processors cost the console nothing, so this also speeds up rendering.

    Parameters
    ----------
    values : Tensor or numpy array ``[S, P]`` strip values (the result is of the same kind)
    peak_dbfs : Tensor or array ``[S]`` sample peak of each stem, dBFS
    """
    i = STRIP.index
    if _is_torch(values):
        out = values.clone()
        neutral = STRIP.neutral.to(out.dtype)
        ratio, threshold = out[:, i("comp.ratio")], out[:, i("comp.threshold_db")]
        max_reduction = (peak_dbfs.to(out.dtype) - threshold).clamp_min(0) * (1 - 1 / ratio)
    else:
        out = np.array(values, copy=True)
        neutral = STRIP.neutral_like(dtype=out.dtype)
        ratio, threshold = out[:, i("comp.ratio")], out[:, i("comp.threshold_db")]
        max_reduction = np.maximum(np.asarray(peak_dbfs, dtype=out.dtype) - threshold, 0) * (1 - 1 / ratio)
    comp_off = (max_reduction < 0.2) & (out[:, i("comp.makeup_db")] < 0.05)
    for name in ("comp.ratio", "comp.threshold_db", "comp.makeup_db"):
        out[comp_off, i(name)] = neutral[i(name)]
    sat_off = (out[:, i("sat.mix")] < 0.01) | (out[:, i("sat.drive_db")] < 0.1)
    for name in ("sat.mix", "sat.drive_db"):
        out[sat_off, i(name)] = neutral[i(name)]
    hpf_off = out[:, i("eq.hpf.mix")] < 0.01
    out[hpf_off, i("eq.hpf.mix")] = neutral[i("eq.hpf.mix")]
    return out


def apply_amount_and_trims(values: torch.Tensor, roles: Sequence[int], amount_percent: float = 100.0,
                           group_trims_db: dict[str, float] | None = None,
                           silent: Sequence[bool] | None = None) -> torch.Tensor:
    """Scale settings from untouched (0 %) to the model's (100 %), then add group trims.

    The interpolation runs in each parameter's unit scale (linear parameters linearly,
    log-scaled ones such as frequencies geometrically) from the neutral settings.
    Group trims (dB per group: vocals, bass, drums, music, fx) add to the fader of every
    non-silent stem in the group; faders stay inside their declared range.

    Parameters
    ----------
    values : Tensor or numpy array ``[S, P]`` (the result is of the same kind, float32)
    roles : indices into ROLES, one per stem
    amount_percent : float
        0 to 100.
    group_trims_db : dict, optional

    Raises
    ------
    SettingsError
        Amount outside 0-100 % or an unknown group.
    """
    if not (0.0 <= float(amount_percent) <= 100.0):
        raise SettingsError(f"amount must be between 0 and 100 %, got {amount_percent:g}")
    trims = dict(group_trims_db or {})
    for g, v in trims.items():
        if g not in GROUPS:
            raise SettingsError(f"unknown group {g!r}; groups are {', '.join(GROUPS)}")
        if not math.isfinite(float(v)):
            raise SettingsError(f"group trim for {g} must be a finite number of dB")
    a = float(amount_percent) / 100.0
    if _is_torch(values):
        import torch

        neutral = STRIP.to_unit(STRIP.neutral.double()).expand_as(values)
        unit = STRIP.to_unit(values.double())
        out = STRIP.from_unit(neutral + a * (unit - neutral))
        out = torch.where(torch.isfinite(out), out, STRIP.neutral.double().expand_as(out))
    else:
        values = np.asarray(values)
        neutral_values = STRIP.neutral_like(*values.shape[:-1], dtype=np.float64)
        neutral = STRIP.to_unit(neutral_values)
        unit = STRIP.to_unit(values.astype(np.float64))
        out = STRIP.from_unit(neutral + a * (unit - neutral))
        out = np.where(np.isfinite(out), out, neutral_values)
    gain = STRIP.index("gain_db")
    silent = list(silent) if silent is not None else [False] * len(roles)
    for i, role in enumerate(roles):
        if not silent[i]:
            out[i, gain] = out[i, gain] + float(trims.get(group_of_role(role), 0.0))
    out = STRIP.clamp(out)
    return out.float() if _is_torch(out) else out.astype(np.float32)


def _load_model(model, torch_needed: bool = False) -> tuple[object, dict, str]:
    """The model to predict with, its checkpoint ``info`` and its name: a model given in memory as
    it is; a checkpoint (default ``models/mixer.pt``) for numpy inference
    (:func:`automix.model.inference.load_array_model`), or as a torch model when ``torch_needed``."""
    if not isinstance(model, (str, Path, type(None))):  # ArrayMixModel ..., or a torch MixModel / MixEnsemble
        return model, {}, "(in memory)"
    from automix.model.inference import DEFAULT_MODEL_PATH

    path = Path(model) if model is not None else DEFAULT_MODEL_PATH
    if torch_needed:
        from automix.model.checkpoint import load_model

        loaded, info = load_model(path)
    else:
        from automix.model.inference import load_array_model

        loaded, info = load_array_model(path)
    return loaded, info, str(path)


def suggest(stems: Stems | str | Path | Sequence[str | Path], *, model=None,
            amount_percent: float = 100.0, group_trims_db: dict[str, float] | None = None,
            reference=None, sample_rate: int | None = None,
            match_reference: bool = True) -> tuple[MixSettings, Stems]:
    """Predict per-stem settings.

    Parameters
    ----------
    stems : Stems, or folder / files to load
    model : MixModel / MixEnsemble (torch) or ArrayMixModel / ArrayMixEnsemble (numpy), a checkpoint
        path, or None for the shipped ``models/mixer.pt`` (read for numpy inference: no torch)
    amount_percent : float
        0 (untouched) to 100 (the model's settings).
    group_trims_db : dict, optional
        ``{"vocals": +1.5, "drums": -2, ...}`` dB.
    reference : path or Tensor ``[2, T]``, optional
        A mix whose balance and tone to follow.
    sample_rate : int, optional
        Working rate when loading (default: the stems' most common rate).
    match_reference : bool
        With a reference, also fit the faders to its spectrum (see :func:`predict_strip`).

    Returns
    -------
    (MixSettings, Stems)
    """
    if not isinstance(stems, Stems):
        stems = load_stems(stems, sample_rate)
    # numpy inference unless a step needs torch: a reference's fader fit, or resampling stems
    # below 22.05 kHz for the analysis
    net, info, model_name = _load_model(model, torch_needed=reference is not None or stems.sample_rate < FEATURE_RATE_HZ)
    analysis_rate = info.get("sample_rate")
    ref = load_reference(reference, stems.sample_rate) if isinstance(reference, (str, Path)) else reference
    values = predict_strip(net, stems, int(analysis_rate) if analysis_rate else None, ref, match_reference)
    values = apply_amount_and_trims(values, stems.roles, amount_percent, group_trims_db, stems.silent)
    trims = {g: float((group_trims_db or {}).get(g, 0.0)) for g in GROUPS}
    settings = MixSettings.from_values(stems.files, stems.role_names, values, silent=stems.silent,
                                       sample_rate=stems.sample_rate, amount_percent=float(amount_percent),
                                       group_trims_db=trims, model=model_name, notes=list(stems.notes))
    return settings, stems


# ============================================================================ rendering
def match_settings(stems: Stems, settings: MixSettings, source: str | None = None) -> np.ndarray:
    """Strip values ``[S, P]`` float32 (numpy) for ``stems`` from ``settings``, matched by file name.

    Raises
    ------
    SettingsError
        A stem has no settings or the settings name a stem that is not there (the message
        starts with ``source``, the settings file, when given).
    """
    by_name = {s.file: s for s in settings.stems}
    missing = [f for f in stems.files if f not in by_name]
    extra = [f for f in by_name if f not in stems.files]
    if missing or extra:
        parts = []
        if missing:
            parts.append("no settings for stem(s) " + ", ".join(missing))
        if extra:
            parts.append("settings name stem(s) not given: " + ", ".join(extra))
        raise SettingsError((f"{source}: " if source else "") + "settings do not match the stems: " + "; ".join(parts)
                            + " (settings are matched to stems by file name)")
    return np.stack([by_name[f].array() for f in stems.files])


def render(stems: Stems, values, *, keep_stems: bool = False,
           block_seconds: float | None = None,
           progress: Callable[[int, int], None] | None = None):
    """Render the full-length mix with the console's exact path, block by block.

    Parameters
    ----------
    stems : Stems
    values : Tensor or numpy array ``[S, P]``
        Strip values (validated here). Numpy values render in numpy (no torch) and give numpy
        results; a tensor gives tensors.
    keep_stems : bool
        Also return every processed stem (they sum to the mix).
    block_seconds : float, optional
        Block length; filter and compressor state carry across blocks, so the result does
        not depend on it. Default :data:`BLOCK_SECONDS`, or for numpy values with ``keep_stems``
        the whole song in one block: the processed stems are full length anyway, and the kernel
        then writes them in place (no block copies).
    progress : callable(done_samples, total_samples), optional

    Returns
    -------
    mix : Tensor or array ``[2, T]`` float32
    processed : Tensor or array ``[S, 2, T]`` float32, or None
    """
    from automix.dsp.console import BlockRenderer

    STRIP.validate(values)
    if values.shape[0] != stems.num_stems:
        raise SettingsError(f"{values.shape[0]} sets of settings for {stems.num_stems} stems")
    total = stems.num_samples
    whole = block_seconds is None and keep_stems and not _is_torch(values)
    block_seconds = BLOCK_SECONDS if block_seconds is None else block_seconds
    block = max(1, total if whole else int(block_seconds * stems.sample_rate))
    if _is_torch(values):
        import torch

        renderer = BlockRenderer(values[None].float(), stems.sample_rate, n_channels=stems.samples.shape[1],
                                 reuse_buffers=True)  # each block's result is copied out below
        audio = stems.audio
        mix = torch.zeros(2, total)
        processed = torch.zeros(stems.num_stems, 2, total) if keep_stems else None
    else:
        renderer = BlockRenderer(np.asarray(values, dtype=np.float32)[None], stems.sample_rate,
                                 n_channels=stems.samples.shape[1], reuse_buffers=True)
        audio = stems.samples
        if whole and total > 0:
            result = renderer.process(audio[None])
            if progress:
                progress(total, total)
            return result.mix[0], result.stems[0]
        mix = np.zeros((2, total), dtype=np.float32)
        processed = np.zeros((stems.num_stems, 2, total), dtype=np.float32) if keep_stems else None
    for start in range(0, total, block):
        stop = min(total, start + block)
        result = renderer.process(audio[None, :, :, start:stop])
        mix[:, start:stop] = result.mix[0]
        if processed is not None:
            processed[:, :, start:stop] = result.stems[0]
        if progress:
            progress(stop, total)
    return mix, processed


# ============================================================================ one click
@dataclass
class MixReport:
    """What :func:`mix` wrote and measured."""

    mix_path: Path
    settings: MixSettings
    stems_out: list[Path] = field(default_factory=list)
    settings_path: Path | None = None
    master_path: Path | None = None
    session_path: Path | None = None
    plot_path: Path | None = None
    peak_dbfs: float = float("nan")
    loudness_lufs: float = float("nan")
    notes: list[str] = field(default_factory=list)


def _check_outputs(paths: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    from automix.outputs import check_output_folder

    resolved_inputs = {p.resolve() for p in inputs}
    for p in paths:
        if p.resolve() in resolved_inputs:
            raise OutputExistsError(f"{p} is one of the input stems; choose another output name")
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} already exists; pass --overwrite to replace it")
        check_output_folder(p)


def mix(inputs: str | Path | Sequence[str | Path] | Stems, output: str | Path, *,
        model=None, settings: MixSettings | str | Path | None = None,
        amount_percent: float = 100.0, group_trims_db: dict[str, float] | None = None,
        reference: str | Path | None = None, stems_out: str | Path | None = None,
        settings_out: str | Path | None = None, sample_rate: int | None = None,
        subtype: str = "PCM_24", overwrite: bool = False, master: dict | None = None,
        session_out: str | Path | None = None, plot_out: str | Path | None = None,
        progress: bool = False, match_reference: bool = True) -> MixReport:
    """Mix stems into ``output`` (and optionally per-stem outputs, settings, a master).

    Parameters
    ----------
    inputs : folder, files, or loaded :class:`Stems`
    output : path of the mix (format by extension: .wav, .flac ...)
    model : MixModel or checkpoint path; default ``models/mixer.pt``
    settings : MixSettings or settings file, optional
        Render these (hand-edited) settings instead of predicting (``automix render``).
    amount_percent, group_trims_db, reference : see :func:`suggest` (ignored with ``settings``)
    stems_out : folder, optional
        Write each processed stem there under its own name; they sum to the mix.
    settings_out : .json / .yaml path, optional
    sample_rate : int, optional
        Working and output rate (default: the stems' most common rate).
    subtype : str
        Output sample format: "PCM_16" (dithered), "PCM_24", "FLOAT".
    overwrite : bool
        Replace existing outputs.
    master : dict, optional
        Master the mix too: ``{"output": path, "target": "spotify"}`` or
        ``{"output": path, "reference": path}`` (passed to :mod:`automix.mastering`).
    session_out : .RPP path, optional
        A REAPER session of the mix (see :func:`write_session`): the processed stems at
        0 dB when ``stems_out`` is given, else the original stems with faders and pans.
    plot_out : .png path, optional
        A plot of the settings (EQ curves, faders, pans).
    progress : bool
        Show a progress bar on stderr.
    match_reference : bool
        With a reference, also fit the faders to its spectrum (see :func:`predict_strip`).
    """
    from automix.audio import write_audio
    from automix.settings_io import load_settings

    output = Path(output)
    stems = inputs if isinstance(inputs, Stems) else load_stems(inputs, sample_rate)
    outputs = [output]
    stem_paths: list[Path] = []
    if stems_out is not None:
        stem_paths = [Path(stems_out) / f"{Path(f).stem}.wav" for f in stems.files]
        outputs += stem_paths
    if settings_out is not None:
        outputs.append(Path(settings_out))
    for extra in (session_out, plot_out):
        if extra is not None:
            outputs.append(Path(extra))
    if master is not None:
        outputs.append(Path(master["output"]))
    _check_outputs(outputs, stems.paths, overwrite)
    if len(set(p.resolve() for p in outputs)) != len(outputs):
        raise OutputExistsError("two outputs would share one file name; choose different names")

    if settings is None:
        chosen, stems = suggest(stems, model=model, amount_percent=amount_percent,
                                group_trims_db=group_trims_db, reference=reference,
                                match_reference=match_reference)
        values = chosen.strip_array()
    else:
        chosen = settings if isinstance(settings, MixSettings) else load_settings(settings)
        values = match_settings(stems, chosen, source=None if isinstance(settings, MixSettings) else str(settings))
        chosen = MixSettings.from_values(stems.files, [s.role for s in sorted(
            chosen.stems, key=lambda s: stems.files.index(s.file))], values, silent=stems.silent,
            sample_rate=stems.sample_rate, amount_percent=chosen.amount_percent,
            group_trims_db=chosen.group_trims_db, model=chosen.model, notes=list(stems.notes))

    bar = None
    callback = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stems.num_samples, unit="sample", unit_scale=True, desc="mixing", leave=False)

        def callback(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()
    try:
        mix_audio, processed = render(stems, values, keep_stems=stems_out is not None, progress=callback)
    finally:
        if bar is not None:
            bar.close()

    notes = list(stems.notes)
    peak = 10.0 ** (float(peak_dbfs(mix_audio[None])[0]) / 20.0)
    if settings is None and peak > 10.0 ** (MIX_PEAK_CEILING_DBFS / 20.0):
        trim_db = _headroom_trim(chosen, MIX_PEAK_CEILING_DBFS - 20.0 * math.log10(peak))
        if trim_db < 0:
            scale = 10.0 ** (trim_db / 20.0)
            mix_audio *= scale
            if processed is not None:
                processed *= scale
            peak *= scale
            notes.append(f"every fader lowered by {-trim_db:.1f} dB so the mix peaks at "
                         f"{20 * math.log10(peak):+.1f} dBFS (balance unchanged)")
    if peak > 1.0:
        notes.append(f"the mix peaks at {20 * math.log10(peak):+.1f} dBFS: a 16/24-bit file clips there "
                     "(use --bit-depth float, --master, or lower the faders)")
    write_audio(output, mix_audio, stems.sample_rate, subtype=subtype, overwrite=overwrite,
                inputs=tuple(stems.paths))
    written: list[Path] = []
    if processed is not None:
        for path, audio in zip(stem_paths, processed):
            write_audio(path, audio, stems.sample_rate, subtype="FLOAT", overwrite=overwrite,
                        inputs=tuple(stems.paths))
            written.append(path)
    settings_path = None
    if settings_out is not None:
        settings_path = save_settings(settings_out, chosen, overwrite=overwrite, inputs=tuple(stems.paths))
    report = MixReport(output, chosen, written, settings_path, None, peak_dbfs=20 * math.log10(max(peak, 1e-12)),
                       loudness_lufs=_loudness(mix_audio, stems.sample_rate), notes=notes)
    if session_out is not None:
        report.session_path = write_session(session_out, chosen, stems, written or None, overwrite=overwrite)
    if plot_out is not None:
        report.plot_path = plot_settings(plot_out, chosen, stems.sample_rate, overwrite=overwrite,
                                         inputs=tuple(stems.paths))
    if master is not None:
        report.master_path = _master(mix_audio, stems.sample_rate, output, master, overwrite, notes)
    return report


def _headroom_trim(settings: MixSettings, trim_db: float) -> float:
    """Lower every stem's fader by ``-trim_db`` dB (as far as the fader range allows); the trim applied.

    Every processor of a strip comes before its fader and the bus is a plain sum, so a
    common fader change scales the mix (and each processed stem) by exactly that gain.
    """
    lowest = STRIP.specs[STRIP.index("gain_db")].minimum
    active = [st for st in settings.stems if not st.silent]
    if active:
        trim_db = max(trim_db, lowest - min(st.strip["gain_db"] for st in active))
    trim_db = min(0.0, trim_db)
    for st in active:
        st.strip["gain_db"] = float(st.strip["gain_db"] + trim_db)
    return trim_db


def write_session(path: str | Path, settings: MixSettings, stems: Stems, processed: Sequence[Path] | None = None,
                  *, overwrite: bool = False) -> Path:
    """Write a REAPER session (``.RPP``) of a mix for refining it by hand in a DAW.

    Parameters
    ----------
    path : .RPP path (written atomically; never an input).
    settings : the settings chosen (or suggested) for ``stems``, in the same order.
    stems : the loaded stems (their files become the tracks' items).
    processed : paths of the processed stems written by ``stems_out``, optional. With them
        the tracks play those files at 0 dB, centre (the session sounds like the mix);
        without them, the original stems with the suggested faders and pans.
    """
    from automix.daw_session import SessionTrack, session_notes, write_reaper_session
    from automix.settings_io import format_table

    sr = stems.sample_rate
    if processed:
        tracks = [SessionTrack(Path(f).stem, Path(p), stems.num_samples / sr)
                  for f, p in zip(stems.files, processed)]
    else:
        tracks = [SessionTrack(Path(f).stem, Path(p), n / sr, st.strip["gain_db"], st.strip["pan"])
                  for f, p, n, st in zip(stems.files, stems.paths, stems.lengths, settings.stems)]
    return write_reaper_session(path, tracks, sr, notes=session_notes(format_table(settings), bool(processed)),
                                overwrite=overwrite, inputs=tuple(stems.paths))


def plot_settings(path: str | Path, settings: MixSettings, sample_rate: int, *, overwrite: bool = False,
                  inputs: Sequence[str | Path] = ()) -> Path:
    """PNG of the settings: every stem's EQ curve (20 Hz-20 kHz, dB) and its fader and pan."""
    from automix.plots import plot_mix_settings

    top = min(20000.0, 0.45 * sample_rate)
    freqs = np.geomspace(20.0, top, 256)
    eq = settings.eq_response_db(freqs, sample_rate).numpy()
    return plot_mix_settings(path, settings.files(), freqs, eq, [s.strip["gain_db"] for s in settings.stems],
                             [s.strip["pan"] for s in settings.stems], title="automix: suggested settings",
                             overwrite=overwrite, inputs=inputs)


def _loudness(audio, sample_rate: int) -> float:
    """Integrated loudness of the mix ``[2, T]`` (BS.1770-4, gated), LUFS."""
    from automix.loudness import integrated_loudness

    return float(integrated_loudness(audio.numpy() if _is_torch(audio) else np.asarray(audio), sample_rate))


def _master(mix_audio, sample_rate: int, mix_path: Path, options: dict, overwrite: bool,
            notes: list[str]) -> Path:
    """Master the mix with :mod:`automix.mastering` (imported only when asked).

    The mastering stage reads a 32-bit float copy of the mix (a temporary file next to the
    output, removed afterwards), so a mix peaking above 0 dBFS is not clipped before the limiter.
    """
    import os
    import tempfile

    from automix import mastering
    from automix.audio import write_audio

    opts = dict(options)
    out = Path(opts.pop("output"))
    fd, tmp = tempfile.mkstemp(prefix=f".{mix_path.stem}.float.", suffix=".wav", dir=mix_path.parent)
    os.close(fd)
    try:
        write_audio(tmp, mix_audio, sample_rate, subtype="FLOAT", overwrite=True)
        result = mastering.master(tmp, out, overwrite=overwrite, **opts)
    finally:
        Path(tmp).unlink(missing_ok=True)
    names = (str(tmp), Path(tmp).name)  # the user knows the mix by its own name, not the temporary copy's
    for warning in getattr(result, "warnings", []) or []:
        for name in names:
            warning = str(warning).replace(name, mix_path.name)
        notes.append(f"mastering: {warning}")
    return out
