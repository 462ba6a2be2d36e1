// The drawing page: draw with pointer events (mouse, touch, pen), send the drawing as a PNG to
// POST /api/predict after each stroke, and draw what comes back; conv1's filters and the model's
// name come once from GET /api/model (tinynet/web/draw.py documents both answers).
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const statusLine = document.getElementById("status");
const BRUSH = 20; // pixels of the 280x280 drawing area

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

// ---------------------------------------------------------------------------------- drawing

let last = null; // the previous point of the stroke being drawn, or null between strokes
let dirty = false; // something was drawn since the pad was cleared

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function segment(from, to) {
  ink.strokeStyle = "#111";
  ink.lineWidth = BRUSH;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(from[0], from[1]);
  ink.lineTo(to[0], to[1]);
  ink.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  last = point(event);
  segment(last, last); // a dot
  dirty = true;
});

pad.addEventListener("pointermove", (event) => {
  if (last === null) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const p = point(e);
    segment(last, p);
    last = p;
  }
});

function endStroke() {
  if (last === null) return;
  last = null;
  pad.toBlob((blob) => predict(blob), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  dirty = false;
  showResult(null);
  say("Cleared. Draw a character.");
});

document.getElementById("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = ""; // choosing the same file again fires "change" again
  if (!file) return;
  clearPad();
  try { // show it on the pad too, when the browser can decode it (the server decodes it anyway)
    const picture = await createImageBitmap(file);
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (e) {
    say(`Your browser cannot show ${file.name}; sending it anyway.`);
  }
  dirty = true;
  predict(file);
});

// ------------------------------------------------------------------------- asking the server

let busy = false; // a request is on its way
let queued = null; // the newest drawing waiting for it

async function predict(body) {
  if (busy) { queued = body; return; } // only the newest drawing matters
  busy = true;
  try {
    const response = await fetch("/api/predict", {
      method: "POST", body, headers: {"Content-Type": "application/octet-stream"}});
    const answer = await response.json();
    if (!response.ok) {
      showResult(null);
      say(answer.error || `The server answered ${response.status}.`, true);
    } else if (dirty) { // not cleared meanwhile
      showResult(answer);
      say(`It reads ${quote(answer.top_k[0][0])} (${percent(answer.top_k[0][1])} sure). Draw more, ` +
          "or clear and try another.");
    }
  } catch (e) {
    say(`No answer from the server (${e.message}). Is inference.py --serve still running?`, true);
  } finally {
    busy = false;
    if (queued !== null) {
      const next = queued;
      queued = null;
      predict(next);
    }
  }
}

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

const quote = (c) => `\u201c${c}\u201d`;
const percent = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;

// ---------------------------------------------------------------------------- the pictures

// Colour maps: heat for feature maps (0..1: black, purple, orange, pale yellow), and a
// diverging one for signed values (-1..1: blue, white, red).
const HEAT = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
const COLD = [33, 102, 172], HOT = [178, 24, 43], WHITE = [247, 247, 247];

function mix(a, b, t) {
  return [0, 1, 2].map((i) => a[i] + (b[i] - a[i]) * t);
}

function heat(t) {
  const x = Math.min(Math.max(t, 0), 1) * (HEAT.length - 1);
  const i = Math.min(Math.floor(x), HEAT.length - 2);
  return mix(HEAT[i], HEAT[i + 1], x - i);
}

function diverging(v) {
  return v < 0 ? mix(WHITE, COLD, Math.min(-v, 1)) : mix(WHITE, HOT, Math.min(v, 1));
}

// Paint a canvas of w x h pixels; colour(i) gives pixel i's [r, g, b] (row-major).
function paint(canvas, w, h, colour) {
  canvas.width = w;
  canvas.height = h;
  const context = canvas.getContext("2d");
  const image = context.createImageData(w, h);
  for (let i = 0; i < w * h; i++) {
    const [r, g, b] = colour(i);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}

// A grid of small canvases in `holder`, one per map (count maps of h x w).
function paintGrid(holder, count, h, w, colour) {
  while (holder.children.length > count) holder.lastChild.remove();
  while (holder.children.length < count) {
    const canvas = document.createElement("canvas");
    canvas.className = "pixels";
    holder.appendChild(canvas);
  }
  for (let m = 0; m < count; m++) {
    const canvas = holder.children[m];
    canvas.title = `${holder.id === "filters" ? "filter" : "map"} ${m + 1}`;
    paint(canvas, w, h, (i) => colour(m * h * w + i));
  }
}

function bytes(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function showResult(answer) {
  const bars = document.getElementById("top5");
  bars.replaceChildren();
  const saliencyOf = document.getElementById("saliency-class");
  if (answer === null) {
    for (const id of ["input", "saliency"]) paint(document.getElementById(id), 28, 28, () => [0, 0, 0]);
    for (const id of ["conv1", "conv2"]) document.getElementById(id).replaceChildren();
    saliencyOf.textContent = "?";
    return;
  }
  const flat = answer.input.flat();
  paint(document.getElementById("input"), 28, 28, (i) => [flat[i], flat[i], flat[i]]);
  const saliency = answer.saliency.flat();
  paint(document.getElementById("saliency"), 28, 28, (i) => diverging(saliency[i]));
  saliencyOf.textContent = quote(answer.top_k[0][0]);

  for (const [char, p] of answer.top_k) {
    const row = document.createElement("li");
    row.innerHTML = '<span class="char"></span><span class="track"><span class="fill"></span></span>' +
                    '<span class="p"></span>';
    row.querySelector(".char").textContent = char;
    row.querySelector(".fill").style.width = `${Math.max(100 * p, 0.5)}%`;
    row.querySelector(".p").textContent = percent(p);
    bars.appendChild(row);
  }

  for (const [name, maps] of Object.entries(answer.feature_maps)) {
    const [count, h, w] = maps.shape;
    const data = bytes(maps.data);
    paintGrid(document.getElementById(name), count, h, w, (i) => heat(data[i] / 255));
  }
}

async function showModel() {
  try {
    const model = await (await fetch("/api/model")).json();
    const filters = model.filters;
    const [h, w] = [filters[0].length, filters[0][0].length];
    const flat = filters.flat(2);
    paintGrid(document.getElementById("filters"), filters.length, h, w, (i) => diverging(flat[i]));
    document.getElementById("model").textContent = `Model: ${model.checkpoint}.`;
  } catch (e) {
    say(`Could not ask the server about its model (${e.message}).`, true);
  }
}

clearPad();
showResult(null);
showModel();
