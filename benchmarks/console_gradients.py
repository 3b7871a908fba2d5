"""Do the exact (IIR) and fast (frequency-sampled FIR) console paths give the same gradients?

A DAFx 2024 paper argues that frequency-sampling approximations of IIR filters give
inaccurate gradients. This measures it on the loss the mix model trains with: a
multi-resolution log-magnitude STFT distance between a rendered mix and a target mix
(rendered from the same stems with other settings). For several random songs and start
settings it prints, per parameter group, the cosine similarity and the relative
difference of the gradient with respect to the unit-interval settings (the network's
outputs), plus the time of a forward+backward pass on each path.

Usage: ``python benchmarks/console_gradients.py [--songs 4] [--seconds 3] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SR = 44100
GROUPS = {
    "eq freq": lambda n: n.startswith("eq.") and n.endswith("freq_hz"),
    "eq gain": lambda n: n.startswith("eq.") and n.endswith("gain_db"),
    "eq q / hpf mix": lambda n: n.endswith(".q") or n == "eq.hpf.mix",
    "compressor": lambda n: n.startswith("comp."),
    "saturation": lambda n: n.startswith("sat."),
    "fader / pan": lambda n: n in ("gain_db", "pan"),
}


def _stft_loss(a, b):
    import torch
    loss = 0.0
    for n_fft in (512, 2048, 8192):
        win = torch.hann_window(n_fft, dtype=a.dtype)
        sa = torch.stft(a.reshape(-1, a.shape[-1]), n_fft, n_fft // 4, window=win, return_complex=True).abs()
        sb = torch.stft(b.reshape(-1, b.shape[-1]), n_fft, n_fft // 4, window=win, return_complex=True).abs()
        loss = loss + (torch.log(sa + 1e-5) - torch.log(sb + 1e-5)).abs().mean()
    return loss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=4)
    ap.add_argument("--stems", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from automix.dsp.console import render_mix
    from automix.dsp.params import STRIP
    torch.set_num_threads(args.threads)
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from console_speed import _synth_stems

    n = int(args.seconds * SR)
    g = torch.Generator().manual_seed(0)
    cos_all, per_group, times = [], {k: [] for k in GROUPS}, {"exact": [], "fast": []}
    for song in range(args.songs):
        stems = torch.from_numpy(_synth_stems(args.stems, n, seed=song)).unsqueeze(0)
        target_u = 0.15 + 0.7 * torch.rand(1, args.stems, STRIP.size, generator=g, dtype=torch.float64)
        start_u = 0.15 + 0.7 * torch.rand(1, args.stems, STRIP.size, generator=g, dtype=torch.float64)
        with torch.no_grad():
            target = render_mix(stems, STRIP.from_unit(target_u).float(), SR).mix
        grads = {}
        for mode in ("exact", "fast"):
            u = start_u.clone().float().requires_grad_()
            t0 = time.perf_counter()
            loss = _stft_loss(render_mix(stems, STRIP.from_unit(u), SR, mode=mode).mix, target)
            loss.backward()
            times[mode].append(time.perf_counter() - t0)
            grads[mode] = u.grad.double().reshape(-1, STRIP.size)
        ge, gf = grads["exact"], grads["fast"]
        cos_all.append(float(torch.nn.functional.cosine_similarity(ge.flatten(), gf.flatten(), dim=0)))
        for name, pick in GROUPS.items():
            idx = [i for i, p in enumerate(STRIP.names) if pick(p)]
            a, b = ge[:, idx].flatten(), gf[:, idx].flatten()
            per_group[name].append((float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
                                    float((a - b).norm() / a.norm().clamp_min(1e-30))))
    print(f"{args.songs} songs x {args.stems} stereo stems x {args.seconds} s, multi-resolution STFT loss")
    print(f"{'parameter group':<16} {'cosine(exact, fast)':>20} {'|g_fast - g_exact| / |g_exact|':>32}")
    for name, vals in per_group.items():
        cs, rel = np.array(vals).T
        print(f"{name:<16} {cs.mean():>14.4f} (min {cs.min():.4f}) {rel.mean():>20.4f} (max {rel.max():.4f})")
    print(f"all parameters   cosine mean {np.mean(cos_all):.4f}, min {np.min(cos_all):.4f}")
    print(f"forward+backward: exact {np.median(times['exact']):.2f} s, fast {np.median(times['fast']):.2f} s "
          f"(fast/exact time ratio {np.median(times['fast']) / np.median(times['exact']):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
