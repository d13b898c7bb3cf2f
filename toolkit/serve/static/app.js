// The search page: reads the form, calls /api/search, draws the hits. Data is only ever set as text
// (textContent, attributes), never as HTML: captions and ids come from the index.
"use strict";

const $ = (id) => document.getElementById(id);
let busy = 0;

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; return; }
  $("error-message").textContent = error.message || "request failed";
  $("error-fix").textContent = error.hint || "";
  $("error-fix-row").hidden = !error.hint;
  box.hidden = false;
}

function options(form, { withHybrid }) {
  const data = new FormData();
  data.set("k", $("k").value || "12");
  if ($("label").value) data.append("label", $("label").value);
  if ($("collapse").checked) data.set("collapse", "true");
  if (withHybrid && $("hybrid").checked) data.set("hybrid", "true");
  return data;
}

async function send(data) {
  busy += 1;
  document.body.dataset.busy = "true";
  $("go").disabled = true;
  try {
    const response = await fetch("/api/search", { method: "POST", body: data, credentials: "same-origin" });
    let body;
    try { body = await response.json(); } catch (e) { body = { error: { message: `HTTP ${response.status}` } }; }
    if (!response.ok || body.error) {
      showError(body.error || { message: `HTTP ${response.status}` });
      return;
    }
    showError(null);
    render(body);
  } catch (e) {
    showError({ message: `the server did not answer (${e})`, hint: "is toolkit serve still running?" });
  } finally {
    busy -= 1;
    if (!busy) { delete document.body.dataset.busy; $("go").disabled = false; }
  }
}

function render(result) {
  const grid = $("grid");
  grid.replaceChildren();
  const n = result.hits.length;
  $("summary").textContent =
    `${result.kind} search on ${result.index} · ${result.mode} · ${n} hit${n === 1 ? "" : "s"} ` +
    `(${result.total} matched) · ${result.took_ms} ms`;
  for (const hit of result.hits) {
    const figure = document.createElement("figure");
    figure.className = "hit";
    figure.dataset.id = hit.id;
    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.loading = "lazy";
    const caption = (hit.source && (hit.source.caption || hit.source.label)) || "";
    img.alt = caption || hit.id;
    const text = document.createElement("figcaption");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score === null ? "" : hit.score.toFixed(4);
    const words = document.createElement("span");
    words.className = "caption";
    words.textContent = caption;
    const id = document.createElement("span");
    id.className = "hit-id";
    id.textContent = hit.id;
    text.append(score, words, id);
    const like = document.createElement("button");
    like.type = "button";
    like.className = "like";
    like.textContent = "More like this";
    like.addEventListener("click", () => {
      const data = options($("search-form"), { withHybrid: false });
      data.set("like", hit.id);
      send(data);
    });
    figure.append(img, text, like);
    grid.append(figure);
  }
  $("request").textContent = result.devtools;
  $("devtools").hidden = false;
  $("copied").textContent = "";
}

async function copyRequest() {
  const text = $("request").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // Plain http on another host is not a secure context: select the text and use the old command.
    const range = document.createRange();
    range.selectNodeContents($("request"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  $("copied").textContent = "copied";
}

async function loadConfig() {
  try {
    const response = await fetch("/api/config", { credentials: "same-origin" });
    const config = await response.json();
    if (config.error && !config.index) { showError(config.error); return; }
    $("index-name").textContent = `index ${config.index}`;
    $("collapse-field").textContent = config.collapse_field;
    $("k").max = String(config.max_k);
    for (const label of config.labels) {
      const option = document.createElement("option");
      option.value = label;
      option.textContent = label;
      $("label").append(option);
    }
    if (config.error) showError(config.error);
  } catch (e) {
    showError({ message: `the server did not answer (${e})`, hint: "is toolkit serve still running?" });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const data = options(event.target, { withHybrid: true });
    const file = $("image").files[0];
    const url = $("image-url").value.trim();
    const text = $("q").value.trim();
    if (file) data.set("image", file);
    if (url) data.set("image_url", url);
    if (text) data.set("q", text);
    if ((file || url) && !text) data.delete("hybrid");
    send(data);
  });
  // One kind of query at a time: choosing one clears the others.
  $("image").addEventListener("change", () => {
    if ($("image").files.length) { $("q").value = ""; $("image-url").value = ""; }
  });
  $("image-url").addEventListener("input", () => { $("q").value = ""; $("image").value = ""; });
  $("q").addEventListener("input", () => { $("image-url").value = ""; $("image").value = ""; });
  $("copy").addEventListener("click", copyRequest);
  loadConfig();
});
