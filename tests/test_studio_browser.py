"""The studio page in real headless Chromium (Debian's ``chromium``, driven by playwright).

The page is served by the real command (``automix studio``, in a subprocess, stopped with
Ctrl-C at the end). The test plays the song, switches A/B/C while it plays, moves one stem's
fader by -6 dB and pans another, drags an EQ band, exports the settings from the page, renders
them with ``automix render`` and measures the rendered stems: the faded stem's loudness moved
by -6 dB and the panned stem's left/right balance moved as the console's pan law says.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from studio_helpers import start_studio, stop_studio

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium is not installed (apt-get install chromium chromium-driver)")


def channel_db(audio: np.ndarray) -> tuple[float, float]:
    """Energy of the left and right channel, dB."""
    return tuple(10 * math.log10(float(np.sum(audio[ch].astype(np.float64) ** 2))) for ch in range(2))


def balance_law_db(pan: float) -> float:
    """Right minus left level (dB) of a stereo stem balanced to ``pan``: the documented law
    (constant power, -3 dB at centre scaled back to unity, the near side at 0 dB)."""
    theta = (pan + 1) * math.pi / 4
    left, right = min(1.0, math.sqrt(2) * math.cos(theta)), min(1.0, math.sqrt(2) * math.sin(theta))
    return 20 * math.log10(right / left)


def test_studio_page_edit_and_export(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from automix.cli import main
    from automix.demo import example_song
    from automix.dsp.params import STRIP
    from automix.loudness import integrated_loudness
    from automix.mixing import load_stems, render

    song = tmp_path / "e1m1"
    shutil.copytree(example_song("freedoom1_e1m1"), song)
    proc, url = start_studio(song, tmp_path / "out")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=90000)
            state = page.evaluate("studio.state")
            files = [s["file"] for s in state["stems"] if not s["silent"]]
            faded, panned, dragged = files[0], files[1], files[2]

            # play, and switch A/B/C while playing: no restart, no gap in the clock
            page.click("#play")
            page.wait_for_timeout(400)
            positions = []
            for version in ("raw", "automix", "edit"):
                page.click(f"#versions button[data-version='{version}']")
                page.wait_for_timeout(250)
                positions.append(page.evaluate("[studio.player.active, studio.player.position(), studio.player.playing]"))
            assert [p[0] for p in positions] == ["raw", "automix", "edit"]
            assert all(p[2] for p in positions)
            assert positions[0][1] < positions[1][1] < positions[2][1]
            assert page.evaluate("Object.keys(studio.player.nodes).every(v => studio.player.nodes[v].source)")

            def strip_value(file: str, name: str) -> float:
                return page.evaluate(f"studio.strips[{file!r}].stem.strip[{name!r}]")

            def set_number(file: str, name: str, value: float) -> None:
                box = page.locator(f".strip[data-stem='{file}'] .ctl[data-param='{name}'] input.num")
                box.fill(f"{value:.4f}")
                box.press("Enter")
                page.wait_for_function(f"Math.abs(studio.strips[{file!r}].stem.strip[{name!r}] - {value}) < 1e-3",
                                       timeout=30000)

            gain0 = strip_value(faded, "gain_db")
            renders = page.evaluate("studio.renders.length")
            set_number(faded, "gain_db", gain0 - 6.0)
            pan0 = strip_value(panned, "pan")
            pan1 = 0.6 if pan0 <= 0 else -0.6
            set_number(panned, "pan", pan1)

            # drag an EQ band upwards on the curve
            peak0 = strip_value(dragged, "eq.peak2.gain_db")
            page.locator(f".strip[data-stem='{dragged}'] canvas.eqcanvas").scroll_into_view_if_needed()
            at = page.evaluate(f"studio.handlePosition({dragged!r}, 2)")
            page.mouse.move(at["x"], at["y"])
            page.mouse.down()
            for step in range(1, 6):
                page.mouse.move(at["x"], at["y"] - 4 * step)
            page.mouse.up()
            page.wait_for_function(f"studio.strips[{dragged!r}].stem.strip['eq.peak2.gain_db'] > {peak0 + 1.5}"
                                   " && document.body.dataset.busy === '0'", timeout=30000)
            page.wait_for_function(f"studio.renders.length > {renders} && document.body.dataset.busy === '0'",
                                   timeout=30000)
            page.wait_for_timeout(300)
            assert page.evaluate("studio.player.playing")
            assert float(page.locator("#lufs").inner_text()) < 0  # the meter reads what plays
            page.screenshot(path=str(tmp_path / "studio.png"))

            # export the settings from the page
            page.fill("#exportname", "browser take")
            page.click("#export")
            page.wait_for_selector("#exportout[data-done]", timeout=30000)
            result = page.evaluate("[document.querySelector('#exportout').dataset.done, studio.lastExport, studio.errors]")
            browser.close()
        assert result[0] == "1", result
        assert result[2] == [], result[2]
    finally:
        stop_studio(proc)

    shot = tmp_path / "studio.png"
    assert shot.exists() and shot.stat().st_size > 20_000
    settings_file = Path(result[1]["folder"]) / "settings.json"
    assert settings_file.exists() and settings_file.parent == (tmp_path / "out" / "browser take").resolve()

    # render the exported settings with automix render, and the suggestion, and measure the stems
    assert main(["render", str(song), "--settings", str(settings_file), "-o", str(tmp_path / "edit.wav"),
                 "--stems-out", str(tmp_path / "edit_stems"), "-q"]) == 0
    stems = load_stems(song)
    suggested = np.stack([STRIP.from_dict(s["suggested"]).numpy() for s in state["stems"]])
    import torch

    _, before = render(stems, torch.from_numpy(suggested), keep_stems=True)
    index = {f: i for i, f in enumerate(stems.files)}

    def exported(file: str) -> np.ndarray:
        audio, rate = sf.read(tmp_path / "edit_stems" / f"{Path(file).stem}.wav", dtype="float32", always_2d=True)
        assert rate == stems.sample_rate
        return audio.T

    change = (integrated_loudness(exported(faded), stems.sample_rate)
              - integrated_loudness(before[index[faded]].numpy(), stems.sample_rate))
    assert change == pytest.approx(-6.0, abs=0.1)

    l0, r0 = channel_db(before[index[panned]].numpy())
    l1, r1 = channel_db(exported(panned))
    measured = (r1 - l1) - (r0 - l0)
    expected = balance_law_db(pan1) - balance_law_db(pan0)
    assert abs(expected) > 3 and measured == pytest.approx(expected, abs=0.1)
    assert (measured > 0) == (pan1 > pan0)
