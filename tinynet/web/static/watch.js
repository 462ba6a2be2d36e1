// The training page: poll the JSON API every 2 s (GET /api/runs, the watched run's metrics after
// the last step seen and its snapshot; the compared runs' metrics) and draw it. Plain JavaScript.
"use strict";

const POLL_MS = 2000;
const COLOURS = ["#3b78c3", "#d9730d", "#1a7f37", "#8e44ad", "#b2182b", "#17a2b8", "#6c757d", "#a0522d"];
const state = { runs: [], focus: null, compare: new Set(), data: {}, snapshotStep: null, firstPoll: true };

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
  return payload;
}

function fmtTime(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(s % 60).padStart(2, "0")} s`;
}

function fmt(value, digits = 4) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

// ---- runs

function renderRuns() {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const run of state.runs) {
    const tick = el("input", { type: "checkbox", checked: state.compare.has(run.name) || run.name === state.focus,
                               disabled: run.name === state.focus, title: "overlay its curves" });
    tick.addEventListener("change", () => {
      tick.checked ? state.compare.add(run.name) : state.compare.delete(run.name);
      poll();
    });
    const name = el("button", { type: "button", textContent: run.name, title: "watch this run" });
    name.addEventListener("click", () => { setFocus(run.name); poll(); });
    const row = el("tr", { className: run.name === state.focus ? "focus" : "" }, [
      el("td", {}, [tick]), el("td", {}, [name]),
      el("td", {}, [el("span", { className: `badge ${run.status}`, textContent: run.status })]),
      el("td", { textContent: `${run.epochs_done}/${run.epochs ?? "?"}` }),
      el("td", { textContent: fmt(run.val_accuracy) })]);
    row.dataset.run = run.name;
    body.append(row);
  }
}

function setFocus(name) {
  if (state.focus === name) return;
  state.focus = name;
  state.compare.delete(name);
  state.snapshotStep = null;
  history.replaceState(null, "", `?run=${encodeURIComponent(name)}`);
}

// ---- metrics

async function refreshMetrics(name) {
  const known = state.data[name];
  const run = state.runs.find((r) => r.name === name);
  if (known && run && run.status !== "running" && known.status === run.status && known.step === run.step) return;
  const after = known && known.steps.length ? known.steps[known.steps.length - 1].step : null;
  const answer = await getJSON(`/api/runs/${encodeURIComponent(name)}/metrics${after === null ? "" : `?after=${after}`}`);
  const steps = known && after !== null ? known.steps.concat(answer.step_records) : answer.step_records;
  state.data[name] = { ...answer, steps, epochs: answer.epoch_records };
}

function series(name, colour, focus) {
  const d = state.data[name];
  if (!d) return [];
  const perEpoch = (key) => d.epochs.filter((r) => typeof r[key] === "number" && isFinite(r[key]))
    .map((r) => [r.epoch, r[key]]);
  const out = [];
  if (focus) {
    out.push({ label: `${name}: training (running mean)`, colour, loss: d.steps.map((r) => [r.progress, r.loss]),
               acc: d.steps.map((r) => [r.progress, r.accuracy]), line: true, steps: true });
  } else {
    out.push({ label: `${name}: training`, colour, loss: perEpoch("train_loss"), acc: perEpoch("train_accuracy"),
               line: true, dash: [4, 3] });
  }
  out.push({ label: `${name}: validation`, colour, loss: perEpoch("val_loss"), acc: perEpoch("val_accuracy"),
             line: !focus, dots: true });
  const external = perEpoch("external_accuracy");
  if (external.length) {
    out.push({ label: `${name}: external validation`, colour, loss: perEpoch("external_loss"), acc: external,
               dots: true, hollow: true });
  }
  return out;
}

function drawChart(canvas, all, key) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 48, R = 10, T = 10, B = 26;
  ctx.clearRect(0, 0, W, H);
  const points = all.flatMap((s) => s[key]).filter((p) => isFinite(p[0]) && isFinite(p[1]));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5b6575";
  if (!points.length) {
    ctx.fillText("no points yet", L + 10, T + 20);
    return 0;
  }
  let [x0, x1] = [0, Math.max(1, ...points.map((p) => p[0]))];
  let y0 = Math.min(...points.map((p) => p[1])), y1 = Math.max(...points.map((p) => p[1]));
  if (key === "acc") { y0 = Math.max(0, Math.min(y0, 1) - 0.02); y1 = Math.min(1, y1 + 0.02); }
  else { y0 = 0; y1 = y1 * 1.05 || 1; }
  if (y1 <= y0) y1 = y0 + 1;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = "#dfe3ea";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    ctx.beginPath(); ctx.moveTo(L, Y(y)); ctx.lineTo(W - R, Y(y)); ctx.stroke();
    ctx.fillText(y.toFixed(key === "acc" ? 2 : 2), 4, Y(y) + 4);
  }
  const xstep = Math.max(1, Math.ceil((x1 - x0) / 10));
  for (let x = 0; x <= x1; x += xstep) ctx.fillText(String(x), X(x) - 3, H - 8);
  let drawn = 0;
  for (const s of all) {
    const pts = s[key].filter((p) => isFinite(p[0]) && isFinite(p[1]));
    ctx.strokeStyle = ctx.fillStyle = s.colour;
    ctx.setLineDash(s.dash || []);
    ctx.lineWidth = s.steps ? 1.5 : 2;
    if (s.line && pts.length) {
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
    }
    ctx.setLineDash([]);
    if (s.dots) {
      for (const [x, y] of pts) {
        ctx.beginPath(); ctx.arc(X(x), Y(y), 3.5, 0, 2 * Math.PI);
        s.hollow ? ctx.stroke() : ctx.fill();
      }
    }
    if (s.steps) drawn = pts.length;
  }
  canvas.dataset.points = String(drawn); // the watched run's step points (the browser test reads it)
  return drawn;
}

function renderCurves() {
  const names = [state.focus, ...[...state.compare].filter((n) => n !== state.focus && state.data[n])];
  const all = names.flatMap((name, i) => series(name, COLOURS[i % COLOURS.length], i === 0));
  drawChart(document.getElementById("loss-chart"), all, "loss");
  drawChart(document.getElementById("acc-chart"), all, "acc");
  document.getElementById("legend").replaceChildren(...all.map((s) =>
    el("span", {}, [el("i", { style: `background:${s.colour}` }), s.label])));
  const d = state.data[state.focus];
  document.getElementById("title").textContent = state.focus || "no runs yet";
  const stats = document.getElementById("stats");
  if (!d) { stats.replaceChildren(); return; }
  const last = d.steps[d.steps.length - 1] || {};
  const lastEpoch = d.epochs[d.epochs.length - 1] || {};
  const config = d.config || {};
  const items = [["status", d.status], ["epoch", `${d.epochs_done}/${config.epochs ?? "?"}`],
                 ["step", last.step ?? "–"], ["lr", fmt(last.lr, 5)],
                 ["images/s", last.images_per_second ? Math.round(last.images_per_second) : "–"],
                 ["time left", d.status === "running" ? fmtTime(last.eta_seconds) : "–"],
                 ["val acc.", fmt(lastEpoch.val_accuracy)]];
  if (d.summary && typeof d.summary.test_accuracy === "number") items.push(["test acc.", fmt(d.summary.test_accuracy)]);
  stats.replaceChildren(...items.map(([k, v]) => el("span", {}, [`${k} `, el("b", { textContent: String(v) })])));
  stats.querySelector("span b").id = "run-status";
  document.getElementById("problems").replaceChildren(...(d.problems || []).map((p) => el("li", { textContent: p })));
  renderConfig(names);
}

function renderConfig(names) {
  const table = document.getElementById("config");
  const configs = names.map((n) => (state.data[n] && state.data[n].config) || {});
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))];
  const head = el("tr", {}, [el("th", { textContent: "" }), ...names.map((n) => el("th", { textContent: n }))]);
  const rows = keys.map((k) => {
    const values = configs.map((c) => JSON.stringify(c[k] ?? null));
    const differs = new Set(values).size > 1;
    return el("tr", {}, [el("th", { textContent: k }),
      ...values.map((v) => el("td", { textContent: v, className: differs ? "differs" : "" }))]);
  });
  table.replaceChildren(head, ...rows);
}

// ---- snapshot

function diverging(v) { // -1..1 -> blue..white..red, as the drawing page
  const t = Math.min(1, Math.abs(v));
  return v >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 - t), 255 * (1 - t), 255];
}

function paint(canvas, h, w, colour) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = colour(i);
    image.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

// The first convolution's filters, or a note where the network has none.
function renderFilters(filters) {
  const title = document.getElementById("filters-title"), hint = document.getElementById("filters-hint");
  if (!filters) {
    title.textContent = "Filters";
    hint.textContent = "This network has no convolution, so no filters to show: it reads the pixels as one " +
      "flat list (its Dense layers weigh all of them at once).";
    document.getElementById("filters").replaceChildren();
    return;
  }
  const data = filters.data, [kh, kw] = [data[0].length, data[0][0].length];
  title.textContent = `${filters.name || "conv1"}'s filters`;
  hint.textContent = `${data.length} learned ${kh}\u00d7${kw} filters: red positive weights, blue negative. ` +
    "Noise at first, strokes later.";
  document.getElementById("filters").replaceChildren(...data.map((f, i) => {
    const canvas = el("canvas", { title: `filter ${i + 1}` });
    const flat = f.flat();
    paint(canvas, f.length, f[0].length, (j) => diverging(flat[j]));
    return canvas;
  }));
}

function renderSnapshot(answer) {
  const note = document.getElementById("snapshot-at");
  const snap = answer.snapshot;
  if (!snap) {
    note.textContent = answer.problem || "no snapshot";
    for (const id of ["filters", "grid", "recall", "confused"]) document.getElementById(id).replaceChildren();
    document.getElementById("recall-note").textContent = "";
    return;
  }
  try {
    renderFilters(snap.filters);
    const bytes = Uint8Array.from(atob(snap.grid.images), (c) => c.charCodeAt(0));
    const classes = snap.classes;
    const [h, w] = snap.grid.shape || [28, 28]; // (snapshots before issue #38 were all 28x28)
    document.getElementById("grid").replaceChildren(...snap.grid.labels.map((label, i) => {
      const predicted = snap.grid.predicted[i];
      const canvas = el("canvas");
      canvas.style.aspectRatio = `${w} / ${h}`;
      paint(canvas, h, w, (j) => { const v = bytes[i * h * w + j]; return [v, v, v]; });
      return el("figure", { className: predicted === label ? "right" : "wrong",
                            title: `true ${classes[label]}, read as ${classes[predicted]}` },
                [canvas, el("figcaption", { textContent: classes[predicted] })]);
    }));
    const recall = document.getElementById("recall");
    recall.replaceChildren(...snap.recall.flatMap((r, k) => r === null ? [] : [
      el("span", { textContent: classes[k] }),
      el("div", { className: `bar${r < 0.5 ? " low" : ""}` }, [el("i", { style: `width:${(100 * r).toFixed(1)}%` })]),
      el("span", { textContent: r.toFixed(2) })]));
    document.getElementById("recall-note").textContent =
      `on ${snap.sample} validation images: accuracy ${fmt(snap.accuracy)}`;
    document.getElementById("confused").replaceChildren(...snap.confused.map(([t, p, n]) =>
      el("li", { textContent: `${classes[t]} read as ${classes[p]}: ${n} of ${snap.support[t]}` })));
    note.textContent = `at step ${snap.step} (epoch ${snap.epoch + (snap.batch ? 1 : 0)})`;
  } catch (error) {
    note.textContent = `snapshot.json is damaged (${error.message})`;
  }
}

// ---- the loop

async function poll() {
  const status = document.getElementById("status");
  try {
    const listing = await getJSON("/api/runs");
    state.runs = listing.runs;
    if (state.firstPoll) {
      const wanted = new URLSearchParams(location.search).get("run");
      const pick = [wanted, listing.focus].find((n) => n && state.runs.some((r) => r.name === n));
      if (pick) setFocus(pick);
      state.firstPoll = false;
    }
    if (!state.focus || !state.runs.some((r) => r.name === state.focus)) {
      const running = state.runs.filter((r) => r.status === "running");
      const latest = (running.length ? running : state.runs).slice(-1)[0];
      if (latest) setFocus(latest.name);
    }
    renderRuns();
    if (state.focus) {
      for (const name of [state.focus, ...state.compare]) await refreshMetrics(name);
      renderCurves();
      const run = state.runs.find((r) => r.name === state.focus);
      const snap = await getJSON(`/api/runs/${encodeURIComponent(state.focus)}/snapshot`);
      const step = snap.snapshot ? snap.snapshot.step : snap.problem;
      if (step !== state.snapshotStep) { renderSnapshot(snap); state.snapshotStep = step; }
      status.textContent = `${state.runs.length} run${state.runs.length === 1 ? "" : "s"}; ` +
        `watching ${state.focus} (${run ? run.status : "?"}); updated ${new Date().toLocaleTimeString()}`;
    } else {
      status.textContent = "no runs in this folder yet: train one with --watch";
    }
  } catch (error) {
    status.textContent = `cannot reach the server (${error.message}); retrying`;
  }
}

let busy = false;
async function tick() {
  if (!busy) { busy = true; try { await poll(); } finally { busy = false; } }
  setTimeout(tick, POLL_MS);
}
tick();
