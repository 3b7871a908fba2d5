"""Analysis plot: curves land in their panels, files are written safely."""
import numpy as np
import pytest

from automix.errors import OutputExistsError
from automix.plots import Series, plot_spectra_and_loudness


def _red_rows(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))[..., :3]
    red = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)
    return np.nonzero(red.any(axis=1))[0], img.shape[0]


def test_spectrum_and_loudness_panels(tmp_path):
    freqs = 1000 * 2.0 ** (np.arange(-17, 14) / 3)
    out = tmp_path / "a.png"
    plot_spectra_and_loudness(
        out,
        spectra=[Series("mix", freqs, -30 - 3 * np.log2(freqs / 1000), "r-"),
                 Series("ref", freqs, np.full(freqs.shape, -np.inf))],  # silent bands are gaps
        loudness=[Series("mix", np.arange(3, 10, 0.1), np.full(70, -14.0), "b-")],
        loudness_lines=[("target", -14.0)], title="test", spectrum_ylim=(-80, 0),
    )
    rows, height = _red_rows(out)
    assert rows.size > 0 and rows.max() < height / 2  # the red spectrum is in the top panel only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary files left

    with pytest.raises(OutputExistsError, match="already exists"):
        plot_spectra_and_loudness(out, [], [Series("x", np.arange(3), np.zeros(3), "r-")])
    plot_spectra_and_loudness(out, [], [Series("x", np.arange(30), np.linspace(-20, -10, 30), "r-")],
                              overwrite=True)
    rows, height = _red_rows(out)
    assert rows.size > 0 and rows.min() > height / 2  # now only the loudness panel is red
    with pytest.raises(OutputExistsError, match="input"):
        plot_spectra_and_loudness(out, [], [], overwrite=True, inputs=[out])
