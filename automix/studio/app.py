"""The studio's web routes (FastAPI): one page and a small JSON/WAV API over :class:`StudioSession`.

Routes (everything under ``/api`` answers JSON, errors as ``{"error": "one line"}``)::

    GET  /                              the page (static/index.html)
    GET  /static/...                    its script and style (package data)
    GET  /api/params                    the console's declared ranges (drive every control)
    GET  /api/session                   stems, settings (suggested / edited), region, versions
    GET  /api/waveform                  overview of the song for choosing the region
    GET  /api/meter                     K-weighting sections and true-peak taps for the page's meter
    POST /api/stems/{stem}/strip        {"values": {setting: value}}  -> the stem's settings
    POST /api/stems/{stem}/reset        back to the suggestion
    POST /api/stems/{stem}/monitor      {"mute": bool, "solo": bool}
    GET  /api/stems/{stem}/eq           the stem's EQ response (dB at frequencies)
    POST /api/mix                       {"amount_percent": x, "group_trims_db": {group: dB}}
    POST /api/region                    {"centre_s": x}  -> the preview region around it
    GET  /api/audio/{version}.wav       the region of raw / automix / edit / reference (?master=1)
    GET  /api/levels                    loudness, true peak and equal-loudness gain of each version
    GET  /api/gain_reduction            each compressed stem's gain reduction over the region
    POST /api/export                    {"name": folder, "items": [...], "overwrite": bool}

Bad values get the message of the validation ``automix render`` uses (status 422), unknown
stems and versions 404; the page can name nothing outside this song and its output folder.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from automix.errors import AutomixError, OutputExistsError
from automix.studio.session import StudioSession, UnknownStemError

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The page's files (shipped as package data)."""


def _spec_dict(spec) -> dict[str, Any]:
    return {"name": spec.name, "unit": spec.unit, "minimum": spec.minimum, "maximum": spec.maximum,
            "default": spec.default, "neutral": spec.neutral_value, "scale": spec.scale,
            "description": spec.description}


def create_app(session: StudioSession, allowed_hosts: list[str] | None = None,
               log: Callable[[str], None] | None = None) -> FastAPI:
    """The studio's ASGI app for ``session``.

    Parameters
    ----------
    session : StudioSession
    allowed_hosts : list of str, optional
        Host names the page may be reached under (default ``127.0.0.1``, ``localhost``; the
        test client's ``testserver``): other ``Host`` headers are refused, so a web page
        elsewhere cannot reach the studio through a rebound DNS name.
    log : callable, optional
        Receives a line per rendered preview (version, milliseconds, stems re-processed).
    """
    app = FastAPI(title="automix studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware,
                       allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost", "::1", "testserver"])
    app.state.session = session

    @app.exception_handler(UnknownStemError)
    async def unknown_stem(_: Request, exc: UnknownStemError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404)

    @app.exception_handler(OutputExistsError)
    async def exists(_: Request, exc: OutputExistsError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.exception_handler(AutomixError)
    async def automix_error(_: Request, exc: AutomixError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "bad request: " + "; ".join(parts)}, status_code=422)

    no_store = {"Cache-Control": "no-store"}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=no_store)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/params")
    def params() -> dict:
        from automix.dsp.params import MIX_CONTROLS, STRIP

        return {"strip": [_spec_dict(s) for s in STRIP], "mix": [_spec_dict(s) for s in MIX_CONTROLS]}

    @app.get("/api/session")
    def state() -> dict:
        return session.state()

    @app.get("/api/waveform")
    def waveform() -> dict:
        return session.waveform()

    @app.get("/api/meter")
    def meter() -> dict:
        from automix.loudness import k_weighting_sos, true_peak_phases

        sos = k_weighting_sos(session.stems.sample_rate)
        return {"k_weighting": [{"b": [float(c) for c in s[:3]], "a": [float(c) for c in s[3:]]} for s in sos],
                "true_peak_phases": [[float(c) for c in p] for p in true_peak_phases()[0]],
                "momentary_s": 0.4}

    @app.post("/api/stems/{stem}/strip")
    def set_strip(stem: str, values: dict[str, Any] = Body(..., embed=True)) -> dict:
        strip = session.set_strip(stem, values)
        return {"stem": stem, "strip": strip, "revision": session.revision}

    @app.post("/api/stems/{stem}/reset")
    def reset(stem: str) -> dict:
        return {"stem": stem, "strip": session.reset_stem(stem), "revision": session.revision}

    @app.post("/api/stems/{stem}/monitor")
    def monitor(stem: str, mute: Any = Body(None), solo: Any = Body(None)) -> dict:
        return {"stem": stem, **session.set_monitor(stem, mute, solo), "revision": session.revision}

    @app.get("/api/stems/{stem}/eq")
    def eq(stem: str) -> dict:
        return session.eq_curve(stem)

    @app.post("/api/mix")
    def set_mix(amount_percent: Any = Body(None), group_trims_db: Any = Body(None)) -> dict:
        if group_trims_db is not None and not isinstance(group_trims_db, dict):
            raise_settings("group_trims_db must map groups to dB")
        return {**session.set_mix(amount_percent, group_trims_db), "revision": session.revision}

    @app.post("/api/region")
    def region(centre_s: Any = Body(..., embed=True)) -> dict:
        r = session.set_region(centre_s)
        sr = session.stems.sample_rate
        return {"start_s": r.start / sr, "stop_s": r.stop / sr, "revision": session.revision}

    @app.get("/api/audio/{version}.wav")
    def audio(version: str, master: bool = False) -> Response:
        from automix.studio.preview import wav_bytes

        if version not in session.versions():
            return JSONResponse({"error": f"no version {version!r}; versions: {', '.join(session.versions())}"},
                                status_code=404)
        started = time.perf_counter()
        with session.lock:
            renders = session.renderer.renders
            take = session.take(version, master)
            renders = session.renderer.renders - renders
            start_s = session.renderer.region.start / session.stems.sample_rate
            revision = session.revision
        body = wav_bytes(take.audio, session.stems.sample_rate)
        ms = 1000 * (time.perf_counter() - started)
        if log is not None:
            log(f"{version}{' (mastered)' if master else ''}: rendered and encoded in {ms:.0f} ms, "
                f"{renders} stem{'' if renders == 1 else 's'} re-processed")
        headers = {**no_store, "X-Revision": str(revision), "X-Region-Start-S": f"{start_s:.6f}",
                   "X-Loudness-LUFS": f"{take.loudness_lufs:.3f}", "X-Render-Ms": f"{ms:.1f}"}
        return Response(body, media_type="audio/wav", headers=headers)

    @app.get("/api/levels")
    def levels(master: bool = False) -> dict:
        return {"versions": session.levels(master), "revision": session.revision}

    @app.get("/api/gain_reduction")
    def gain_reduction() -> dict:
        return {"stems": session.gain_reduction(), "revision": session.revision}

    @app.post("/api/export")
    def export(name: Any = Body(...), items: Any = Body(...), overwrite: Any = Body(False)) -> dict:
        if not isinstance(items, list):
            raise_settings("items must be a list such as [\"settings\", \"mix\"]")
        if not isinstance(name, str):
            raise_settings("name must be a folder name")
        return session.export(name, items, overwrite)

    return app


def raise_settings(message: str) -> None:
    from automix.errors import SettingsError

    raise SettingsError(message)
