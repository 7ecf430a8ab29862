// The reviewer page: one frame at a time from the queue, answered by click or key.
// Talks only to this origin (/review/api/...); the access token travels in a cookie.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { items: [], current: null, selected: null, shownAt: 0, busy: false, digits: "", digitsAt: 0 };
// Labels are numbered from 1; a second digit typed within this many ms extends the
// first (1 then 7 picks label 17).
const TWO_DIGIT_MS = 1000;

function reviewer() {
  return $("reviewer").value.trim() || "reviewer";
}

async function api(path, body) {
  const init = body === undefined
    ? { credentials: "same-origin" }
    : { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
  return data;
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text || "";
  el.className = "status" + (kind ? " " + kind : "");
}

function pct(score) {
  return (score * 100).toFixed(score >= 0.995 || score < 0.1 ? 1 : 0) + "%";
}

function renderProgress(p) {
  $("done").textContent = p.done;
  $("left").textContent = p.left;
  const notes = [];
  if (p.skipped) notes.push(`${p.skipped} skipped`);
  if (p.waiting_for_others) notes.push(`${p.waiting_for_others} waiting for other reviewers`);
  $("skipped-note").textContent = notes.length ? " (" + notes.join(", ") + ")" : "";
  const total = p.done + p.left + p.waiting_for_others;
  $("progress-fill").style.width = total ? `${(100 * p.done) / total}%` : "0";
  $("review-skipped").hidden = !p.skipped;
  $("empty-title").textContent = p.skipped ? "Only skipped frames left" : "All caught up";
  $("empty-text").textContent = p.skipped
    ? `You skipped ${p.skipped} frame${p.skipped > 1 ? "s" : ""}. Review them now, or wait for new ones.`
    : "No frames are waiting for review. New ones appear here by themselves.";
}

function renderQueue() {
  const list = $("queue-list");
  list.replaceChildren();
  $("queue-count").textContent = state.queued ?? state.items.length;
  for (const item of state.items) {
    const li = document.createElement("li");
    li.dataset.name = item.name;
    if (state.current && item.name === state.current.name) li.className = "current";
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = "";
    img.loading = "lazy";
    const text = document.createElement("div");
    const label = document.createElement("div");
    label.className = "q-label";
    label.textContent = item.suggestion || "(no suggestion)";
    const sub = document.createElement("div");
    sub.className = "q-sub";
    sub.textContent = [item.file || item.device_id, item.created.slice(11, 19)].filter(Boolean).join(" · ");
    text.append(label, sub);
    li.append(img, text);
    li.addEventListener("click", () => show(item));
    list.append(li);
  }
}

function choiceButton(label, key, isNone, suggestion) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "choice" + (isNone ? " none" : "");
  b.setAttribute("role", "radio");
  b.setAttribute("aria-checked", "false");
  b.dataset.label = label;
  const k = document.createElement("kbd");
  k.className = "key";
  k.textContent = key || " ";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = label;
  name.title = label;
  b.append(k, name);
  if (label === suggestion) {
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = "model";
    b.append(tag);
  }
  b.addEventListener("click", () => select(label));
  return b;
}

function show(item) {
  state.current = item;
  state.selected = null;
  state.shownAt = performance.now();
  $("frame").src = item.image_url;
  $("frame").alt = `Frame ${item.event_id || item.name}`;
  $("meta").replaceChildren(
    ...[["file", item.file], ["device", item.device_id], ["model", item.model_version && "v" + item.model_version], ["created", item.created.replace("T", " ").replace(/\..*/, " UTC")], ["loop", item.name]]
      .filter(([, v]) => v)
      .flatMap(([k, v], i) => {
        const b = document.createElement("b");
        b.textContent = v;
        return [document.createTextNode((i ? " · " : "") + k + " "), b];
      })
  );
  const top = item.scores[0];
  const sug = $("suggested");
  sug.textContent = item.suggestion || "—";
  if (top && top.label === item.suggestion) {
    const small = document.createElement("small");
    small.textContent = pct(top.score);
    sug.append(small);
  }
  const scores = $("scores");
  scores.replaceChildren(
    ...item.scores.map((s) => {
      const li = document.createElement("li");
      const n = document.createElement("span");
      n.className = "s-name";
      n.textContent = s.label;
      const p = document.createElement("span");
      p.className = "s-pct";
      p.textContent = pct(s.score);
      const track = document.createElement("div");
      track.className = "s-track";
      const fill = document.createElement("div");
      fill.className = "s-fill";
      fill.style.width = `${Math.max(0, Math.min(1, s.score)) * 100}%`;
      track.append(fill);
      li.append(n, p, track);
      return li;
    })
  );
  $("choices").replaceChildren(
    ...item.choices.map((c, i) => choiceButton(c, String(i + 1), false, item.suggestion)),
    choiceButton(item.none_label, "N", true, null)
  );
  $("filter").value = "";
  state.digits = "";
  $("needed").textContent = item.needed > 1
    ? `This frame needs ${item.needed} reviewers; ${item.answers} answered so far.`
    : "";
  $("submit").disabled = true;
  setStatus("");
  for (const li of $("queue-list").children) li.classList.toggle("current", li.dataset.name === item.name);
}

function select(label) {
  if (!state.current) return;
  state.selected = label;
  for (const b of $("choices").children) b.setAttribute("aria-checked", String(b.dataset.label === label));
  $("submit").disabled = false;
}

async function refresh(keepCurrent) {
  const data = await api(`/review/api/queue?reviewer=${encodeURIComponent(reviewer())}`);
  state.items = data.items;
  state.queued = data.progress.queued;
  renderProgress(data.progress);
  const empty = state.items.length === 0;
  document.querySelector(".layout").classList.toggle("is-empty", empty);
  $("empty").hidden = !empty;
  if (empty) {
    state.current = null;
    renderQueue();
    return;
  }
  const keep = keepCurrent && state.current && state.items.find((i) => i.name === state.current.name);
  if (!keep) show(state.items[0]);
  renderQueue();
}

async function submit() {
  if (!state.current || state.busy) return;
  if (!state.selected) {
    setStatus("Pick a label first (its number, / to filter, or N).", "error");
    return;
  }
  state.busy = true;
  const item = state.current;
  const label = state.selected;
  try {
    const res = await api(`/review/api/loops/${item.name}/answer`, {
      reviewer: reviewer(),
      label,
      time_spent_seconds: (performance.now() - state.shownAt) / 1000,
    });
    state.current = null;
    await refresh(false);
    setStatus(res.status === "completed"
      ? `Saved “${label}”.`
      : `Recorded “${label}”; waiting for ${res.needed - res.answers} more reviewer(s).`, "ok");
  } catch (e) {
    setStatus(e.message, "error");
  } finally {
    state.busy = false;
  }
}

async function skip() {
  if (!state.current || state.busy) return;
  state.busy = true;
  try {
    await api(`/review/api/loops/${state.current.name}/skip`, { reviewer: reviewer() });
    state.current = null;
    await refresh(false);
    setStatus("Skipped.", "");
  } catch (e) {
    setStatus(e.message, "error");
  } finally {
    state.busy = false;
  }
}

// A digit picks the label of that number; a second digit soon after extends it
// (labels 10 and up), as long as such a label exists.
function typeDigit(k) {
  const n = state.current.choices.length;
  const now = performance.now();
  const extended = state.digits + k;
  state.digits = state.digits && now - state.digitsAt < TWO_DIGIT_MS && Number(extended) <= n ? extended : k;
  state.digitsAt = now;
  const i = Number(state.digits);
  if (i >= 1 && i <= n) select(state.current.choices[i - 1]);
}

// Type-to-filter: only the labels containing the text stay; one left is selected.
function filterChoices() {
  const words = $("filter").value.trim().toLowerCase().replace(/[_\s]+/g, " ");
  const shown = [];
  for (const b of $("choices").children) {
    const name = b.dataset.label.toLowerCase().replace(/_/g, " ");
    b.hidden = !!words && !name.includes(words);
    if (!b.hidden) shown.push(b.dataset.label);
  }
  if (words && shown.length === 1) select(shown[0]);
  return shown;
}

document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (!state.current) return;
  const k = ev.key.toLowerCase();
  if (/^[0-9]$/.test(k)) {
    typeDigit(k);
  } else if (k === "/") {
    $("filter").focus();
  } else if (k === "n") {
    select(state.current.none_label);
  } else if (k === "enter") {
    submit();
  } else if (k === "s") {
    skip();
  } else {
    return;
  }
  ev.preventDefault();
});

function init() {
  const input = $("reviewer");
  input.value = localStorage.getItem("ea2i-reviewer") || "reviewer";
  input.addEventListener("change", () => {
    localStorage.setItem("ea2i-reviewer", reviewer());
    refresh(false).catch((e) => setStatus(e.message, "error"));
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") input.blur();
  });
  const filter = $("filter");
  filter.addEventListener("input", filterChoices);
  filter.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      const shown = filterChoices();
      if (shown.length) select(shown[0]);
      filter.blur();
      ev.preventDefault();
    } else if (ev.key === "Escape") {
      filter.value = "";
      filterChoices();
      filter.blur();
    }
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("review-skipped").addEventListener("click", async () => {
    await api("/review/api/skips/clear", { reviewer: reviewer() });
    await refresh(false);
  });
  refresh(false).catch((e) => setStatus(e.message, "error"));
  // New loops arrive while the page is open; poll gently, keeping the current frame.
  setInterval(() => {
    if (!state.busy) refresh(true).catch(() => {});
  }, 5000);
}

init();
