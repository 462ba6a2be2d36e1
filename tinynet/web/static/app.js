// The drawing page: draw with pointer events (mouse, touch, pen), send the drawing as a PNG to
// POST /api/predict after each stroke, and draw what comes back; the model's name, input size,
// layers and every convolution's filters come once from GET /api/model, and make one card per
// convolution (tinynet/web/draw.py documents both answers).
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

// A grid of small canvases in `holder`, one per map (count maps of h x w), each titled `what` n.
function paintGrid(holder, count, h, w, colour, what = "map") {
  while (holder.children.length > count) holder.lastChild.remove();
  while (holder.children.length < count) {
    const canvas = document.createElement("canvas");
    canvas.className = "pixels";
    holder.appendChild(canvas);
  }
  for (let m = 0; m < count; m++) {
    const canvas = holder.children[m];
    canvas.title = `${what} ${m + 1}`;
    canvas.style.aspectRatio = `${w} / ${h}`;
    paint(canvas, w, h, (i) => colour(m * h * w + i));
  }
}

function bytes(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

let inputSize = [28, 28]; // the model's input (height, width), from GET /api/model

// The input-sized pictures: painted at the model's input size, shown with its aspect ratio.
function paintInput(id, h, w, colour) {
  const canvas = document.getElementById(id);
  canvas.style.aspectRatio = `${w} / ${h}`;
  paint(canvas, w, h, colour);
}

function showResult(answer) {
  const bars = document.getElementById("top5");
  bars.replaceChildren();
  const saliencyOf = document.getElementById("saliency-class");
  if (answer === null) {
    for (const id of ["input", "saliency"]) paintInput(id, inputSize[0], inputSize[1], () => [0, 0, 0]);
    for (const holder of document.querySelectorAll(".maps")) holder.replaceChildren();
    saliencyOf.textContent = "?";
    return;
  }
  const [h, w] = [answer.input.length, answer.input[0].length];
  const flat = answer.input.flat();
  paintInput("input", h, w, (i) => [flat[i], flat[i], flat[i]]);
  const saliency = answer.saliency.flat();
  paintInput("saliency", h, w, (i) => diverging(saliency[i]));
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
    const [count, mh, mw] = maps.shape;
    const data = bytes(maps.data);
    const holder = document.querySelector(`.maps[data-conv="${CSS.escape(name)}"]`);
    if (holder) paintGrid(holder, count, mh, mw, (i) => heat(data[i] / 255));
  }
}

// ------------------------------------------------------------------- the model's own cards

function element(tag, className, html) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (html !== undefined) node.innerHTML = html;
  return node;
}

const times = "&times;";
const escape = (text) => String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

// A convolution's filters: for one input channel, a grid of kH x kW pictures; for several, one
// picture with a row per filter and a column per input channel it weighs.
function showFilters(holder, conv) {
  const [out, cin, kh, kw] = conv.shape;
  const data = bytes(conv.data);
  const value = (i) => diverging(data[i] / 127.5 - 1);
  if (cin === 1) {
    paintGrid(holder, out, kh, kw, value, "filter");
    return;
  }
  holder.classList.add("slices");
  const canvas = element("canvas", "pixels");
  canvas.title = `${out} filters (rows) x ${cin} input channels (columns)`;
  const W = cin * (kw + 1) - 1, H = out * (kh + 1) - 1;
  paint(canvas, W, H, (i) => {
    const [y, x] = [Math.floor(i / W), i % W];
    const [f, r, c, j] = [Math.floor(y / (kh + 1)), y % (kh + 1), Math.floor(x / (kw + 1)), x % (kw + 1)];
    return r === kh || j === kw ? [255, 255, 255] : value(((f * cin + c) * kh + r) * kw + j);
  });
  const zoom = Math.min(400 / H, 420 / W); // enlarged to fit 420 x 400 pixels
  canvas.style.width = `${W * zoom}px`;
  canvas.style.height = `${H * zoom}px`;
  holder.replaceChildren(canvas);
}

function figure(child, caption) {
  const node = element("figure");
  node.append(child, element("figcaption", "", caption));
  return node;
}

function filtersCaption(conv) {
  const [out, cin, kh, kw] = conv.shape;
  const name = escape(conv.name);
  const how = (conv.stride !== 1 ? `, stride ${conv.stride}` : "") +
    (conv.padding ? `, padding ${conv.padding}` : "");
  if (cin === 1) {
    return `<b>${name}'s ${out} learned filters</b> (${kh}${times}${kw} weights each${how}). Each slides over the ` +
      `input and responds where the ink matches its pattern: <span class="red">red</span> weights want ink, ` +
      `<span class="blue">blue</span> ones want background.`;
  }
  return `<b>${name}'s ${out} learned filters</b>, each ${cin} slices of ${kh}${times}${kw}${how}: a row per ` +
    "filter, a column per feature map of the layer before, which it weighs and adds up " +
    '(<span class="red">red</span> positive, <span class="blue">blue</span> negative).';
}

function mapsCaption(conv, first, layer) {
  const [, oh, ow] = layer ? layer.output : [0, "?", "?"];
  const matched = first ? "your drawing"
    : "the maps before it, so it responds to combinations of strokes: corners, curves, crossings";
  return `<b>${escape(conv.name)}'s ${conv.shape[0]} feature maps</b> (${oh}${times}${ow}, after ReLU), one per ` +
    `filter: bright where the filter matched ${matched}. Each map is scaled to its own maximum; a black map ` +
    "found nothing.";
}

// One card per convolution: its filters now, its feature maps after each drawing.
function convCard(conv, index, network) {
  const out = conv.shape[0];
  const card = element("section", "card wide conv");
  const place = network ? `, layer ${conv.layer + 1} of ${network.length}` : "";
  card.append(element("h2", "", `Inside: ${escape(conv.name)}${index ? "" : ", the first convolution"}${place}`));
  const filters = element("div", "grid filters");
  if (index === 0) filters.id = "filters";
  showFilters(filters, conv);
  const maps = element("div", "grid maps");
  maps.dataset.conv = conv.name;
  maps.style.gridTemplateColumns = `repeat(${out <= 10 ? out : out <= 20 ? 10 : 25}, 1fr)`;
  const split = element("div", "split");
  split.append(figure(filters, filtersCaption(conv)),
               figure(maps, mapsCaption(conv, index === 0, network && network[conv.layer])));
  card.append(split);
  return card;
}

function noConvolutionCard(model) {
  const [, h, w] = model.input_shape;
  const card = element("section", "card wide");
  card.id = "no-convolution";
  card.append(element("h2", "", "Inside"), element("p", "caption",
    `This network has no convolution: it flattens the ${h}${times}${w} input into one list of ${h * w} ` +
    "pixels and its Dense layers weigh all of them at once, so it has no filters and no feature maps to " +
    "show. The saliency above still shows which pixels decided its answer."));
  return card;
}

function showNetwork(network) {
  const table = document.getElementById("network");
  if (!network) {
    table.replaceChildren(element("tr", "", "<td>(this model cannot be described layer by layer)</td>"));
    return;
  }
  const rows = network.map((layer, i) => element("tr", "",
    `<td class="n">${i + 1}</td><td>${escape(layer.name)}</td><td>${escape(layer.kind)}</td>` +
    `<td>${layer.output.join(times)}</td><td class="n">${layer.parameters.toLocaleString("en")}</td>`));
  const total = network.reduce((sum, layer) => sum + layer.parameters, 0);
  table.replaceChildren(element("tr", "", "<th></th><th>layer</th><th>kind</th><th>output</th><th>weights</th>"),
                        ...rows, element("tr", "", `<td></td><td colspan="3">in all</td><td class="n">` +
                                         `${total.toLocaleString("en")}</td>`));
}

async function showModel() {
  try {
    const model = await (await fetch("/api/model")).json();
    inputSize = model.input_shape.slice(1);
    document.getElementById("input-size").innerHTML = inputSize.join(times);
    document.getElementById("class-count").textContent = model.classes.length;
    document.getElementById("emnist-classes").hidden = model.classes.length !== 47;
    const cards = model.convolutions.map((conv, i) => convCard(conv, i, model.network));
    document.getElementById("inside").replaceChildren(...(cards.length ? cards : [noConvolutionCard(model)]));
    showNetwork(model.network);
    document.getElementById("model").textContent = `Model: ${model.checkpoint}.`;
    if (!dirty) showResult(null);
  } catch (e) {
    say(`Could not ask the server about its model (${e.message}).`, true);
  }
}

clearPad();
showResult(null);
showModel();
