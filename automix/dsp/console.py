"""The mixing console: per-stem channel strips, the stereo sum and the master bus.

Signal flow (see docs/console.md)::

    stem (B, S, C, T) -> EQ (HPF, low shelf, 3 peaks, high shelf) -> compressor
        -> saturation -> fader + pan/balance -> (B, S, 2, T) --sum over S--> master EQ
        -> master compressor -> output gain -> mix (B, 2, T)

:func:`render_mix` is differentiable with respect to the stems and every setting. With
``mode="exact"`` the EQ is the IIR cascade in the time domain; ``mode="fast"`` applies its
frequency-sampled FIR by FFT convolution (see :mod:`automix.dsp.eq`). When no gradient is
needed and the tensors are on the CPU, the exact mode runs the fused Numba strip kernel
(tests check it equals the differentiable path). :class:`BlockRenderer` renders long songs
block by block with filter and compressor state carried across blocks.

The inference path -- :func:`kernel_arguments` and :class:`BlockRenderer` -- also takes numpy
settings and blocks (``automix mix`` renders without importing torch): the same filter designs,
compressor coefficients, saturation and pan laws (array-agnostic, :mod:`automix.dsp.biquad`) and
the same kernel, numpy arrays in and out. Torch tensors in give torch tensors out, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import contextlib
from typing import Any

import numpy as np

from automix.dsp import eq, pan, saturation
from automix.dsp.biquad import _is_torch
from automix.dsp.params import MASTER, STRIP, ParamTable
from automix.dsp.smoothing import time_constant_coefficient
from automix.errors import AudioError, SettingsError

MODES = ("exact", "fast")


@dataclass
class MixResult:
    """Output of :func:`render_mix`.

    Attributes
    ----------
    mix : Tensor (B, 2, T) the master-bus output.
    stems : Tensor (B, S, 2, T) each processed stem as it enters the sum (masked stems are 0).
    """

    mix: Any
    stems: Any


# ----------------------------------------------------------------------------- checks
def _check_inputs(stems: torch.Tensor, strip: torch.Tensor, master: torch.Tensor | None,
                  stem_mask: torch.Tensor | None, mode: str) -> None:
    if mode not in MODES:
        raise SettingsError(f"render mode must be one of {MODES}, not {mode!r}")
    if stems.dim() != 4 or stems.shape[2] not in (1, 2):
        raise AudioError(f"stems must be shaped (batch, stems, channels 1|2, samples), got {tuple(stems.shape)}")
    if not stems.is_floating_point():
        raise AudioError("stems must be floating-point audio")
    if strip.shape != stems.shape[:2] + (STRIP.size,):
        raise SettingsError(f"strip settings must be shaped (batch, stems, {STRIP.size}) = "
                            f"{tuple(stems.shape[:2]) + (STRIP.size,)}, got {tuple(strip.shape)}")
    if master is not None and tuple(master.shape) != (stems.shape[0], MASTER.size):
        raise SettingsError(f"master settings must be shaped (batch, {MASTER.size}), got {tuple(master.shape)}")
    if stem_mask is not None and tuple(stem_mask.shape) != tuple(stems.shape[:2]):
        raise SettingsError(f"stem_mask must be shaped (batch, stems) = {tuple(stems.shape[:2])}")


def _p(values: torch.Tensor, table: ParamTable, name: str) -> torch.Tensor:
    return values[..., table.index(name)]


# ----------------------------------------------------------------------------- torch path
def _dynamics_torch(x: torch.Tensor, values: torch.Tensor, table: ParamTable, sample_rate: float,
                    mode: str) -> torch.Tensor:
    """EQ then compressor of ``x`` (..., C, T) for settings ``values`` (..., P)."""
    from automix.dsp import compressor as comp

    sos = eq.eq_sos(values, table, sample_rate)
    x = eq.apply_eq_exact(x, sos) if mode == "exact" else eq.apply_eq_fir(x, sos, sample_rate)
    v = values.to(x.dtype)
    return comp.compress(x, _p(v, table, "comp.threshold_db"), _p(v, table, "comp.ratio"),
                         _p(v, table, "comp.attack_ms"), _p(v, table, "comp.release_ms"),
                         _p(v, table, "comp.knee_db"), _p(v, table, "comp.makeup_db"), sample_rate)


def _render_torch(stems, strip, sample_rate, master, mode, mask) -> MixResult:
    import torch

    x = _dynamics_torch(stems, strip, STRIP, sample_rate, mode)
    v = strip.to(x.dtype)
    if torch.is_grad_enabled() or bool((_p(v, STRIP, "sat.mix") != 0).any()):  # mix 0: dry, exactly x
        x = saturation.saturate(x, _p(v, STRIP, "sat.drive_db"), _p(v, STRIP, "sat.mix"))
    matrix = pan.output_matrix(_p(v, STRIP, "pan"), _p(v, STRIP, "gain_db"), stems.shape[2])
    out = pan.apply_matrix(x, matrix)
    if mask is not None:
        out = out * mask.to(out.dtype)[..., None, None]
    mix = out.sum(dim=1)
    if master is not None:
        mix = _dynamics_torch(mix, master, MASTER, sample_rate, mode)
        mix = mix * torch.pow(10.0, _p(master.to(mix.dtype), MASTER, "output_gain_db") / 20.0)[..., None, None]
    return MixResult(mix=mix, stems=out)


# ----------------------------------------------------------------------------- fused kernel path
def kernel_arguments(values, table: ParamTable, sample_rate: float, n_channels: int):
    """Arrays for :func:`automix.dsp.kernels.channel_strip` from settings ``values`` (N, P).

    ``values`` is a torch tensor (designed in torch, as the training path does) or a numpy array
    (designed in numpy, without torch). Returns ``coef (N, 6, 5), comp (N, 6), sat (N, 3),
    out_gain (N, 2, C)`` as float64 numpy. The master bus (no saturation, no pan) maps to the
    same kernel with a dry saturator and an identity matrix scaled by its output gain.
    """
    if _is_torch(values):
        import torch

        ops, no_grad = torch, torch.no_grad()
        with no_grad:
            v = values.detach().to("cpu", torch.float64)
    else:
        ops, no_grad = np, contextlib.nullcontext()
        v = np.asarray(values, dtype=np.float64)
    with no_grad:
        sos = eq.eq_sos(v, table, sample_rate)
        coef = ops.concatenate([sos[..., :3], sos[..., 4:]], -1) if ops is np else ops.cat([sos[..., :3], sos[..., 4:]], dim=-1)
        coef = coef / sos[..., 3:4]
        alpha = lambda name: time_constant_coefficient(_p(v, table, name), sample_rate)  # noqa: E731
        comp_args = ops.stack([_p(v, table, "comp.threshold_db"), _p(v, table, "comp.ratio"),
                               _p(v, table, "comp.knee_db"), _p(v, table, "comp.makeup_db"),
                               alpha("comp.attack_ms"), alpha("comp.release_ms")], -1)
        if "sat.drive_db" in table:
            drive = saturation.drive_gain(_p(v, table, "sat.drive_db"))
            sat = ops.stack([drive, saturation.loudness_compensation(drive), _p(v, table, "sat.mix")], -1)
            out_gain = pan.output_matrix(_p(v, table, "pan"), _p(v, table, "gain_db"), n_channels)
        else:
            n = v.shape[0]
            if ops is np:
                sat = np.broadcast_to(np.array([1.0, 1.0, 0.0]), (n, 3))
                gain = np.power(10.0, _p(v, table, "output_gain_db") / 20.0)
                out_gain = np.eye(2) * gain[:, None, None]
            else:
                sat = ops.tensor([1.0, 1.0, 0.0], dtype=ops.float64).expand(n, 3)
                gain = ops.pow(10.0, _p(v, table, "output_gain_db") / 20.0)
                out_gain = ops.eye(2, dtype=ops.float64) * gain[:, None, None]
    as_np = lambda t: np.ascontiguousarray(t if isinstance(t, np.ndarray) else t.numpy(), dtype=np.float64)  # noqa: E731
    return as_np(coef), as_np(comp_args), as_np(sat), as_np(out_gain)


class BlockRenderer:
    """Render a mix block by block with every filter and compressor state carried over.

    Rendering a song in blocks gives the same result as :func:`render_mix` on the whole
    song (within float rounding), with memory bounded by the block size. Not differentiable
    (final renders); CPU (CUDA blocks are processed on the CPU and moved back).

    Settings, mask and blocks are all torch tensors (results are tensors) or all numpy arrays
    (results are numpy arrays; torch is not imported).

    Parameters
    ----------
    strip : Tensor or array (B, S, P_strip) setting values.
    sample_rate : float, Hz.
    master : Tensor or array (B, P_master) or None (no master processing).
    stem_mask : Tensor or array (B, S) bool/0-1 or None.
    n_channels : channels per stem (1 or 2).
    reuse_buffers : bool
        Keep the input copy and the processed-stems buffer of one block for the next one
        (no fresh memory per block: on long songs that is over a GB of page faults saved).
        The ``stems`` of a returned :class:`MixResult` are then overwritten by the next
        :meth:`process` call: copy what you keep. ``mix`` is always a new tensor.
    """

    def __init__(self, strip: torch.Tensor, sample_rate: float, master: torch.Tensor | None = None,
                 stem_mask: torch.Tensor | None = None, n_channels: int = 2, reuse_buffers: bool = False):
        if n_channels not in (1, 2):
            raise AudioError(f"stems must have 1 or 2 channels, not {n_channels}")
        STRIP.validate(strip)
        if master is not None:
            MASTER.validate(master)
        self.batch, self.n_stems = strip.shape[:2]
        self.n_channels = n_channels
        self.sample_rate = float(sample_rate)
        self.reuse_buffers = reuse_buffers
        self._buffers: dict[str, Any] = {}
        flat = strip.reshape(-1, STRIP.size)
        self._strip = kernel_arguments(flat, STRIP, sample_rate, n_channels)
        n = flat.shape[0]
        self._strip_state = (np.zeros((n, n_channels, 6, 2)), np.zeros(n))
        self._mask = None
        if stem_mask is not None:
            mask = stem_mask.detach().cpu().float().numpy() if _is_torch(stem_mask) else stem_mask
            self._mask = np.asarray(mask, dtype=np.float32).reshape(self.batch, self.n_stems, 1, 1)
        self._master = None
        if master is not None:
            self._master = kernel_arguments(master.reshape(-1, MASTER.size), MASTER,
                                            sample_rate, 2)
            self._master_state = (np.zeros((self.batch, 2, 6, 2)), np.zeros(self.batch))

    def process(self, block) -> MixResult:
        """Render the next block (B, S, C, Tb) of every stem; returns that block of the mix."""
        from automix.dsp.kernels import channel_strip, slp_vectorisation
        if tuple(block.shape[:3]) != (self.batch, self.n_stems, self.n_channels):
            raise AudioError(f"block must be shaped ({self.batch}, {self.n_stems}, {self.n_channels}, samples), "
                             f"got {tuple(block.shape)}")
        torch_in = _is_torch(block)
        if torch_in:
            device, dtype = block.device, block.dtype
            # buffers come from torch, not numpy: numpy asks for transparent huge pages on large
            # arrays, and on a busy machine the kernel's compaction for them can cost more than
            # the whole render (numpy blocks: the caller decides, see automix.cli.use_small_pages)
            x = block.detach().cpu()
            if not x.is_contiguous():
                x = self._buffer("in", x.shape, x.dtype, True).copy_(x)
            x = x.numpy()
        else:
            x = block
            if not x.flags.c_contiguous:
                x = self._buffer("in", x.shape, x.dtype, False)
                x[...] = block
        x = x.reshape(-1, self.n_channels, block.shape[-1])
        stems = self._buffer("stems", (self.batch, self.n_stems, 2, block.shape[-1]), dtype if torch_in else block.dtype,
                             torch_in)
        out = stems.numpy() if torch_in else stems
        with slp_vectorisation():
            channel_strip(x, *self._strip, *self._strip_state, out.reshape(-1, 2, block.shape[-1]))
        if self._mask is not None:
            out *= self._mask.astype(out.dtype)
        mix = stems.sum(dim=1) if torch_in else stems.sum(axis=1)
        if self._master is not None:
            mix_np = mix.numpy() if torch_in else mix
            m_out = np.empty_like(mix_np)
            with slp_vectorisation():
                channel_strip(mix_np, *self._master, *self._master_state, m_out)
            mix = m_out
            if torch_in:
                import torch

                mix = torch.from_numpy(m_out)
        if torch_in:
            return MixResult(mix=mix.to(device, dtype), stems=stems.to(device, dtype))
        return MixResult(mix=mix, stems=stems)

    def _buffer(self, name: str, shape: Sequence[int], dtype, torch_buffer: bool):
        """An uninitialised tensor (or numpy array) of ``shape``: the previous block's when reusing
        buffers and it fits."""
        shape = tuple(shape)
        held = self._buffers.get(name)
        if held is not None and tuple(held.shape) == shape and held.dtype == dtype and _is_torch(held) == torch_buffer:
            return held
        if torch_buffer:
            import torch

            fresh = torch.empty(shape, dtype=dtype)
        else:
            fresh = np.empty(shape, dtype=dtype)
        if self.reuse_buffers:
            self._buffers[name] = fresh
        return fresh

    def process_all(self, blocks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Yield the mix block (B, 2, Tb) for each stems block (B, S, C, Tb)."""
        for block in blocks:
            yield self.process(block).mix


# ----------------------------------------------------------------------------- entry point
def render_mix(stems: torch.Tensor, strip: torch.Tensor, sample_rate: float,
               master: torch.Tensor | None = None, mode: str = "exact",
               stem_mask: torch.Tensor | None = None) -> MixResult:
    """Render stems through their channel strips, sum them and run the master bus.

    Parameters
    ----------
    stems : Tensor (B, S, C, T), C = 1 (panned) or 2 (balanced), float32/float64, any device.
    strip : Tensor (B, S, P_strip) setting values (not unit-mapped; see ``STRIP``).
    sample_rate : float, Hz.
    master : Tensor (B, P_master) or None (no master-bus processing; the mix is the plain sum).
    mode : "exact" (IIR EQ, for final renders) or "fast" (FIR-by-FFT EQ, for training).
    stem_mask : Tensor (B, S) or None; stems with 0/False are left out of the sum (padding).

    Returns
    -------
    MixResult with ``mix`` (B, 2, T) and ``stems`` (B, S, 2, T), dtype and device of ``stems``.
    Differentiable with respect to ``stems``, ``strip`` and ``master``.
    """
    import torch

    _check_inputs(stems, strip, master, stem_mask, mode)
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (stems, strip, master))
    if mode == "exact" and not wants_grad and stems.device.type == "cpu":
        renderer = BlockRenderer(strip, sample_rate, master, stem_mask, n_channels=stems.shape[2])
        return renderer.process(stems)
    return _render_torch(stems, strip, sample_rate, master, mode, stem_mask)
