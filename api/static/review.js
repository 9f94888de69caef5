// Keyboard-first review page: no build step, no dependencies. Talks to /api/v1/review/*.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: "", item: null, history: [], viewingPast: false, zoom: 1, showPage: false };

function headers(json) {
  const h = { Authorization: "Bearer " + state.token };
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function status(text) { $("status").textContent = text; }

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(!!opts.body) });
  if (r.status === 204) return null;
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.code || r.status) + ": " + (body.detail || ""));
  return body;
}

async function authedImage(img, url) {
  // Images need the bearer token, so fetch them and show them as blobs.
  if (!url) { img.removeAttribute("src"); return; }
  const r = await fetch(url, { headers: headers(false) });
  if (!r.ok) { img.removeAttribute("src"); return; }
  img.src = URL.createObjectURL(await r.blob());
}

function show(item, past) {
  state.item = item;
  state.viewingPast = past;
  $("work").hidden = false;
  $("item-id").textContent = "#" + item.item_id;
  $("tps").textContent = item.kode_tps;
  $("page").textContent = item.page;
  $("field-label").textContent = item.label;
  $("field-id").textContent = item.field_id;
  $("stage").textContent = item.stage || item.state;
  const m = item.machine;
  $("machine").textContent = m.value === null ? "?" : m.value + " [" + m.text + "]";
  $("confidence").textContent = "p=" + (m.confidence || 0).toFixed(2);
  $("candidates").textContent = m.alternatives.length
    ? "others: " + m.alternatives.map((a) => a.value + " (" + (a.p || 0).toFixed(2) + ")").join(", ") : "";
  $("reasons").textContent = "why: " + item.reasons.join(", ");
  $("rules").textContent = (item.failing_rules.length
    ? " · failing: " + item.failing_rules.map((r) => r.rule + " " + (r.message || r.name)).join("; ") : "")
    + (item.misread_rules.length
    ? " · the sums ask for it: " + item.misread_rules.map((r) => r.rule + " " + (r.message || r.name)).join("; ") : "");
  const mine = item.your_decision;
  $("decided").hidden = !past;
  $("decided").textContent = mine ? "you decided: " + mine.action + (mine.action === "correct" ? " " + mine.value : "") : "";
  const v = $("value");
  v.value = m.value === null ? "" : String(m.value);
  v.readOnly = past;
  v.focus();
  v.select();
  authedImage($("crop"), item.crop_url);
  authedImage($("page-img"), item.page_url);
  setView();
}

function setView() {
  document.documentElement.style.setProperty("--zoom", String(state.zoom));
  const pageView = state.showPage || !(state.item && state.item.crop_url);
  $("crop").hidden = pageView;
  $("page-img").hidden = !pageView;
}

async function refreshQueue() {
  try {
    const s = await api("/api/v1/review/stats");
    const open = (s.states.open || 0) + (s.states.second_entry || 0) + (s.states.arbitration || 0);
    $("queue").textContent = open + " to review";
  } catch (e) { /* stats are a nicety */ }
}

async function next() {
  const params = new URLSearchParams();
  if ($("filter-reason").value) params.set("reason", $("filter-reason").value.trim());
  if ($("filter-region").value) params.set("region", $("filter-region").value.trim());
  try {
    const item = await api("/api/v1/review/next?" + params);
    refreshQueue();
    if (!item) {
      state.item = null;
      $("work").hidden = true;
      status("Queue empty: nothing to review right now.");
      return;
    }
    show(item, false);
  } catch (e) { status("Error: " + e.message); }
}

async function decide(body) {
  const item = state.item;
  if (!item || state.viewingPast) return;
  try {
    const r = await api("/api/v1/review/items/" + item.item_id + "/decision", { method: "POST", body: JSON.stringify(body) });
    state.history.push(item.item_id);
    status("#" + item.item_id + " " + body.action + (body.value !== undefined ? " " + body.value : "") + " → " + r.state);
    await next();
  } catch (e) { status("Error: " + e.message); }
}

function submitValue() {
  const item = state.item;
  const text = $("value").value.trim();
  if (!/^\d{1,4}$/.test(text)) { status("Type the number you read (digits only), or u = unreadable."); return; }
  const value = parseInt(text, 10);
  if (value === item.machine.value) decide({ action: "approve" });
  else decide({ action: "correct", value });
}

async function back() {
  const id = state.history.pop();
  if (id === undefined) { status("No previous item."); return; }
  try {
    const item = await api("/api/v1/review/items/" + id);
    show(item, true);
    status("Previous item (read only). n = next item.");
  } catch (e) { status("Error: " + e.message); }
}

function onKey(ev) {
  if ($("work").hidden && ev.target.closest && ev.target.closest("#login-panel")) {
    if (ev.key === "Enter") { ev.preventDefault(); start(); }
    return;
  }
  const k = ev.key;
  if (!state.item) {
    // With the queue empty, going back and asking again still work.
    if (k === "b") { ev.preventDefault(); back(); } else if (k === "n") { ev.preventDefault(); next(); }
    return;
  }
  if (k === "Enter") { ev.preventDefault(); if (!state.viewingPast) submitValue(); return; }
  if (/^[0-9]$/.test(k) || ["Backspace", "Delete", "ArrowLeft", "ArrowRight", "Tab", "Home", "End"].includes(k)) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  ev.preventDefault();  // letters are shortcuts, never typed into the value
  if (k === "u") decide({ action: "unreadable" });
  else if (k === "s") decide({ action: "skip" });
  else if (k === "+" || k === "=") { state.zoom = Math.min(4, state.zoom * 1.25); setView(); }
  else if (k === "-") { state.zoom = Math.max(0.25, state.zoom / 1.25); setView(); }
  else if (k === "p") { state.showPage = !state.showPage; setView(); }
  else if (k === "b") back();
  else if (k === "n") next();
}

function start() {
  state.token = $("token").value.trim();
  sessionStorage.setItem("c1ocr-token", state.token);
  $("login-panel").hidden = true;
  next();
}

document.addEventListener("keydown", onKey);
$("login").addEventListener("click", start);
const saved = sessionStorage.getItem("c1ocr-token");
if (saved) { $("token").value = saved; }
$("token").focus();
