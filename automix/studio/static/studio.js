// automix studio page: channel strips driven by the console's declared ranges (/api/params),
// a Web Audio player that keeps every version decoded and switches between them on one clock,
// a spectrum and a loudness / true-peak meter of what is playing.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
};

const studio = window.studio = { specs: {}, mixSpecs: {}, state: null, errors: [], pending: 0, renders: [] };
const VERSION_LABELS = { raw: "A raw sum", automix: "B automix", edit: "C your edit", reference: "D reference" };
const CROSSFADE_S = 0.03;

// ------------------------------------------------------------------ server calls
async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}
function status(text, error = false) {
  const s = $("#status"); s.textContent = text; s.classList.toggle("error", error);
  if (error) studio.errors.push(text);
}
function busy(delta) {
  studio.pending += delta;
  document.body.dataset.busy = studio.pending > 0 ? "1" : "0";
}
async function guarded(what, fn) {
  busy(1);
  try { return await fn(); } catch (e) { status(`${what}: ${e.message}`, true); return null; } finally { busy(-1); }
}

// ------------------------------------------------------------------ units and scales (from the specs)
const toUnit = (spec, v) => spec.scale === "log" ? Math.log(v / spec.minimum) / Math.log(spec.maximum / spec.minimum)
  : (v - spec.minimum) / (spec.maximum - spec.minimum);
const fromUnit = (spec, u) => { u = Math.min(1, Math.max(0, u));
  return spec.scale === "log" ? spec.minimum * Math.pow(spec.maximum / spec.minimum, u) : spec.minimum + u * (spec.maximum - spec.minimum); };
const clampTo = (spec, v) => Math.min(spec.maximum, Math.max(spec.minimum, v));
function fmt(spec, v) {
  if (spec.unit === "Hz") return v >= 1000 ? (v / 1000).toFixed(2) + "k" : v.toFixed(0);
  const span = spec.maximum - spec.minimum;
  const text = v.toFixed(span <= 2 ? 2 : 1);
  return /^-0\.?0*$/.test(text) ? text.slice(1) : text;
}
function parseValue(spec, text) {
  const t = String(text).trim().toLowerCase();
  const k = t.endsWith("k") ? 1000 : 1;
  const v = parseFloat(k === 1000 ? t.slice(0, -1) : t) * k;
  return Number.isFinite(v) ? v : NaN;
}
function labelOf(name) {
  const words = { "eq.hpf.freq_hz": "HPF freq", "eq.hpf.mix": "HPF amount", "eq.low_shelf.freq_hz": "low shelf Hz",
    "eq.low_shelf.gain_db": "low shelf", "eq.high_shelf.freq_hz": "high shelf Hz", "eq.high_shelf.gain_db": "high shelf",
    "gain_db": "fader", "pan": "pan", "sat.drive_db": "drive", "sat.mix": "sat mix", "amount_percent": "amount" };
  if (words[name]) return words[name];
  let m = name.match(/^eq\.peak(\d)\.(freq_hz|gain_db|q)$/);
  if (m) return `peak ${m[1]} ` + { freq_hz: "Hz", gain_db: "gain", q: "Q" }[m[2]];
  m = name.match(/^comp\.(\w+?)(_db|_ms)?$/);
  if (m) return m[1];
  return name;
}

// A slider + number box for one declared parameter. onInput(value) while dragging, onCommit(value) on release / Enter.
function control(spec, value, onCommit, opts = {}) {
  const slider = el("input", { type: "range", min: 0, max: 1000, step: 1, "data-param": spec.name });
  const num = el("input", { class: "num", "data-param": spec.name, title: `${spec.description} (${spec.minimum} to ${spec.maximum} ${spec.unit})` });
  const row = el("div", { class: "ctl", "data-param": spec.name },
    el("label", { title: spec.description }, opts.label || labelOf(spec.name)), slider, num, el("span", { class: "unit" }, spec.unit));
  const c = { spec, row, slider, num, value };
  c.set = (v, moved) => {
    c.value = v; slider.value = Math.round(1000 * toUnit(spec, v)); num.value = fmt(spec, v); num.classList.remove("bad");
    if (moved !== undefined) row.classList.toggle("moved", moved);
  };
  let timer = null;
  const send = (v) => { clearTimeout(timer); timer = setTimeout(() => onCommit(v, c), 40); };
  slider.addEventListener("input", () => { const v = fromUnit(spec, slider.value / 1000); c.value = v; num.value = fmt(spec, v); send(v); });
  num.addEventListener("change", () => {
    const v = parseValue(spec, num.value);
    if (!Number.isFinite(v)) { num.classList.add("bad"); status(`${labelOf(spec.name)}: '${num.value}' is not a number`, true); return; }
    c.value = v; send(v);  // out-of-range values go to the server, which says why they are refused
  });
  num.addEventListener("keydown", (e) => { if (e.key === "Enter") num.dispatchEvent(new Event("change")); });
  c.set(value);
  return c;
}

// ------------------------------------------------------------------ player: every version decoded, one clock
const player = studio.player = {
  ctx: null, buffers: {}, loudness: {}, nodes: {}, active: "edit", playing: false,
  startCtx: 0, startPos: 0, loop: null, regionStart: 0, regionLen: 0, revision: {},

  init(sampleRate) {
    this.ctx = new AudioContext({ sampleRate });
    this.bus = this.ctx.createGain();
    this.bus.connect(this.ctx.destination);
    meter.init(this.ctx, this.bus);
  },
  length() { const b = Object.values(this.buffers)[0]; return b ? b.duration : 0; },
  loopBounds() { return this.loop || [0, this.length()]; },
  position() {  // seconds into the region buffers
    if (!this.playing) return this.startPos;
    const [a, b] = this.loopBounds();
    let p = this.startPos + (this.ctx.currentTime - this.startCtx);
    if (p >= b && b > a) p = a + ((p - a) % (b - a));
    return p;
  },
  matchGain(v) {
    if (!$("#match").checked) return 1;
    const levels = Object.values(this.loudness).filter(Number.isFinite);
    if (!levels.length || !Number.isFinite(this.loudness[v])) return 1;
    return Math.pow(10, (Math.min(...levels) - this.loudness[v]) / 20);
  },
  applyMatch() {
    for (const [v, n] of Object.entries(this.nodes)) n.match.gain.setTargetAtTime(this.matchGain(v), this.ctx.currentTime, 0.01);
    meter.showLevels();
  },
  node(v) {
    if (!this.nodes[v]) {
      const match = this.ctx.createGain(), select = this.ctx.createGain();
      match.gain.value = this.matchGain(v); select.gain.value = v === this.active ? 1 : 0;
      match.connect(select); select.connect(this.bus);
      this.nodes[v] = { match, select, source: null, fade: null };
    }
    return this.nodes[v];
  },
  startSource(v, when, offset) {
    const n = this.node(v), buf = this.buffers[v];
    if (!buf) return;
    const src = this.ctx.createBufferSource(), fade = this.ctx.createGain();
    src.buffer = buf; src.loop = true;
    const [a, b] = this.loopBounds(); src.loopStart = a; src.loopEnd = b;
    src.connect(fade); fade.connect(n.match);
    src.start(when, Math.min(Math.max(offset, 0), buf.duration - 1e-3));
    return { src, fade };
  },
  play() {
    if (this.playing || !this.length()) return;
    this.ctx.resume();
    const when = this.ctx.currentTime + 0.05;
    const [a, b] = this.loopBounds();
    let pos = this.startPos; if (pos < a || pos >= b) pos = a;
    for (const v of Object.keys(this.buffers)) {
      const s = this.startSource(v, when, pos), n = this.node(v);
      n.source = s.src; n.fade = s.fade;
    }
    this.startCtx = when; this.startPos = pos; this.playing = true;
    $("#play").innerHTML = "&#10074;&#10074; pause"; $("#play").classList.add("on");
  },
  pause() {
    if (!this.playing) return;
    this.startPos = this.position();
    for (const n of Object.values(this.nodes)) { if (n.source) { n.source.stop(); n.source.disconnect(); n.source = null; } }
    this.playing = false;
    $("#play").innerHTML = "&#9654; play"; $("#play").classList.remove("on");
  },
  restart() { if (this.playing) { this.pause(); this.play(); } },
  select(v) {  // gapless: every version plays all along, only the selection gains move
    if (!VERSION_LABELS[v]) return;
    this.active = v;
    const t = this.ctx ? this.ctx.currentTime : 0;
    for (const [name, n] of Object.entries(this.nodes)) {
      n.select.gain.cancelScheduledValues(t);
      n.select.gain.setValueAtTime(n.select.gain.value, t);
      n.select.gain.linearRampToValueAtTime(name === v ? 1 : 0, t + CROSSFADE_S);
    }
    document.querySelectorAll("#versions button").forEach(b => b.classList.toggle("on", b.dataset.version === v));
    meter.resetHolds();
  },
  // A freshly rendered version replaces the old one where it plays: the new source starts at the
  // same position on the shared clock and the two crossfade.
  swap(v, buffer, loudness) {
    this.buffers[v] = buffer; this.loudness[v] = loudness;
    const n = this.node(v);
    if (this.playing) {
      const when = this.ctx.currentTime + 0.02;
      const [a, b] = this.loopBounds();
      let pos = this.startPos + (when - this.startCtx);
      if (pos >= b && b > a) pos = a + ((pos - a) % (b - a));
      const s = this.startSource(v, when, pos);
      s.fade.gain.setValueAtTime(0, when); s.fade.gain.linearRampToValueAtTime(1, when + CROSSFADE_S);
      if (n.source) {
        const old = n.source, oldFade = n.fade;
        oldFade.gain.setValueAtTime(1, when); oldFade.gain.linearRampToValueAtTime(0, when + CROSSFADE_S);
        old.stop(when + CROSSFADE_S + 0.02);
      }
      n.source = s.src; n.fade = s.fade;
    }
    this.applyMatch();
  },
  setLoop(loop) {
    this.loop = loop;
    for (const n of Object.values(this.nodes)) if (n.source) {
      const [a, b] = this.loopBounds(); n.source.loopStart = a; n.source.loopEnd = b;
    }
    if (this.playing) { const p = this.position(); const [a, b] = this.loopBounds(); if (p < a || p >= b) { this.pause(); this.startPos = a; this.play(); } }
    else this.startPos = this.loopBounds()[0];
  },
};

async function loadVersion(v) {
  const master = $("#master").checked ? 1 : 0;
  const res = await fetch(`/api/audio/${v}.wav?master=${master}`);
  if (!res.ok) { const d = await res.json().catch(() => ({})); throw new Error(d.error || `HTTP ${res.status}`); }
  const revision = +res.headers.get("X-Revision");
  const loudness = parseFloat(res.headers.get("X-Loudness-LUFS"));
  const ms = parseFloat(res.headers.get("X-Render-Ms"));
  const data = await res.arrayBuffer();
  const buffer = await player.ctx.decodeAudioData(data);
  if ((player.revision[v] || 0) > revision) return;  // a newer render already arrived
  player.revision[v] = revision;
  player.regionStart = parseFloat(res.headers.get("X-Region-Start-S"));
  player.swap(v, buffer, loudness);
  if (v === "edit") studio.renders.push(ms);
  return ms;
}
async function loadAll() {
  const versions = studio.state.versions;
  await guarded("loading audio", async () => {
    status($("#master").checked ? "mastering the versions..." : "rendering the versions...");
    for (const v of versions) await loadVersion(v);
    status(`ready: ${versions.length} versions of ${player.length().toFixed(1)} s`);
  });
  refreshGainReduction();
}

let editTimer = null, editChain = Promise.resolve();
function scheduleEditRender() {
  clearTimeout(editTimer);
  editTimer = setTimeout(() => {
    busy(1);
    editChain = editChain.then(async () => {
      try {
        const ms = await loadVersion("edit");
        status(`edit re-rendered in ${ms.toFixed(0)} ms (server)`);
        refreshGainReduction();
      } catch (e) { status(`rendering the edit: ${e.message}`, true); } finally { busy(-1); }
    });
  }, 60);
}

// ------------------------------------------------------------------ meter: spectrum, loudness, true peak
const meter = studio.meter = {
  init(ctx, input) {
    this.ctx = ctx; this.holdLufs = -Infinity; this.holdTp = -Infinity;
    this.spec = ctx.createAnalyser(); this.spec.fftSize = 4096; this.spec.smoothingTimeConstant = 0.75;
    input.connect(this.spec);
    const split = ctx.createChannelSplitter(2);
    input.connect(split);
    this.raw = []; this.kw = [];
    for (let ch = 0; ch < 2; ch++) {
      const a = ctx.createAnalyser(); a.fftSize = 32768; split.connect(a, ch); this.raw.push(a);
      let node = null, first = null;
      for (const s of studio.meterSpec.k_weighting) {
        const f = ctx.createIIRFilter(s.b, s.a);
        if (node) node.connect(f); else { split.connect(f, ch); first = f; }
        node = f;
      }
      const k = ctx.createAnalyser(); k.fftSize = 32768; node.connect(k); this.kw.push(k);
    }
    this.buf = new Float32Array(32768);
    this.freq = new Float32Array(this.spec.frequencyBinCount);
    this.phases = studio.meterSpec.true_peak_phases;
  },
  resetHolds() { this.holdLufs = -Infinity; this.holdTp = -Infinity; },
  momentary() {
    const n = Math.round(studio.meterSpec.momentary_s * this.ctx.sampleRate);
    let sum = 0;
    for (const k of this.kw) {
      k.getFloatTimeDomainData(this.buf);
      let s = 0; for (let i = this.buf.length - n; i < this.buf.length; i++) s += this.buf[i] * this.buf[i];
      sum += s / n;
    }
    return sum > 0 ? -0.691 + 10 * Math.log10(sum) : -Infinity;
  },
  truePeak(frames) {  // 4x interpolation with the taps automix.loudness uses
    let peak = 0; const taps = this.phases[0].length, half = taps / 2;
    for (const a of this.raw) {
      a.getFloatTimeDomainData(this.buf);
      const start = Math.max(half, this.buf.length - frames);
      for (let n = start; n < this.buf.length - half; n++) {
        const x = Math.abs(this.buf[n]); if (x > peak) peak = x;
        for (const ph of this.phases) {
          let y = 0; for (let i = 0; i < taps; i++) y += ph[i] * this.buf[n - half + i];
          y = Math.abs(y); if (y > peak) peak = y;
        }
      }
    }
    return peak > 0 ? 20 * Math.log10(peak) : -Infinity;
  },
  draw() {
    if (player.playing) {
      const m = this.momentary(); this.holdLufs = Math.max(this.holdLufs, m);
      const tp = this.truePeak(Math.round(this.ctx.sampleRate / 30)); this.holdTp = Math.max(this.holdTp, tp);
      $("#lufs").textContent = Number.isFinite(m) ? m.toFixed(1) : "-inf";
      $("#lufsmax").textContent = Number.isFinite(this.holdLufs) ? this.holdLufs.toFixed(1) : "-inf";
      $("#tp").textContent = Number.isFinite(this.holdTp) ? this.holdTp.toFixed(1) : "-inf";
      $("#tp").style.color = this.holdTp > -1 ? "var(--bad)" : "";
      $("#lufsbar").style.width = `${Math.max(0, Math.min(100, (m + 60) / 60 * 100))}%`;
    }
    const c = $("#spectrum"), g = c.getContext("2d"), w = c.width, h = c.height;
    g.fillStyle = "#111318"; g.fillRect(0, 0, w, h);
    g.strokeStyle = "#2a2e38"; g.fillStyle = "#5c6270"; g.font = "9px sans-serif";
    const fx = (f) => w * Math.log(f / 20) / Math.log(20000 / 20);
    for (const f of [50, 100, 200, 500, 1000, 2000, 5000, 10000]) { const x = fx(f); g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke(); g.fillText(f >= 1000 ? f / 1000 + "k" : f, x + 2, h - 2); }
    if (!player.playing) return;
    this.spec.getFloatFrequencyData(this.freq);
    const nyq = this.ctx.sampleRate / 2, bins = this.freq.length;
    g.strokeStyle = { raw: "#9e9e9e", automix: "#81c784", edit: "#4fc3f7", reference: "#ce93d8" }[player.active];
    g.beginPath();
    for (let x = 0; x < w; x++) {
      const f = 20 * Math.pow(1000, x / w), i = Math.min(bins - 1, Math.round(f / nyq * bins));
      const y = h * (1 - (this.freq[i] + 100) / 90);
      if (x) g.lineTo(x, y); else g.moveTo(x, y);
    }
    g.stroke();
  },
  showLevels() {
    const parts = Object.entries(player.loudness).map(([v, l]) => {
      const gain = 20 * Math.log10(player.matchGain(v));
      return `${v} ${Number.isFinite(l) ? l.toFixed(1) : "-inf"} LUFS${Math.abs(gain) > 0.05 ? ` (${gain.toFixed(1)} dB)` : ""}`;
    });
    $("#vlevels").textContent = parts.join(" · ");
  },
};

// ------------------------------------------------------------------ waveform, region and loop
const wave = {
  data: null, drag: null,
  draw() {
    const c = $("#wave"), w = c.width = c.clientWidth, h = c.height, g = c.getContext("2d");
    g.fillStyle = "#111318"; g.fillRect(0, 0, w, h);
    if (!this.data) return;
    const dur = this.data.duration_s, sx = (t) => t / dur * w;
    const r = studio.state.region;
    g.fillStyle = "#1f2a36"; g.fillRect(sx(r.start_s), 0, sx(r.stop_s) - sx(r.start_s), h);
    if (player.loop) { g.fillStyle = "rgba(240,163,58,.25)"; g.fillRect(sx(r.start_s + player.loop[0]), 0, sx(player.loop[1] - player.loop[0]), h); }
    g.fillStyle = "#6b8bb0";
    const n = this.data.min.length, peak = Math.max(1e-6, ...this.data.max.map(Math.abs), ...this.data.min.map(Math.abs));
    for (let i = 0; i < n; i++) {
      const x = i / n * w, y0 = h / 2 - this.data.max[i] / peak * h / 2, y1 = h / 2 - this.data.min[i] / peak * h / 2;
      g.fillRect(x, y0, Math.max(1, w / n), Math.max(1, y1 - y0));
    }
    const p = r.start_s + player.position();
    g.fillStyle = "#fff"; g.fillRect(sx(p), 0, 1, h);
  },
  timeAt(e) { const c = $("#wave"), b = c.getBoundingClientRect(); return Math.max(0, Math.min(1, (e.clientX - b.left) / b.width)) * this.data.duration_s; },
  attach() {
    const c = $("#wave");
    c.addEventListener("pointerdown", (e) => { this.drag = { t0: this.timeAt(e), t1: this.timeAt(e) }; c.setPointerCapture(e.pointerId); });
    c.addEventListener("pointermove", (e) => { if (this.drag) this.drag.t1 = this.timeAt(e); });
    c.addEventListener("pointerup", async (e) => {
      if (!this.drag) return;
      const { t0 } = this.drag, t1 = this.timeAt(e); this.drag = null;
      const a = Math.min(t0, t1), b = Math.max(t0, t1), r = studio.state.region;
      if (b - a < 0.05) {  // a click: inside the region moves the playhead, outside moves the region
        if (a >= r.start_s && a < r.stop_s) { player.setLoop(null); const was = player.playing; player.pause(); player.startPos = a - r.start_s; if (was) player.play(); }
        else await moveRegion(a);
        return;
      }
      if (a < r.start_s || b > r.stop_s) await moveRegion((a + b) / 2);
      const r2 = studio.state.region;
      const la = Math.max(0, a - r2.start_s), lb = Math.min(r2.stop_s - r2.start_s, b - r2.start_s);
      if (lb - la > 0.05) player.setLoop([la, lb]);
    });
  },
};
async function moveRegion(centre) {
  await guarded("moving the preview", async () => {
    const r = await api("/api/region", { centre_s: centre });
    studio.state.region = { start_s: r.start_s, stop_s: r.stop_s };
    const was = player.playing; player.pause(); player.setLoop(null); player.startPos = Math.max(0, centre - r.start_s);
    player.revision = {};
    await loadAll();
    if (was) player.play();
  });
}

// ------------------------------------------------------------------ strips
const strips = studio.strips = {};
function stripCard(stem) {
  const card = el("div", { class: "strip" + (stem.silent ? " silent" : ""), "data-stem": stem.file });
  const s = { stem, card, controls: {}, curve: null, gr: null };
  const mute = el("button", { class: "mute", title: "mute (listening only)" }, "M");
  const solo = el("button", { class: "solo", title: "solo (listening only)" }, "S");
  const reset = el("button", { class: "reset", title: "back to the suggestion" }, "↺");
  card.append(el("h3", {}, el("span", { class: "name", title: stem.file }, stem.file), el("span", { class: "role" }, stem.role), mute, solo, reset));
  const monitor = (what) => guarded(`${what} ${stem.file}`, async () => {
    const r = await api(`/api/stems/${encodeURIComponent(stem.file)}/monitor`, { [what]: !stem[what] });
    stem.mute = r.mute; stem.solo = r.solo; mute.classList.toggle("on", r.mute); solo.classList.toggle("on", r.solo);
    await rerenderAllStems();
  });
  mute.addEventListener("click", () => monitor("mute")); solo.addEventListener("click", () => monitor("solo"));
  reset.addEventListener("click", () => guarded(`reset ${stem.file}`, async () => {
    const r = await api(`/api/stems/${encodeURIComponent(stem.file)}/reset`, {}); applyStrip(s, r.strip); scheduleEditRender(); refreshEq(s);
  }));
  const add = (name, parent, label) => {
    const c = control(studio.specs[name], stem.strip[name], (v) => sendStrip(s, { [name]: v }), { label });
    s.controls[name] = c; parent.append(c.row); return c;
  };
  add("gain_db", card); add("pan", card);
  s.canvas = el("canvas", { class: "eqcanvas", title: "EQ: drag a band (left/right: frequency, up/down: gain); wheel: Q (peaks)" });
  card.append(s.canvas);
  const eqd = el("details", {}, el("summary", {}, "EQ bands"));
  for (const n of studio.strip.filter(n => n.startsWith("eq."))) add(n, eqd);
  card.append(eqd);
  add("comp.threshold_db", card, "comp thresh"); add("comp.ratio", card, "comp ratio");
  s.gr = el("div", { class: "gr", title: "compressor gain reduction at the playhead (max over the preview in brackets)" },
    el("span", { class: "small" }, "GR"), el("div", { class: "bar" }, el("div")), el("span", { class: "small grval" }, "0.0 dB"));
  card.append(s.gr);
  const cd = el("details", {}, el("summary", {}, "compressor"));
  for (const n of ["comp.attack_ms", "comp.release_ms", "comp.knee_db", "comp.makeup_db"]) add(n, cd);
  card.append(cd);
  add("sat.drive_db", card, "sat drive"); add("sat.mix", card, "sat mix");
  mute.classList.toggle("on", stem.mute); solo.classList.toggle("on", stem.solo);
  eqDrag(s);
  applyStrip(s, stem.strip);
  return s;
}
function applyStrip(s, strip) {
  s.stem.strip = strip;
  for (const [n, c] of Object.entries(s.controls)) c.set(strip[n], Math.abs(strip[n] - s.stem.suggested[n]) > 1e-6 * Math.max(1, Math.abs(strip[n])));
  drawEq(s);
}
async function sendStrip(s, values) {
  await guarded(s.stem.file, async () => {
    try {
      const r = await api(`/api/stems/${encodeURIComponent(s.stem.file)}/strip`, { values });
      applyStrip(s, r.strip);
      status(`${s.stem.file}: ${Object.entries(values).map(([k, v]) => `${labelOf(k)} ${fmt(studio.specs[k], v)}`).join(", ")}`);
      scheduleEditRender(); refreshEq(s);
    } catch (e) {
      applyStrip(s, s.stem.strip);  // back to what the server holds
      for (const k of Object.keys(values)) if (s.controls[k]) s.controls[k].num.classList.add("bad");
      throw e;
    }
  });
}
async function rerenderAllStems() { player.revision = {}; await loadAll(); }
async function refreshEq(s) {
  try { s.curve = await api(`/api/stems/${encodeURIComponent(s.stem.file)}/eq`); drawEq(s); } catch (e) { status(e.message, true); }
}
async function refreshGainReduction() {
  try { const r = await api("/api/gain_reduction"); for (const [name, g] of Object.entries(r.stems)) if (strips[name]) strips[name].grCurve = g; }
  catch (e) { status(e.message, true); }
}
const BANDS = [
  { f: "eq.low_shelf.freq_hz", g: "eq.low_shelf.gain_db" },
  { f: "eq.peak1.freq_hz", g: "eq.peak1.gain_db", q: "eq.peak1.q" },
  { f: "eq.peak2.freq_hz", g: "eq.peak2.gain_db", q: "eq.peak2.q" },
  { f: "eq.peak3.freq_hz", g: "eq.peak3.gain_db", q: "eq.peak3.q" },
  { f: "eq.high_shelf.freq_hz", g: "eq.high_shelf.gain_db" },
  { f: "eq.hpf.freq_hz", g: null },
];
const EQ_DB = 18;
function eqGeometry(s) {
  const c = s.canvas, w = c.clientWidth || 280, h = c.clientHeight || 96;
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  const fx = (f) => w * Math.log(f / 20) / Math.log(1000), xf = (x) => 20 * Math.pow(1000, x / w);
  const dy = (db) => h / 2 - db / EQ_DB * (h / 2 - 4), yd = (y) => (h / 2 - y) / (h / 2 - 4) * EQ_DB;
  return { c, w, h, fx, xf, dy, yd };
}
function drawEq(s) {
  const G = eqGeometry(s), g = G.c.getContext("2d");
  g.fillStyle = "#111318"; g.fillRect(0, 0, G.w, G.h);
  g.strokeStyle = "#2a2e38";
  for (const f of [100, 1000, 10000]) { g.beginPath(); g.moveTo(G.fx(f), 0); g.lineTo(G.fx(f), G.h); g.stroke(); }
  for (const d of [-12, -6, 0, 6, 12]) { g.beginPath(); g.moveTo(0, G.dy(d)); g.lineTo(G.w, G.dy(d)); g.stroke(); }
  if (s.curve) {
    g.strokeStyle = "#4fc3f7"; g.lineWidth = 1.5; g.beginPath();
    s.curve.freqs_hz.forEach((f, i) => { const x = G.fx(f), y = G.dy(Math.max(-EQ_DB, Math.min(EQ_DB, s.curve.db[i]))); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
    g.stroke(); g.lineWidth = 1;
  }
  const st = s.stem.strip;
  BANDS.forEach((b, i) => {
    const x = G.fx(st[b.f]), y = b.g ? G.dy(st[b.g]) : G.h - 8;
    g.fillStyle = b.g ? ["#ffb74d", "#e57373", "#81c784", "#64b5f6", "#ba68c8"][i] : (st["eq.hpf.mix"] > 0.005 ? "#fff" : "#666");
    g.beginPath(); g.arc(x, y, 4, 0, 2 * Math.PI); g.fill();
  });
}
// Where a band's handle is on the screen (client pixels), e.g. for tests that drag it.
studio.handlePosition = (file, band) => {
  const s = strips[file], G = eqGeometry(s), b = s.canvas.getBoundingClientRect(), bd = BANDS[band], st = s.stem.strip;
  const y = bd.g ? G.dy(st[bd.g]) : G.h - 8;
  return { x: b.left + G.fx(st[bd.f]) * b.width / G.w, y: b.top + y * b.height / G.h };
};
function eqDrag(s) {
  const c = s.canvas; let band = null, timer = null, pending = {};
  const flush = () => { const v = pending; pending = {}; if (Object.keys(v).length) sendStrip(s, v); };
  const queue = (values) => { Object.assign(pending, values); Object.assign(s.stem.strip, values); drawEq(s);
    for (const [k, v] of Object.entries(values)) s.controls[k].set(v); clearTimeout(timer); timer = setTimeout(flush, 80); };
  const pick = (e) => {
    const G = eqGeometry(s), b = c.getBoundingClientRect(), x = (e.clientX - b.left) * G.w / b.width, y = (e.clientY - b.top) * G.h / b.height;
    let best = null, dist = 14;
    BANDS.forEach((bd) => { const bx = G.fx(s.stem.strip[bd.f]), by = bd.g ? G.dy(s.stem.strip[bd.g]) : G.h - 8;
      const d = Math.hypot(bx - x, by - y); if (d < dist) { dist = d; best = bd; } });
    return { best, x, y, G };
  };
  c.addEventListener("pointerdown", (e) => { const p = pick(e); band = p.best; if (band) c.setPointerCapture(e.pointerId); });
  c.addEventListener("pointermove", (e) => {
    if (!band) return;
    const p = pick(e), values = {};
    values[band.f] = clampTo(studio.specs[band.f], p.G.xf(p.x));
    if (band.g) values[band.g] = clampTo(studio.specs[band.g], p.G.yd(p.y));
    queue(values);
  });
  c.addEventListener("pointerup", () => { band = null; });
  c.addEventListener("wheel", (e) => {
    const p = pick(e); if (!p.best || !p.best.q) return; e.preventDefault();
    const spec = studio.specs[p.best.q];
    queue({ [p.best.q]: clampTo(spec, s.stem.strip[p.best.q] * (e.deltaY < 0 ? 1.1 : 1 / 1.1)) });
  }, { passive: false });
}
function drawGainReduction() {
  const pos = player.position();
  for (const s of Object.values(strips)) {
    const g = s.grCurve; if (!g || !s.gr) continue;
    const i = Math.floor(pos / g.hop_s), v = g.gr_db.length && player.playing ? (g.gr_db[Math.min(i, g.gr_db.length - 1)] || 0) : 0;
    s.gr.querySelector(".bar > div").style.width = `${Math.min(100, -v / 20 * 100)}%`;
    s.gr.querySelector(".grval").textContent = `${v.toFixed(1)} dB (${g.max_db.toFixed(1)})`;
  }
}

// ------------------------------------------------------------------ mix controls and export
function mixBar() {
  const bar = $("#mixbar");
  const amount = control(studio.mixSpecs.amount_percent, studio.state.amount_percent,
    (v) => sendMix({ amount_percent: v }), { label: "amount" });
  amount.row.title = studio.mixSpecs.amount_percent.description;
  bar.append(amount.row);
  studio.mixControls = { amount_percent: amount };
  for (const g of studio.state.groups) {
    const c = control(studio.mixSpecs.group_trim_db, studio.state.group_trims_db[g], (v) => sendMix({ group_trims_db: { [g]: v } }), { label: `${g} trim` });
    c.row.dataset.group = g; bar.append(c.row); studio.mixControls[g] = c;
  }
}
async function sendMix(body) {
  await guarded("mix", async () => {
    try {
      const r = await api("/api/mix", body);
      studio.state.amount_percent = r.amount_percent; studio.state.group_trims_db = r.group_trims_db;
      scheduleEditRender();
      const st = await api("/api/session");
      for (const stem of st.stems) if (strips[stem.file]) strips[stem.file].stem.effective = stem.effective;
      for (const s of Object.values(strips)) refreshEq(s);
    } finally {
      studio.mixControls.amount_percent.set(studio.state.amount_percent);
      for (const g of studio.state.groups) studio.mixControls[g].set(studio.state.group_trims_db[g]);
    }
  });
}
function exportPanel() {
  const box = $("#exportitems");
  for (const item of studio.state.export_items)
    box.append(el("label", {}, el("input", { type: "checkbox", value: item, "data-item": item, ...(item === "settings" ? { checked: "" } : {}) }), ` ${item} `));
  $("#export").addEventListener("click", () => guarded("export", async () => {
    const items = [...box.querySelectorAll("input:checked")].map(i => i.value);
    $("#exportout").textContent = "exporting...";
    try {
      const r = await api("/api/export", { name: $("#exportname").value, items, overwrite: $("#overwrite").checked });
      $("#exportout").textContent = `wrote ${r.files.length} files to ${r.folder}` + (r.notes.length ? ` (${r.notes.join("; ")})` : "");
      $("#exportout").dataset.done = "1"; studio.lastExport = r;
      status(`exported to ${r.folder}`);
    } catch (e) { $("#exportout").textContent = e.message; $("#exportout").dataset.done = "error"; throw e; }
  }));
}

// ------------------------------------------------------------------ start
function frame() {
  const p = player.position(), t = studio.state.region.start_s + p;
  $("#clock").textContent = `${Math.floor(t / 60)}:${(t % 60).toFixed(1).padStart(4, "0")}`;
  wave.draw(); meter.draw(); drawGainReduction();
  requestAnimationFrame(frame);
}
async function main() {
  const [params, state, meterSpec, waveform] = await Promise.all([api("/api/params"), api("/api/session"), api("/api/meter"), api("/api/waveform")]);
  for (const s of params.strip) studio.specs[s.name] = s;
  for (const s of params.mix) studio.mixSpecs[s.name] = s;
  studio.strip = params.strip.map(s => s.name);
  studio.state = state; studio.meterSpec = meterSpec; wave.data = waveform;
  $("#song").textContent = state.song;
  document.title = `automix studio: ${state.song}`;
  const vbox = $("#versions");
  state.versions.forEach((v, i) => vbox.append(el("button", { "data-version": v, title: `key ${i + 1}`, onclick: () => player.select(v) }, VERSION_LABELS[v])));
  player.init(state.sample_rate);
  mixBar();
  for (const stem of state.stems) { const s = stripCard(stem); strips[stem.file] = s; $("#strips").append(s.card); refreshEq(s); }
  exportPanel();
  $("#notes").textContent = [`model: ${state.model || "-"}`, `exports go to ${state.out_dir}`, ...state.notes].join(" · ");
  $("#play").addEventListener("click", () => player.playing ? player.pause() : player.play());
  $("#match").addEventListener("change", () => player.applyMatch());
  $("#master").addEventListener("change", () => { player.revision = {}; loadAll(); });
  document.querySelector(".loud").addEventListener("click", () => meter.resetHolds());
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.code === "Space") { e.preventDefault(); player.playing ? player.pause() : player.play(); }
    const i = parseInt(e.key, 10); if (i >= 1 && i <= state.versions.length) player.select(state.versions[i - 1]);
  });
  wave.attach();
  window.addEventListener("resize", () => Object.values(strips).forEach(drawEq));
  player.select("edit");
  await loadAll();
  document.body.dataset.ready = "1";
  requestAnimationFrame(frame);
}
window.addEventListener("error", (e) => studio.errors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => studio.errors.push(String(e.reason)));
main().catch((e) => status(`could not start: ${e.message}`, true));
