"""Audio I/O: round trips, dither statistics, atomic and safe writes, every bad input."""
import os

import numpy as np
import pytest
import soundfile as sf

from automix import audio
from automix.audio import check_not_silent, load_audio, resample, write_audio
from automix.errors import AudioError, OutputExistsError

SR = 44100

WRITABLE = [
    ("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"),
    ("flac", "PCM_16"), ("flac", "PCM_24"),
    ("aiff", "PCM_16"), ("aiff", "PCM_24"), ("aiff", "FLOAT"),
]


def _test_signal(seconds=0.5, seed=1):
    """Noise plus a loud sine: covers the whole range with non-trivial values."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = 0.6 * np.sin(2 * np.pi * 440 * t) + rng.uniform(-0.3, 0.3, (2, n))
    x[0, :10] = [1.0, -1.0, 0.999, -0.999, 0, 2.0**-15, -(2.0**-15), 0.5, -0.5, 0.25]
    return x.astype(np.float32)


@pytest.mark.parametrize("ext,subtype", WRITABLE)
def test_round_trip_within_quantisation_step(tmp_path, ext, subtype):
    x = _test_signal()
    path = write_audio(tmp_path / f"out.{ext}", x, SR, subtype=subtype, dither=False)
    info = sf.info(str(path))
    assert info.subtype == subtype and info.samplerate == SR and info.channels == 2
    back = load_audio(path)
    assert back.samples.dtype == np.float32 and back.samples.shape == x.shape
    assert back.sample_rate == SR
    err = np.abs(back.samples.astype(np.float64) - x)
    if subtype == "FLOAT":
        assert err.max() == 0.0
    else:
        step = 2.0 ** (1 - audio.PCM_BITS[subtype])
        # rounding to nearest: half a step, except +1.0 which clips to the largest code
        inside = np.abs(x) < 1.0 - step
        assert err[inside].max() <= 0.5 * step * (1 + 1e-6)
        assert err.max() <= step * (1 + 1e-6)


def test_16_bit_dither_adds_tpdf_noise_only(tmp_path):
    lsb = 2.0**-15
    n = 200_000
    rng = np.random.default_rng(3)
    # a slow ramp over many quantisation steps: every fractional position is visited
    x = (np.linspace(-40, 40, n) * lsb + rng.uniform(0, lsb)).astype(np.float64)
    x32 = x.astype(np.float32)
    path = write_audio(tmp_path / "d.wav", x32[None, :], SR, subtype="PCM_16", dither=True,
                       rng=np.random.default_rng(0))
    err = sf.read(str(path), dtype="float64")[0] - x32
    # TPDF (+-1 LSB) + rounding: zero mean, variance LSB^2/6 + LSB^2/12 = LSB^2/4
    assert abs(err.mean()) < 0.01 * lsb
    assert err.var() == pytest.approx(lsb**2 / 4, rel=0.03)
    assert np.abs(err).max() <= 1.5 * lsb + 1e-12
    # the point of TPDF: error mean and power do not depend on where the signal sits
    # between two steps (plain rounding or RPDF dither would make the power signal-dependent)
    frac = np.mod(x32.astype(np.float64) / lsb, 1.0)
    for lo in np.arange(0, 1, 0.25):
        sel = (frac >= lo) & (frac < lo + 0.25)
        assert abs(err[sel].mean()) < 0.03 * lsb
        assert err[sel].var() == pytest.approx(lsb**2 / 4, rel=0.06)


def test_without_dither_16_bit_error_is_plain_rounding(tmp_path):
    lsb = 2.0**-15
    x = (np.linspace(-5, 5, 20001) * lsb).astype(np.float32)
    path = write_audio(tmp_path / "r.wav", x[None, :], SR, subtype="PCM_16", dither=False)
    back = sf.read(str(path), dtype="float64")[0]
    assert np.array_equal(back, np.round(x.astype(np.float64) / lsb) * lsb)


def test_tpdf_dither_distribution():
    lsb = 2.0**-15
    d = audio.tpdf_dither((400_000,), 16, np.random.default_rng(1))
    assert np.abs(d).max() <= lsb
    assert d.mean() == pytest.approx(0.0, abs=0.005 * lsb)
    assert d.var() == pytest.approx(lsb**2 / 6, rel=0.02)
    hist, _ = np.histogram(d, bins=4, range=(-lsb, lsb))
    # triangle: the inner quarters hold 3x the outer ones
    assert hist[1] / hist[0] == pytest.approx(3.0, rel=0.05)
    assert hist[2] / hist[3] == pytest.approx(3.0, rel=0.05)


def test_failing_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "master.wav"
    write_audio(path, _test_signal(), SR)
    before = path.read_bytes()

    def broken_write(file, data, samplerate, *args, **kwargs):
        with open(file, "wb") as handle:  # half a file, then the disk "fails"
            handle.write(b"RIFF\x00\x00")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(AudioError, match="master.wav"):
        write_audio(path, np.zeros((2, 1000), np.float32), SR, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.wav"]


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"RIFF")
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_audio(tmp_path / "new.flac", np.zeros((2, 100), np.float32), SR)
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_output_and_inputs(tmp_path):
    src = tmp_path / "mix.wav"
    write_audio(src, _test_signal(), SR)
    with pytest.raises(OutputExistsError, match="already exists.*--overwrite"):
        write_audio(src, _test_signal(seed=2), SR)
    out = tmp_path / "out.wav"
    write_audio(out, _test_signal(), SR)
    write_audio(out, _test_signal(seed=2), SR, overwrite=True)
    np.testing.assert_allclose(load_audio(out).samples, _test_signal(seed=2), atol=2.0**-23)
    # the input is never overwritten, not even with overwrite=True, not even via another spelling
    other_spelling = tmp_path / "." / "mix.wav"
    with pytest.raises(OutputExistsError, match="input"):
        write_audio(other_spelling, _test_signal(seed=3), SR, overwrite=True, inputs=[src])


def test_written_file_is_readable_by_others(tmp_path):
    path = write_audio(tmp_path / "perm.wav", _test_signal(), SR)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_accepts_torch_and_mono_vectors(tmp_path):
    import torch

    x = torch.from_numpy(_test_signal())
    write_audio(tmp_path / "t.wav", x, SR, subtype="FLOAT")
    assert np.array_equal(load_audio(tmp_path / "t.wav").samples, x.numpy())
    write_audio(tmp_path / "m.wav", x[0], SR, subtype="FLOAT")
    assert sf.info(str(tmp_path / "m.wav")).channels == 1


@pytest.mark.parametrize("name,subtype", [("x.mp3", "PCM_16"), ("x.flac", "FLOAT"), ("x", "PCM_24")])
def test_write_rejects_unwritable_format(tmp_path, name, subtype):
    with pytest.raises(AudioError, match="cannot"):
        write_audio(tmp_path / name, _test_signal(), SR, subtype=subtype)


def test_write_rejects_nan(tmp_path):
    x = _test_signal()
    x[1, 7] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        write_audio(tmp_path / "nan.wav", x, SR)
    assert not (tmp_path / "nan.wav").exists()


def test_mono_becomes_centred_stereo(write_file, make_sine):
    path = write_file("mono.wav", make_sine(440, 0.2, channels=1), subtype="FLOAT")
    a = load_audio(path)
    assert a.samples.shape[0] == 2 and np.array_equal(a.samples[0], a.samples[1])
    assert load_audio(path, mono_to_stereo=False).samples.shape[0] == 1


def test_more_than_two_channels_error_or_downmix(write_file):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 0.2, (6, 1000)).astype(np.float32)
    path = write_file("surround.wav", x, subtype="FLOAT")
    with pytest.raises(AudioError, match="surround.wav.*6 channels.*downmix"):
        load_audio(path)
    folded = load_audio(path, downmix=True)
    down = folded.samples
    assert folded.peak is None or folded.peak == pytest.approx(np.abs(down).max())
    g = 10 ** (-3 / 20)  # ITU-R BS.775: centre and surrounds at -3 dB, LFE dropped
    np.testing.assert_allclose(down[0], x[0] + g * x[2] + g * x[4], atol=1e-6)
    np.testing.assert_allclose(down[1], x[1] + g * x[2] + g * x[5], atol=1e-6)
    quad = write_file("quad.wav", x[:4], subtype="FLOAT")
    down4 = load_audio(quad, downmix=True).samples
    np.testing.assert_allclose(down4, [(x[0] + x[2]) / 2, (x[1] + x[3]) / 2], atol=1e-6)


@pytest.mark.parametrize("fmt,subtype,ext", [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"),
                                             ("AIFF", "PCM_16", "aif")])
def test_reads_lossy_and_aiff_files(tmp_path, make_sine, fmt, subtype, ext):
    x = make_sine(440, 1.0, amplitude=0.5)
    path = tmp_path / f"tone.{ext}"
    sf.write(str(path), x.T, SR, format=fmt, subtype=subtype)
    a = load_audio(path)
    assert a.samples.shape[0] == 2 and a.sample_rate == SR
    assert a.duration_s == pytest.approx(1.0, abs=0.1)  # codecs add a little padding
    spectrum = np.abs(np.fft.rfft(a.samples[0]))
    assert np.fft.rfftfreq(a.frames, 1 / SR)[np.argmax(spectrum)] == pytest.approx(440, abs=2)
    rms = np.sqrt(np.mean(a.samples[0, SR // 10: SR // 2] ** 2))
    assert 20 * np.log10(rms / (0.5 / np.sqrt(2))) == pytest.approx(0.0, abs=1.0)


def test_resample_keeps_frequency_and_level(make_sine):
    x = make_sine(1000, 1.0, amplitude=0.5, sample_rate=48000)
    y = resample(x, 48000, 44100)
    assert y.shape == (2, 44100) and y.dtype == np.float32
    mid = y[:, 2000:-2000]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    spectrum = np.abs(np.fft.rfft(y[0]))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second
    # torch tensors go through torchaudio and stay tensors
    import torch

    yt = resample(torch.from_numpy(x), 48000, 44100)
    assert isinstance(yt, torch.Tensor) and yt.shape == (2, 44100)
    np.testing.assert_allclose(yt.numpy()[:, 2000:-2000], mid, atol=2e-3)


def test_load_resamples_to_working_rate(write_file, make_sine):
    path = write_file("hi.wav", make_sine(440, 0.5, sample_rate=48000), sample_rate=48000)
    a = load_audio(path, sample_rate=22050)
    assert a.sample_rate == 22050 and a.frames == 11025
    assert a.peak is None or a.peak == pytest.approx(np.abs(a.samples).max())


def test_reported_peak_is_the_files_peak(write_file, make_noise):
    x = make_noise(1.3, rms=0.1)  # not a multiple of the read block
    x[1, 54321] = -0.987
    a = load_audio(write_file("p.wav", x, subtype="FLOAT"))
    assert np.array_equal(a.samples, x) and a.peak == pytest.approx(0.987)


@pytest.mark.parametrize("ext,subtype", WRITABLE + [("wav", "PCM_32"), ("wav", "PCM_U8")])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_load_gives_exactly_libsndfiles_float_samples(tmp_path, ext, subtype, channels):
    # integer files are read as their codes and scaled by automix: the values must be
    # bit-identical to libsndfile's own float conversion, and the peak the samples' peak
    x = np.concatenate([_test_signal(0.4), _test_signal(0.4, seed=2)])[:channels]
    path = tmp_path / f"x.{ext}"
    sf.write(str(path), x.T, SR, subtype=subtype)
    reference = sf.read(str(path), dtype="float32", always_2d=True)[0].T
    a = load_audio(path, mono_to_stereo=False, downmix=channels > 2)
    if channels <= 2:
        assert a.samples.dtype == np.float32 and np.array_equal(a.samples, reference)
        assert a.peak == float(np.abs(reference).max())
    else:
        assert np.array_equal(a.samples, audio.downmix_to_stereo(reference))


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("wav", "PCM_24"), ("flac", "PCM_24"), ("wav", "FLOAT")])
def test_parallel_parts_decode_the_same_samples(tmp_path, monkeypatch, ext, subtype):
    monkeypatch.setattr(audio, "_SPLIT_MIN_FRAMES", 5000)  # parts of a short file
    monkeypatch.setattr(audio, "usable_cpus", lambda: 3)
    x = _test_signal(1.1)
    x[1, 30001] = -0.9999  # the peak in the last part
    path = tmp_path / f"x.{ext}"
    sf.write(str(path), x.T, SR, subtype=subtype)
    reference = sf.read(str(path), dtype="float32", always_2d=True)[0].T
    a = load_audio(path)
    assert np.array_equal(a.samples, reference) and a.peak == float(np.abs(reference).max())
    if subtype == "FLOAT":
        x[0, 40000] = np.nan  # a damaged sample in the last part is still noticed
        sf.write(str(path), x.T, SR, subtype=subtype)
        with pytest.raises(AudioError, match="NaN"):
            load_audio(path)


def _with_extra_chunk(wav: bytes) -> bytes:
    """The same WAV file with an odd-sized chunk (plus its pad byte) between 'fmt ' and 'data'."""
    data = wav.index(b"data")
    extra = b"junk" + (5).to_bytes(4, "little") + b"hello" + b"\x00"
    out = wav[:data] + extra + wav[data:]
    return out[:4] + (len(out) - 8).to_bytes(4, "little") + out[8:]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_pcm_wav_read_straight_from_the_file_in_every_layout(tmp_path, subtype):
    # plain, extensible and chunk-padded WAV files are read without libsndfile's decoder,
    # with bit-identical results; files whose header does not match fall back to it
    import soundfile as sf_

    x = _test_signal(0.3)
    plain, extensible, padded = tmp_path / "plain.wav", tmp_path / "ext.wav", tmp_path / "padded.wav"
    sf_.write(str(plain), x.T, SR, subtype=subtype)
    sf_.write(str(extensible), x.T, SR, subtype=subtype, format="WAVEX")
    padded.write_bytes(_with_extra_chunk(plain.read_bytes()))
    for path, offset in ((plain, 44), (extensible, None), (padded, 44 + 14)):
        with sf_.SoundFile(str(path)) as f:
            layout = audio._pcm_wav_layout(path, f)
        assert layout is not None and layout.channels == 2 and (offset is None or layout.offset == offset)
        reference = sf_.read(str(path), dtype="float32", always_2d=True)[0].T
        a = load_audio(path)
        assert np.array_equal(a.samples, reference) and a.peak == float(np.abs(reference).max())
    with sf_.SoundFile(str(tmp_path / "f.flac"), "w", SR, 2, subtype=subtype) as f:
        f.write(x.T)
    with sf_.SoundFile(str(tmp_path / "f.flac")) as f:
        assert audio._pcm_wav_layout(tmp_path / "f.flac", f) is None


# --------------------------------------------------------------------------- bad inputs

def _bad_files(tmp_path):
    """name -> (path, part of the expected message) for every kind of unusable file."""
    out = {}
    out["missing"] = (tmp_path / "nope.wav", "not found")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out["empty"] = (empty, "empty")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    out["corrupt"] = (corrupt, "cannot be read")
    zero = tmp_path / "zero.wav"
    sf.write(str(zero), np.zeros((0, 2), np.float32), SR)
    out["zero-length"] = (zero, "zero length")
    nan = tmp_path / "nan.wav"
    x = np.full((SR // 10, 2), 0.1, np.float32)
    x[100, 1] = np.nan
    sf.write(str(nan), x, SR, subtype="FLOAT")
    out["nan"] = (nan, "NaN or infinite")
    inf = tmp_path / "inf.wav"
    x[100, 1] = np.inf
    sf.write(str(inf), x, SR, subtype="FLOAT")
    out["inf"] = (inf, "NaN or infinite")
    unsupported = tmp_path / "song.m4a"
    unsupported.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(100))
    out["unsupported"] = (unsupported, "unsupported audio format")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    out["folder"] = (folder, "folder")
    return out


BAD_KINDS = ["missing", "empty", "corrupt", "zero-length", "nan", "inf", "unsupported", "folder"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_inputs_raise_audio_error_naming_the_file(tmp_path, kind):
    path, message = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert path.name in str(info.value) and message in str(info.value)


def test_silence_is_rejected_by_the_separate_check(write_file):
    path = write_file("silent.wav", np.zeros((2, SR // 2), np.float32))
    a = load_audio(path)  # silence is valid audio (an empty stem)...
    with pytest.raises(AudioError, match="silent.wav: is silent"):
        check_not_silent(a)  # ...but not something to analyse or master
    check_not_silent(a.samples + 1e-3)


def test_interleaved_codes_equal_numpy_quantisation():
    """The one-pass writer kernel gives numpy's codes: round half to even, clip, left-justify, interleave."""
    from automix.audio import interleaved_codes, quantize

    rng = np.random.default_rng(5)
    x = (0.6 * rng.standard_normal((2, 50_000))).astype(np.float32)  # some samples beyond full scale
    x[0, :6] = [0.5 / 2**23, 1.5 / 2**23, 2.5 / 2**23, -0.5 / 2**15, 1.0, -1.0]  # ties and the extremes
    for bits in (16, 24):
        ref, clipped = quantize(x, bits, dither=False)
        codes, n = interleaved_codes(x, bits, dither=False)
        assert codes.shape == (50_000, 2) and codes.flags.c_contiguous
        assert np.array_equal(codes, ref.T) and n == clipped > 0
    dithered, _ = interleaved_codes(x, 16, dither=True, rng=np.random.default_rng(0))
    assert np.array_equal(dithered, quantize(x, 16, dither=True, rng=np.random.default_rng(0))[0].T)
    # long enough to be done in parts on several threads: same codes, clip counts summed
    long = np.tile(x, (1, 45))
    ref, clipped = quantize(long, 24, dither=False)
    codes, n = interleaved_codes(long, 24, dither=False)
    assert np.array_equal(codes, ref.T) and n == clipped


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_24"), ("flac", "PCM_16"), ("wav", "FLOAT")])
def test_load_into_a_row_of_a_larger_array_decodes_in_place(tmp_path, ext, subtype):
    """``into``: the samples land in the given (2, N) row (a view, no copy), equal to a plain read
    (libsndfile's own decoding); mono fills both rows; a file longer than the row is read normally."""
    x = _test_signal(0.7)
    stereo = write_audio(tmp_path / f"s.{ext}", x, SR, subtype=subtype, dither=False)
    mono = write_audio(tmp_path / f"m.{ext}", x[:1], SR, subtype=subtype, dither=False)
    rows = np.full((3, 2, x.shape[1] + 100), 7.0, dtype=np.float32)
    got = load_audio(stereo, into=rows[0])
    assert np.shares_memory(got.samples, rows) and got.samples.shape == x.shape
    expected, _ = sf.read(str(stereo), dtype="float32", always_2d=True)
    assert np.array_equal(rows[0, :, : x.shape[1]], expected.T)
    assert np.all(rows[0, :, x.shape[1]:] == 7.0)  # past the file: untouched
    got = load_audio(mono, into=rows[1])
    assert np.shares_memory(got.samples, rows) and got.samples.shape == x.shape
    expected, _ = sf.read(str(mono), dtype="float32", always_2d=True)
    assert np.array_equal(rows[1, 0, : x.shape[1]], expected[:, 0]) and np.array_equal(rows[1, 0], rows[1, 1][:])
    short = np.zeros((2, 1000), dtype=np.float32)
    got = load_audio(stereo, into=short)
    assert not np.shares_memory(got.samples, short) and np.all(short == 0) and got.samples.shape == x.shape


@pytest.mark.parametrize("channels", [2, 1, 3])
def test_float_file_tail_below_240_dbfs_reads_as_exact_zeros(tmp_path, channels):
    # A 32-bit float export's fade-out decays smoothly through -240 dBFS into subnormals
    # (the DAW does not stop at a bit depth). Those samples are read as zeros (they slow
    # every later stage ~100x on x86); everything louder is exactly libsndfile's value.
    sr = 48000
    t = np.arange(2 * sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-t / 0.01)  # -1 dB per ms: reaches 1e-45
    x = np.stack([tone * (1.0 - 0.1 * c) for c in range(channels)]).astype(np.float32)
    assert np.count_nonzero((x != 0) & (np.abs(x) < np.finfo(np.float32).tiny)) > 100  # subnormals present
    path = tmp_path / "tail.wav"
    sf.write(path, x.T, sr, subtype="FLOAT")
    ref = sf.read(path, dtype="float32", always_2d=True)[0].T
    got = load_audio(path, mono_to_stereo=False, downmix=False).samples if channels <= 2 else \
        audio._read_planar(path)[0]
    keep = np.abs(ref) >= 2.0**-40
    assert np.array_equal(got[keep], ref[keep])
    assert np.all(got[~keep] == 0.0) and np.count_nonzero(~keep) > 1000
    assert np.max(np.abs(got - ref)) < 1e-12
