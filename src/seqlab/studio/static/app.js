// seqlab studio: the page. Plain JS, SVG and canvas; talks to the JSON API (docs/studio.md).
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function sv(tag, attrs = {}, text = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

const state = { runs: [], gatesModels: [], limits: {}, series: null, view: "translate",
                poll: null };

// ---------------------------------------------------------------- errors, tooltip, API

function showError(msg) {
  const box = $("#error");
  box.textContent = msg;
  box.hidden = !msg;
}

const tip = () => $("#tip");
function showTip(evt, text) {
  const t = tip();
  t.textContent = text;
  t.hidden = false;
  const x = Math.min(evt.clientX + 14, window.innerWidth - t.offsetWidth - 8);
  t.style.left = x + "px";
  t.style.top = (evt.clientY + 14) + "px";
}
function hideTip() { tip().hidden = true; }

async function api(path, opts = {}) {
  if (opts.json !== undefined) {
    opts = { method: "POST", headers: { "Content-Type": "application/json" },
             body: JSON.stringify(opts.json) };
  }
  const res = await fetch(path, opts);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const d = body && body.detail;
    throw new Error(typeof d === "string" ? d : `${res.status} ${res.statusText}`);
  }
  return body;
}

async function busy(button, fn) {
  showError("");
  button.disabled = true;
  try { await fn(); } catch (e) { showError(e.message); }
  finally { button.disabled = false; }
}

// ---------------------------------------------------------------- colours

function lerpStops(stops, v) {
  v = Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0));
  const x = v * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  const a = stops[i], b = stops[i + 1];
  return `rgb(${a.map((c, k) => Math.round(c + (b[k] - c) * f)).join(",")})`;
}
const BLUES = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const RDBU = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]];
const blues = v => lerpStops(BLUES, v);
const viridis = v => lerpStops(VIRIDIS, v);
const diverging = (v, m = 1) => lerpStops(RDBU, 0.5 + v / (2 * m));

const fmt = (v, d = 3) => (v == null ? "–" : Number(v).toFixed(d));
const piece = t => t.replace(/\u2581/g, "\u2581");   // sentencepiece's word mark, kept visible

// ---------------------------------------------------------------- tabs

function switchView(name) {
  state.view = name;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.classList.toggle("active", b.dataset.view === name);
  }
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + name;
  showError("");
  if (state.poll) { clearInterval(state.poll); state.poll = null; }
  if (name === "runs") { loadRuns(); state.poll = setInterval(loadRuns, 5000); }
}

function fillSelect(select, names, none) {
  select.innerHTML = "";
  for (const n of names) select.append(el("option", { value: n, text: n }));
  if (!names.length) select.append(el("option", { value: "", text: none }));
}

// ---------------------------------------------------------------- translate

function attentionMap(att, src, tgt, cell = 30, title = null) {
  // att: (T, S) rows over the source; hover a token or a cell to see where it looks
  const T = tgt.length, S = src.length;
  const left = Math.max(40, 8 * Math.max(...tgt.map(t => t.length), 1) + 14);
  const top = Math.max(40, Math.min(130, 6 * Math.max(...src.map(t => t.length), 1) + 20));
  const W = left + S * cell + 10, H = top + T * cell + 10;
  const s = sv("svg", { class: "attn", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  if (title) s.append(sv("title", {}, title));
  const srcBg = [], srcTx = [], tgtBg = [], tgtTx = [], cells = [];
  src.forEach((tok, c) => {
    const x = left + c * cell + cell / 2;
    const bg = sv("rect", { class: "tokbg src", x: left + c * cell, y: 0, width: cell,
                            height: top - 2 });
    const tx = sv("text", { class: "tok src", x, y: top - 6, "text-anchor": "start",
                            transform: `rotate(-55 ${x} ${top - 6})` }, piece(tok));
    s.append(bg, tx);
    srcBg.push(bg); srcTx.push(tx);
  });
  tgt.forEach((tok, r) => {
    const y = top + r * cell + cell / 2 + 4;
    const bg = sv("rect", { class: "tokbg tgt", x: 0, y: top + r * cell, width: left - 2,
                            height: cell });
    const tx = sv("text", { class: "tok tgt", x: left - 6, y, "text-anchor": "end" }, piece(tok));
    s.append(bg, tx);
    tgtBg.push(bg); tgtTx.push(tx);
  });
  for (let r = 0; r < T; r++) {
    const row = [];
    for (let c = 0; c < S; c++) {
      const rect = sv("rect", { class: "cell", x: left + c * cell, y: top + r * cell,
                                width: cell, height: cell, fill: blues(att[r][c]),
                                "data-r": r, "data-c": c });
      s.append(rect);
      row.push(rect);
    }
    cells.push(row);
  }
  const clear = () => {
    for (const e of [...srcBg, ...srcTx, ...tgtBg, ...tgtTx, ...cells.flat()]) {
      e.classList.remove("hl");
      if (e.classList.contains("tokbg")) e.style.fill = "";
    }
  };
  const shade = (bg, w) => { bg.style.fill = `rgba(253, 186, 116, ${Math.min(1, w)})`; };
  const fromTarget = r => {                  // a target word: its source words, by weight
    const m = Math.max(...att[r], 1e-9);
    tgtTx[r].classList.add("hl"); tgtBg[r].classList.add("hl");
    for (let c = 0; c < S; c++) {
      shade(srcBg[c], att[r][c] / m);
      if (att[r][c] / m > 0.5) srcTx[c].classList.add("hl");
      cells[r][c].classList.add("hl");
    }
  };
  const fromSource = c => {                  // a source word: the target words that read it
    const col = att.map(row => row[c]);
    const m = Math.max(...col, 1e-9);
    srcTx[c].classList.add("hl"); srcBg[c].classList.add("hl");
    for (let r = 0; r < T; r++) {
      shade(tgtBg[r], col[r] / m);
      if (col[r] / m > 0.5) tgtTx[r].classList.add("hl");
      cells[r][c].classList.add("hl");
    }
  };
  tgtTx.forEach((t, r) => { t.addEventListener("mouseenter", () => { clear(); fromTarget(r); }); });
  tgtBg.forEach((t, r) => { t.addEventListener("mouseenter", () => { clear(); fromTarget(r); }); });
  srcTx.forEach((t, c) => { t.addEventListener("mouseenter", () => { clear(); fromSource(c); }); });
  srcBg.forEach((t, c) => { t.addEventListener("mouseenter", () => { clear(); fromSource(c); }); });
  cells.flat().forEach(rect => {
    rect.addEventListener("mousemove", evt => {
      const r = +rect.dataset.r, c = +rect.dataset.c;
      clear(); fromTarget(r);
      showTip(evt, `${tgt[r]} \u2192 ${src[c]}: ${fmt(att[r][c])}`);
    });
    rect.addEventListener("mouseleave", hideTip);
  });
  s.addEventListener("mouseleave", () => { clear(); hideTip(); });
  return s;
}

function beamTree(tree) {
  const nodes = tree.nodes;
  const steps = Math.max(...nodes.map(n => n.step)) + 2;
  const colW = 92, rowH = 24, boxW = 80, boxH = 18;
  const rank = new Map(), perStep = {};
  for (const n of nodes) {
    const k = n.step + 1;
    perStep[k] = (perStep[k] || 0) + 1;
    rank.set(n.id, perStep[k] - 1);
  }
  const rows = Math.max(...Object.values(perStep));
  const W = steps * colW + 10, H = rows * rowH + 10;
  const s = sv("svg", { class: "tree", width: W, height: H });
  const pos = id => {
    const n = nodes[id];
    return [5 + (n.step + 1) * colW, 5 + rank.get(id) * rowH];
  };
  for (const n of nodes) {                                  // edges under the boxes
    if (n.parent == null) continue;
    const [x0, y0] = pos(n.parent), [x1, y1] = pos(n.id);
    const a = [x0 + boxW, y0 + boxH / 2], b = [x1, y1 + boxH / 2];
    const mx = (a[0] + b[0]) / 2;
    s.append(sv("path", { d: `M${a[0]},${a[1]} C${mx},${a[1]} ${mx},${b[1]} ${b[0]},${b[1]}`,
                          class: n.best && nodes[n.parent].best ? "best" : "" }));
  }
  for (const n of nodes) {
    const [x, y] = pos(n.id);
    const kind = n.best ? "best" : n.closed ? "closed" : n.alive ? "alive" : "dropped";
    const g = sv("g", { class: `node ${kind} ${n.alive ? "alive" : ""} ${n.closed ? "closed" : ""}`,
                        transform: `translate(${x},${y})` });
    g.append(sv("rect", { width: boxW, height: boxH, rx: 4 }));
    const label = n.token.length > 11 ? n.token.slice(0, 10) + "\u2026" : n.token;
    g.append(sv("text", { x: 5, y: 13 }, piece(label)));
    const what = n.closed ? "closed (end of sentence)" : n.alive ? "kept in the beam" : "dropped";
    g.addEventListener("mousemove", evt => showTip(evt,
      `${n.token}   step ${n.step + 1}\nlog-prob ${fmt(n.logprob)}   ${what}`));
    g.addEventListener("mouseleave", hideTip);
    s.append(g);
  }
  return s;
}

function card(title, ...children) {
  return el("div", { class: "card" }, title ? el("h3", { text: title }) : null, ...children);
}

function renderTranslation(res, tag) {
  const side = el("div", { class: "side" });
  const nb = el("ol", { class: "nbest" });
  for (const c of res.nbest) {
    nb.append(el("li", {}, c.translation || "(empty)",
                 el("span", { class: "score", text: fmt(c.score) })));
  }
  side.append(card(`${tag}: translation`, el("div", { class: "translation",
    text: res.translation || "(empty)" }), el("h3", { text: "n-best" }), nb));
  if (res.target_tokens.length) {
    side.append(card("Attention (hover a word or a cell)",
      el("div", { class: "maps" }, attentionMap(res.attention, res.source_tokens,
                                                res.target_tokens))));
  }
  // a Transformer: every decoder layer's heads (the last layer's mean is the map above)
  const layers = res.layers || (res.heads ? [res.heads] : []);
  layers.forEach((layer, l) => {
    const heads = el("div", { class: "heads" });
    layer.forEach((m, k) => heads.append(el("figure", {},
      attentionMap(m, res.source_tokens, res.target_tokens, 16),
      el("figcaption", { text: `head ${k + 1}` }))));
    const where = res.layers ? `decoder layer ${l + 1}: ` : "";
    side.append(card(`Attention per head (${where}${layer.length} heads)`, el("div",
      { class: "maps" }, heads)));
  });
  if (res.tree) {
    side.append(card(`Beam search tree (beam ${res.tree.num_beams}; blue: the best ` +
                     "hypothesis, dashed: closed, grey: dropped)",
                     el("div", { class: "maps" }, beamTree(res.tree))));
  }
  return side;
}

async function translate() {
  const compare = $("#tr-compare").checked;
  const texts = [$("#tr-input").value];
  if (compare) texts.push($("#tr-input-b").value);
  const body = t => ({ run: $("#tr-run").value || null, text: t,
                       num_beams: +$("#tr-beams").value, n_best: +$("#tr-nbest").value,
                       length_penalty: +$("#tr-lp").value, details: true });
  const results = [];
  for (const t of texts) results.push(await api("/api/translate", { json: body(t) }));
  const out = $("#tr-results");
  out.innerHTML = "";
  results.forEach((r, i) => out.append(renderTranslation(r, "AB"[i])));
}

// ---------------------------------------------------------------- gates

const GATES = [["f", "forget gate f"], ["i", "input gate i"], ["g", "cell update g"],
               ["o", "output gate o"], ["c", "cell state c"], ["h", "hidden state h"]];

function renderGates(res) {
  const out = $("#g-out");
  out.innerHTML = "";
  const T = res.labels.length, H = res.hidden_size;
  const cw = Math.max(3, Math.min(26, Math.floor(1150 / T)));
  const ch = Math.max(3, Math.min(12, Math.floor(150 / H)));
  const cMax = Math.max(1e-6, ...res.gates.c.flat().map(v => Math.abs(v ?? 0)));
  const colour = { f: v => viridis(v), i: v => viridis(v), o: v => viridis(v),
                   g: v => diverging(v), h: v => diverging(v), c: v => diverging(v, cMax) };
  const sel = { a: null, b: null };
  const canvases = [];
  const labels = el("canvas", { width: T * cw, height: 56 });
  const lctx = labels.getContext("2d");
  lctx.font = "11px ui-monospace, Menlo, Consolas, monospace";
  lctx.fillStyle = "#374151";
  const every = Math.max(1, Math.ceil(12 / cw));
  res.labels.forEach((lab, t) => {
    if (t % every) return;
    lctx.save();
    lctx.translate(t * cw + cw / 2 + 3, 54);
    lctx.rotate(-Math.PI / 3);
    lctx.fillText(lab === " " ? "\u2423" : lab.slice(0, 10), 0, 0);
    lctx.restore();
  });
  const grid = el("div", { class: "gate-grid" },
                  el("div", { class: "gate-row" }, el("div", { class: "name", text: "step" }),
                     labels));
  for (const [key, name] of GATES) {
    const data = res.gates[key];
    const cv = el("canvas", { width: T * cw, height: H * ch });
    const draw = () => {
      const ctx = cv.getContext("2d");
      for (let t = 0; t < T; t++) {
        for (let u = 0; u < H; u++) {
          const v = data[t][u];
          ctx.fillStyle = v == null ? "#eee" : colour[key](v);
          ctx.fillRect(t * cw, u * ch, cw, ch);
        }
      }
      if (sel.a != null) {
        const [a, b] = [Math.min(sel.a, sel.b), Math.max(sel.a, sel.b)];
        ctx.strokeStyle = "#d9480f";
        ctx.lineWidth = 2;
        ctx.strokeRect(a * cw + 1, 1, (b - a + 1) * cw - 2, H * ch - 2);
      }
    };
    canvases.push(draw);
    const at = evt => {
      const r = cv.getBoundingClientRect();
      return [Math.max(0, Math.min(T - 1, Math.floor((evt.clientX - r.left) / cw))),
              Math.max(0, Math.min(H - 1, Math.floor((evt.clientY - r.top) / ch)))];
    };
    let dragging = false;
    cv.addEventListener("mousedown", evt => { dragging = true; [sel.a] = at(evt); sel.b = sel.a;
                                             canvases.forEach(d => d()); });
    cv.addEventListener("mousemove", evt => {
      const [t, u] = at(evt);
      if (dragging) { sel.b = t; canvases.forEach(d => d()); }
      showTip(evt, `${name}, unit ${u}, step ${t} (${res.labels[t]}): ${fmt(data[t][u])}`);
    });
    cv.addEventListener("mouseleave", hideTip);
    window.addEventListener("mouseup", () => {
      if (!dragging) return;
      dragging = false;
      listUnits(res, Math.min(sel.a, sel.b), Math.max(sel.a, sel.b), cMax);
    });
    draw();
    grid.append(el("div", { class: "gate-row" }, el("div", { class: "name", text: name }), cv));
  }
  for (const [name, values] of Object.entries(res.inputs)) {
    const cv = el("canvas", { width: T * cw, height: 40 });
    const ctx = cv.getContext("2d");
    const vs = values.filter(v => v != null);
    const lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
    ctx.strokeStyle = "#2563eb";
    ctx.beginPath();
    values.forEach((v, t) => {
      const y = 36 - 32 * ((v ?? lo) - lo) / span;
      t ? ctx.lineTo(t * cw + cw / 2, y) : ctx.moveTo(t * cw + cw / 2, y);
    });
    ctx.stroke();
    grid.append(el("div", { class: "gate-row" }, el("div", { class: "name", text: name }), cv));
  }
  out.append(card(res.title, el("div", { class: "maps" }, grid),
                  el("div", { class: "legend" },
                     el("span", { text: `rows: ${H} units, columns: ${T} steps` }),
                     el("span", { text: "f, i, o: 0 (dark) \u2026 1 (yellow)" }),
                     el("span", { text: "g, h: \u22121 (blue) \u2026 +1 (red)" }),
                     el("span", { text: `c: \u00b1${fmt(cMax, 2)}` }))),
             el("div", { id: "g-units" }));
}

function listUnits(res, a, b, cMax) {
  // units whose values inside steps a..b differ most from their values elsewhere
  const T = res.labels.length, rows = [];
  for (const [key, name] of GATES) {
    const data = res.gates[key], scale = key === "c" ? cMax : 1;
    for (let u = 0; u < res.hidden_size; u++) {
      let si = 0, ni = 0, so = 0, no = 0;
      for (let t = 0; t < T; t++) {
        const v = data[t][u];
        if (v == null) continue;
        if (t >= a && t <= b) { si += v; ni++; } else { so += v; no++; }
      }
      if (!ni) continue;
      const inside = si / ni, outside = no ? so / no : 0;
      rows.push({ key, name, u, inside, outside, diff: (inside - outside) / scale });
    }
  }
  rows.sort((x, y) => Math.abs(y.diff) - Math.abs(x.diff));
  const tb = el("tbody");
  for (const r of rows.slice(0, 12)) {
    tb.append(el("tr", {}, el("td", { text: r.name }), el("td", { class: "num", text: r.u }),
                 el("td", { class: "num", text: fmt(r.inside) }),
                 el("td", { class: "num", text: fmt(r.outside) }),
                 el("td", { class: "num", text: (r.diff > 0 ? "+" : "") + fmt(r.diff) })));
  }
  const box = $("#g-units");
  box.innerHTML = "";
  box.append(card(`Units that change most in steps ${a}\u2013${b} ` +
                  `(${res.labels.slice(a, b + 1).join("").slice(0, 40)})`,
    el("table", {}, el("thead", {}, el("tr", {}, ...["gate / state", "unit", "mean in range",
      "mean elsewhere", "difference"].map(t => el("th", { text: t })))), tb)));
}

async function gates() {
  const m = $("#g-model").value;
  const run = state.runs.find(r => r.name === m);
  let res;
  if (run && run.kind === "series") {
    res = await postFile("/api/gates/series", "#g-csv", "a CSV file",
                         { run: m, start: $("#g-start").value, layer: $("#g-layer").value });
  } else {
    res = await api("/api/gates", { json: { model: m, text: $("#g-text").value,
      layer: +$("#g-layer").value, direction: +$("#g-dir").value } });
  }
  renderGates(res);
}

function gatesModelChanged() {
  const m = $("#g-model").value;
  const run = state.runs.find(r => r.name === m);
  const series = run && run.kind === "series";
  $("#g-text-row").hidden = series;
  $("#g-csv-row").hidden = !series;
  $("#g-dir-l").hidden = !(run && run.kind === "translate");
}

// ---------------------------------------------------------------- series

function drawSeries() {
  const S = state.series;
  if (!S) return;
  const { res, view } = S;
  const cv = S.canvas, dpr = window.devicePixelRatio || 1;
  const C = res.columns.length;
  const W = cv.clientWidth, panelH = 120, gap = 18, top = 10, left = 60, right = 14;
  const H = top + (C + 1) * (panelH + gap) + 24;
  cv.width = W * dpr; cv.height = H * dpr; cv.style.height = H + "px";
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const [x0, x1] = view;
  const px = i => left + (W - left - right) * (i - x0) / Math.max(1, x1 - x0);
  S.layout = { left, right, W, x0, x1 };
  ctx.font = "11px system-ui, sans-serif";
  for (const e of res.events) {                           // events: shaded spans
    if (e.end_index < x0 || e.start_index > x1) continue;
    ctx.fillStyle = "rgba(239, 68, 68, 0.13)";
    const a = px(Math.max(x0, e.start_index)), b = px(Math.min(x1, e.end_index + 1));
    ctx.fillRect(a, top, Math.max(2, b - a), H - top - 24);
  }
  const panel = (k, label, lines, thr) => {
    const y0 = top + k * (panelH + gap);
    let lo = Infinity, hi = -Infinity;
    for (const [ys] of lines) {
      for (let i = x0; i <= x1; i++) {
        const v = ys[i];
        if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      }
    }
    if (thr != null) { lo = Math.min(lo, thr); hi = Math.max(hi, thr); }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    const pad = (hi - lo) * 0.06 || 1;
    lo -= pad; hi += pad;
    const py = v => y0 + panelH - panelH * (v - lo) / (hi - lo);
    ctx.strokeStyle = "#e5e7eb"; ctx.lineWidth = 1;
    ctx.strokeRect(left, y0, W - left - right, panelH);
    ctx.fillStyle = "#6b7280";
    ctx.fillText(label, left + 6, y0 + 12);
    ctx.fillText(hi.toPrecision(3), 4, y0 + 10);
    ctx.fillText(lo.toPrecision(3), 4, y0 + panelH);
    const step = Math.max(1, Math.floor((x1 - x0) / (2 * (W - left))));
    for (const [ys, colour, dash] of lines) {
      ctx.strokeStyle = colour; ctx.setLineDash(dash); ctx.lineWidth = 1.3;
      ctx.beginPath();
      let pen = false;
      for (let i = x0; i <= x1; i += step) {
        const v = ys[i];
        if (v == null) { pen = false; continue; }
        pen ? ctx.lineTo(px(i), py(v)) : ctx.moveTo(px(i), py(v));
        pen = true;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    if (thr != null) {
      ctx.strokeStyle = "#dc2626"; ctx.setLineDash([5, 4]);
      ctx.beginPath(); ctx.moveTo(left, py(thr)); ctx.lineTo(W - right, py(thr)); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#dc2626";
      ctx.fillText(`threshold ${thr.toPrecision(3)}`, W - right - 110, py(thr) - 4);
    }
  };
  res.columns.forEach((name, k) => {
    panel(k, name, [[res.values.map(r => r[k]), "#1f2937", []],
                    [res.reconstruction.map(r => r[k]), "#f97316", [4, 3]]]);
  });
  panel(C, "anomaly score", [[res.scores, "#7c3aed", []]], res.threshold);
  ctx.fillStyle = "#6b7280";                              // x axis: indices or times
  const ticks = 6;
  for (let k = 0; k <= ticks; k++) {
    const i = Math.round(x0 + (x1 - x0) * k / ticks);
    const lab = res.timestamps ? String(res.timestamps[i]).replace("T", " ") : String(i);
    ctx.textAlign = k === 0 ? "left" : k === ticks ? "right" : "center";
    ctx.fillText(lab, px(i), H - 8);
  }
  ctx.textAlign = "left";
  if (S.drag) {
    ctx.fillStyle = "rgba(37, 99, 235, 0.15)";
    ctx.fillRect(Math.min(S.drag[0], S.drag[1]), top, Math.abs(S.drag[1] - S.drag[0]), H - 34);
  }
}

function renderSeries(res) {
  const out = $("#s-out");
  out.innerHTML = "";
  const cv = el("canvas", { id: "s-chart" });
  state.series = { res, view: [0, res.n_points - 1], canvas: cv, drag: null };
  const tb = el("tbody");
  res.events.forEach((e, k) => {
    tb.append(el("tr", { onclick: () => {
      const pad = Math.max(res.window, Math.round((e.end_index - e.start_index) * 2));
      state.series.view = [Math.max(0, e.start_index - pad),
                           Math.min(res.n_points - 1, e.end_index + pad)];
      drawSeries();
    } }, el("td", { text: k + 1 }), el("td", { text: String(e.start).replace("T", " ") }),
       el("td", { text: String(e.end).replace("T", " ") }),
       el("td", { class: "num", text: e.end_index - e.start_index + 1 }),
       el("td", { class: "num", text: fmt(e.peak_score) })));
  });
  out.append(card(`${res.n_points} points, ${res.columns.length} column(s), ` +
                  `${res.events.length} event(s); threshold ${fmt(res.threshold)}`,
    el("div", { class: "legend" },
       el("span", {}, el("i", { style: "background:#1f2937" }), "series"),
       el("span", {}, el("i", { style: "background:#f97316" }), "reconstruction"),
       el("span", {}, el("i", { style: "background:#7c3aed" }), "anomaly score"),
       el("span", {}, el("i", { style: "background:#dc2626" }), "threshold"),
       el("span", {}, el("i", { style: "background:rgba(239,68,68,.35);height:10px" }),
          "events")),
    cv),
    card("Events (click one to zoom to it)", el("table", { id: "s-events" },
      el("thead", {}, el("tr", {}, ...["#", "start", "end", "points", "peak score"]
        .map(t => el("th", { text: t })))), tb)));
  const idx = evt => {
    const L = state.series.layout, r = cv.getBoundingClientRect();
    const x = evt.clientX - r.left;
    const i = L.x0 + (x - L.left) / (L.W - L.left - L.right) * (L.x1 - L.x0);
    return [x, Math.max(0, Math.min(res.n_points - 1, Math.round(i)))];
  };
  let start = null;
  cv.addEventListener("mousedown", evt => { start = idx(evt); });
  cv.addEventListener("mousemove", evt => {
    const [x, i] = idx(evt);
    if (start) { state.series.drag = [start[0], x]; drawSeries(); }
    const when = res.timestamps ? String(res.timestamps[i]).replace("T", " ") : `index ${i}`;
    const vals = res.columns.map((c, k) => `${c} ${fmt(res.values[i][k])} ` +
                                          `(rebuilt ${fmt(res.reconstruction[i][k])})`);
    showTip(evt, [when, ...vals, `score ${fmt(res.scores[i])}`].join("\n"));
  });
  cv.addEventListener("mouseleave", hideTip);
  cv.addEventListener("mouseup", evt => {
    if (!start) return;
    const [, i] = idx(evt), j = start[1];
    start = null; state.series.drag = null;
    if (Math.abs(i - j) >= 4) state.series.view = [Math.min(i, j), Math.max(i, j)];
    drawSeries();
  });
  $("#s-download").disabled = false;
  drawSeries();
}

function eventsCsv(res) {
  const lines = ["start,end,start_index,end_index,peak_score"];
  for (const e of res.events) {
    lines.push([e.start, e.end, e.start_index, e.end_index, e.peak_score].join(","));
  }
  return lines.join("\n") + "\n";
}

async function postFile(path, input, what, fields) {
  // a multipart upload of the file chosen in `input`, with the non-empty `fields`
  const f = $(input).files[0];
  if (!f) throw new Error(`choose ${what} first`);
  const fd = new FormData();
  fd.append("file", f);
  for (const [k, v] of Object.entries(fields)) if (v !== "") fd.append(k, v);
  return api(path, { method: "POST", body: fd });
}

async function scoreSeries() {
  renderSeries(await postFile("/api/series/score", "#s-file", "a CSV file",
                              { run: $("#s-run").value }));
}

// ---------------------------------------------------------------- caption

function drawAttentionOver(canvas, img, map, G) {
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  if (!map) return;
  const small = document.createElement("canvas");
  small.width = G; small.height = G;
  const sctx = small.getContext("2d"), data = sctx.createImageData(G, G);
  const m = Math.max(...map.flat(), 1e-9);
  for (let y = 0; y < G; y++) {
    for (let x = 0; x < G; x++) {
      const k = 4 * (y * G + x), a = map[y][x] / m;
      data.data[k] = 10; data.data[k + 1] = 14; data.data[k + 2] = 30;
      data.data[k + 3] = Math.round(185 * (1 - a));
    }
  }
  sctx.putImageData(data, 0, 0);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);   // dark where it did not look
}

function renderCaption(res) {
  const out = $("#c-out");
  out.innerHTML = "";
  const img = new Image();
  img.src = res.image;
  const big = el("canvas", { width: 320, height: 320, id: "c-canvas" });
  const words = el("div", { class: "words" });
  const chips = [];
  const pick = k => {
    chips.forEach((c, j) => c.classList.toggle("active", j === k));
    drawAttentionOver(big, img, k == null ? null : res.word_attention[k], res.grid);
  };
  res.words.forEach((w, k) => {
    const chip = el("span", { class: "word", text: w });
    chip.addEventListener("mouseenter", () => pick(k));
    chips.push(chip);
    words.append(chip);
  });
  const thumbs = el("div", { class: "thumbs" });
  img.onload = () => {
    pick(res.words.length ? 0 : null);
    res.words.forEach((w, k) => {
      const c = el("canvas", { width: 110, height: 110 });
      drawAttentionOver(c, img, res.word_attention[k], res.grid);
      thumbs.append(el("figure", {}, c, el("figcaption", { text: w })));
    });
  };
  out.append(el("div", { class: "cap-wrap" },
    card("Caption (hover a word: where the model looked)",
         el("div", { class: "caption-text", id: "c-text", text: res.caption || "(empty)" }),
         words, big),
    card(`Attention of each word over the ${res.grid}\u00d7${res.grid} regions`, thumbs)));
}

async function captionImage() {
  renderCaption(await postFile("/api/caption", "#c-file", "an image",
                               { run: $("#c-run").value, num_beams: $("#c-beams").value }));
}

// ---------------------------------------------------------------- runs

function lineChart(series, xName, w = 420, h = 170) {
  // series: {name: [[x, y], ...]}, one colour each
  const colours = ["#2563eb", "#dc2626", "#059669", "#7c3aed", "#d97706"];
  const pts = Object.values(series).flat();
  const s = sv("svg", { class: "chart", width: w, height: h });
  if (!pts.length) { s.append(sv("text", { x: 10, y: 20 }, "no points logged yet")); return s; }
  const L = 46, R = 10, T = 10, B = 30;
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const [xlo, xhi] = [Math.min(...xs), Math.max(...xs)], [ylo, yhi] = [Math.min(...ys), Math.max(...ys)];
  const X = x => L + (w - L - R) * (x - xlo) / ((xhi - xlo) || 1);
  const Y = y => h - B - (h - T - B) * (y - ylo) / ((yhi - ylo) || 1);
  s.append(sv("line", { class: "axis", x1: L, y1: h - B, x2: w - R, y2: h - B }),
           sv("line", { class: "axis", x1: L, y1: T, x2: L, y2: h - B }),
           sv("text", { x: 2, y: T + 8 }, yhi.toPrecision(3)),
           sv("text", { x: 2, y: h - B }, ylo.toPrecision(3)),
           sv("text", { x: L, y: h - 12 }, String(xlo)),
           sv("text", { x: w - R, y: h - 12, "text-anchor": "end" }, `${xhi} ${xName}s`));
  Object.entries(series).forEach(([name, p], k) => {
    if (!p.length) return;
    const colour = colours[k % colours.length];
    s.append(sv("polyline", { points: p.map(q => `${X(q[0])},${Y(q[1])}`).join(" "),
                              fill: "none", stroke: colour, "stroke-width": 1.6 }));
    if (p.length === 1) s.append(sv("circle", { cx: X(p[0][0]), cy: Y(p[0][1]), r: 3, fill: colour }));
    s.append(sv("text", { x: w - R - 4, y: T + 12 + 13 * k, "text-anchor": "end", fill: colour,
                          style: `fill:${colour}` }, `${name} ${p[p.length - 1][1].toPrecision(4)}`));
  });
  return s;
}

async function loadRuns() {
  const out = $("#runs-out");
  try {
    const sums = await Promise.all(state.runs.map(r => api(`/api/runs/${encodeURIComponent(r.name)}`)));
    const grid = el("div", { class: "runs" });
    for (const s of sums) {
      const losses = {}, dev = {};
      for (const [k, v] of Object.entries(s.curves)) (k.startsWith("dev_") ? dev : losses)[k] = v;
      grid.append(el("div", { class: "card run", "data-run": s.name },
        el("div", { class: "run-head" }, el("b", { text: s.name }),
           el("span", { class: "kind", text: s.kind })),
        lineChart(losses, s.x), Object.keys(dev).length ? lineChart(dev, s.x) : null,
        el("details", {}, el("summary", { text: "config" }),
           el("pre", { text: JSON.stringify(s.config, null, 1) }))));
    }
    if (!sums.length) grid.append(el("p", { class: "hint", text: "No run directories were given." }));
    const open = new Set([...out.querySelectorAll("details[open]")].map(d => d.closest(".run").dataset.run));
    out.innerHTML = "";
    out.append(grid);
    for (const d of out.querySelectorAll("details")) {
      if (open.has(d.closest(".run").dataset.run)) d.open = true;
    }
  } catch (e) { showError(e.message); }
}

// ---------------------------------------------------------------- start

async function init() {
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => switchView(b.dataset.view));
  }
  const info = await api("/api/runs");
  state.runs = info.runs; state.gatesModels = info.gates_models; state.limits = info.limits;
  const of = k => state.runs.filter(r => r.kind === k).map(r => r.name);
  fillSelect($("#tr-run"), of("translate"), "no translator run given");
  fillSelect($("#s-run"), of("series"), "no autoencoder run given");
  fillSelect($("#c-run"), of("caption"), "no captioner run given");
  fillSelect($("#g-model"), [...info.gates_models, ...of("series")], "");
  $("#g-model").addEventListener("change", gatesModelChanged);
  gatesModelChanged();
  $("#tr-compare").addEventListener("change", () => {
    $("#tr-input-b-row").hidden = !$("#tr-compare").checked;
    if (!$("#tr-input-b").value) $("#tr-input-b").value = $("#tr-input").value;
  });
  const go = (id, fn) => $(id).addEventListener("click", () => busy($(id), fn));
  go("#tr-go", translate);
  go("#g-go", gates);
  go("#g-go-csv", gates);
  go("#s-go", scoreSeries);
  go("#c-go", captionImage);
  for (const id of ["#tr-input", "#tr-input-b"]) {
    $(id).addEventListener("keydown", e => { if (e.key === "Enter") $("#tr-go").click(); });
  }
  $("#g-text").addEventListener("keydown", e => { if (e.key === "Enter") $("#g-go").click(); });
  $("#s-reset").addEventListener("click", () => {
    if (state.series) { state.series.view = [0, state.series.res.n_points - 1]; drawSeries(); }
  });
  $("#s-download").addEventListener("click", () => {
    if (!state.series) return;
    const a = el("a", { href: URL.createObjectURL(new Blob([eventsCsv(state.series.res)],
                                                          { type: "text/csv" })),
                        download: "events.csv" });
    document.body.append(a); a.click(); a.remove();
  });
  window.addEventListener("resize", drawSeries);
  switchView(of("translate").length ? "translate" : "gates");
}

init().catch(e => showError(e.message));
