// Fathom web UI. Builds every piece of page or model text with textContent (never innerHTML),
// so titles, snippets and answers can hold any characters and still show as text.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function safeHref(url) {
  try {
    const u = new URL(url, location.href);
    return ["http:", "https:", "file:"].includes(u.protocol) ? u.href : "#";
  } catch (e) { return "#"; }
}

// "/" focuses the search box (unless typing in a field already)
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
  const q = document.getElementById("q");
  if (q) { ev.preventDefault(); q.focus(); q.select(); }
});

// ---- the answer ---------------------------------------------------------------------------
function startAnswer(box) {
  const q = box.dataset.q, mode = box.dataset.mode || "auto";
  const body = document.getElementById("answer-body");
  const state = document.getElementById("answer-state");
  const setState = (text, busy) => { state.textContent = text; state.classList.toggle("busy", !!busy); };
  const started = performance.now();
  let text = "", finished = false, firstTokenMs = null;
  const streamed = el("span", {class: "streamed"});
  const caret = el("span", {class: "caret", "aria-hidden": "true"});
  body.replaceChildren(streamed, caret);
  setState("searching the index…", true);

  const cacheKey = "fathom-answer:" + mode + ":" + q;
  const cached = sessionStorage.getItem(cacheKey);
  if (cached) {  // this tab already has the answer (e.g. after Back): show it, don't generate again
    caret.remove();
    renderAnswer(box, JSON.parse(cached), q);
    setState("answered earlier in this tab", false);
    box.setAttribute("aria-busy", "false");
    box.dataset.done = "1";
    return;
  }
  const es = new EventSource("/api/ask?" + new URLSearchParams({q, mode}));
  const finish = () => { finished = true; es.close(); caret.remove(); box.setAttribute("aria-busy", "false"); };
  es.addEventListener("queue", (ev) => {
    const n = JSON.parse(ev.data).position;
    setState(`waiting: ${n} answer${n === 1 ? "" : "s"} ahead of this one (one generates at a time)`, true);
  });
  es.addEventListener("start", () => setState("reading the sources…", true));
  es.addEventListener("token", (ev) => {
    if (firstTokenMs === null) { firstTokenMs = performance.now() - started; box.dataset.firstTokenMs = firstTokenMs.toFixed(0); }
    box.dataset.tokens = String(Number(box.dataset.tokens || 0) + 1);
    text += JSON.parse(ev.data);
    streamed.textContent = text;
    setState("writing…", true);
  });
  es.addEventListener("answer", (ev) => {
    finish();
    const a = JSON.parse(ev.data);
    try { sessionStorage.setItem(cacheKey, ev.data); } catch (e) { /* storage full or disabled */ }
    renderAnswer(box, a, q);
    setState(a.abstained ? "no answer in the sources" : `done in ${((performance.now() - started) / 1000).toFixed(1)} s`, false);
    box.dataset.done = "1";
  });
  es.addEventListener("failure", (ev) => {
    finish();
    const err = JSON.parse(ev.data);
    body.replaceChildren(el("p", {class: "error", role: "alert"}, "The answer failed: " + err.error));
    setState("failed", false);
    box.dataset.done = "1";
  });
  es.onerror = () => {
    if (finished) return;
    finish();
    body.append(el("p", {class: "error", role: "alert"}, "Lost the connection to the Fathom server. Reload to try again."));
    setState("disconnected", false);
  };
}

function stripMarkers(s) {
  return s.replace(/\s*\[\d+(?:\s*,\s*\d+)*\]/g, "").trim();
}

function renderAnswer(box, a, q) {
  const body = document.getElementById("answer-body");
  const sourcesList = document.getElementById("answer-sources");
  const evidence = document.getElementById("evidence");
  const meta = document.getElementById("answer-meta");
  const byN = new Map(a.citations.map((c) => [c.n, c]));
  body.classList.add("final");
  evidence.hidden = true;

  if (a.abstained) {
    const card = el("div", {class: "abstain", role: "status"},
      el("h3", {text: "The indexed sources don't answer this"}),
      el("p", {}, a.answer),
      el("p", {class: "muted"}, "Searched for: ", el("strong", {text: q})),
      el("p", {class: "muted", text: "Why: " + a.reason}));
    body.replaceChildren(card);
    if (a.citations.length) {
      card.append(el("p", {text: "Closest passages, which did not hold the answer:"}));
      sourcesList.replaceChildren(...a.citations.map(sourceItem));
      sourcesList.hidden = false;
    }
  } else {
    const para = el("p", {class: "answer-text"});
    if (a.sentences && a.sentences.length) {
      a.sentences.forEach((s, i) => {
        const sent = el("span", {class: "sent", tabindex: 0, "data-status": s.status, "data-i": i,
          "aria-label": s.status === "supported" ? null : `${stripMarkers(s.text)} (${statusWord(s.status)})`});
        sent.append(stripMarkers(s.text));
        if (s.status !== "supported") sent.append(el("span", {class: "badge " + s.status, title: statusTitle(s.status)}, statusWord(s.status)));
        for (const n of s.citations) { const c = byN.get(n); if (c) sent.append(chip(c)); }
        const show = () => showEvidence(evidence, s, byN.get(s.citations[0]), sent);
        sent.addEventListener("mouseenter", show);
        sent.addEventListener("focus", show);
        para.append(sent, " ");
      });
    } else {
      para.append(a.answer);
    }
    body.replaceChildren(para);
    sourcesList.replaceChildren(...a.citations.map(sourceItem));
    sourcesList.hidden = a.citations.length === 0;
  }

  meta.replaceChildren();
  meta.append(el("span", {}, "mode ", el("span", {class: "mode", text: a.mode})));
  if (a.reason) meta.append(el("span", {class: "reason", text: a.reason}));
  if (a.model) meta.append(el("span", {text: "model " + a.model}));
  const t = flatTimings(a.timings);
  if (t.length) meta.append(el("dl", {class: "timings", "aria-label": "timings"},
    ...t.map(([k, v]) => el("div", {}, el("dt", {text: k}), el("dd", {text: v})))));
  for (const note of a.notes || []) meta.append(el("span", {text: "note: " + note}));
}

function statusWord(s) { return s === "reattached" ? "cited by the verifier" : s === "unsupported" ? "unsupported" : s; }
function statusTitle(s) {
  return s === "reattached" ? "The model did not cite this source itself (or cited another); the verifier found the sentence in the source shown"
       : "No indexed passage supports this sentence: treat it with care";
}

function chip(c) {
  const tipId = "tip-" + Math.random().toString(36).slice(2);
  return el("span", {class: "cite"},
    el("a", {class: "chip", href: safeHref(c.url), "aria-describedby": tipId, "data-n": c.n}, c.n),
    el("span", {class: "tip", role: "tooltip", id: tipId}, el("strong", {text: c.title || c.url}), c.snippet));
}

function sourceItem(c) {
  return el("li", {value: c.n},
    el("a", {href: safeHref(c.url)}, c.title || c.url),
    c.heading ? el("span", {class: "muted"}, " — " + c.heading.split(" > ").pop()) : null,
    el("div", {class: "muted", text: c.url}));
}

function showEvidence(box, s, c, sentEl) {
  document.querySelectorAll(".sent.active").forEach((n) => n.classList.remove("active"));
  sentEl.classList.add("active");
  const head = box.querySelector(".evidence-head"), passage = box.querySelector(".passage");
  box.hidden = false;
  if (!c) {
    head.textContent = "No source supports this sentence.";
    passage.replaceChildren();
    return;
  }
  head.replaceChildren(`[${c.n}] `, el("a", {href: safeHref(c.url)}, c.title || c.url),
    s.status === "reattached" ? " (cited by the verifier, not the model)" : "",
    s.status === "unsupported" ? " (does not support it)" : "");
  const text = c.passage || c.snippet || "";
  if (s.span_start >= 0 && s.span_end > s.span_start && s.span_end <= text.length) {
    // offsets index the stored passage; its '#' heading markers are dropped only for display
    const mark = el("mark", {text: plain(text.slice(s.span_start, s.span_end))});
    passage.replaceChildren(plain(text.slice(0, s.span_start)), mark, plain(text.slice(s.span_end)));
    mark.scrollIntoView({block: "nearest"});
  } else {
    passage.replaceChildren(plain(text));
  }
}

function plain(t) { return t.replace(/(^|\n)#{1,6} /g, "$1"); }

// timings are rendered generically: any (nested) object of numbers
function flatTimings(t, prefix = "") {
  const out = [];
  if (!t || typeof t !== "object") return out;
  for (const [k, v] of Object.entries(t)) {
    const key = prefix + k;
    if (v && typeof v === "object") out.push(...flatTimings(v, key + "."));
    else if (typeof v === "number") {
      const label = key.replace(/_per_s$/, "/s").replace(/_(ms|s)$/, "").replace(/_/g, " ");
      let shown = Number.isInteger(v) ? String(v) : v.toFixed(1);
      if (key.endsWith("_per_s")) shown = v.toFixed(1);
      else if (key.endsWith("_ms")) shown = v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms";
      else if (key.endsWith("_s")) shown = v.toFixed(2) + " s";
      out.push([label, shown]);
    } else if (v !== null && v !== undefined && v !== "") out.push([key, String(v)]);
  }
  return out;
}

// ---- crawl + index jobs -----------------------------------------------------------------------
function startJobs(form) {
  const box = document.getElementById("job-progress");
  const line = box.querySelector(".job-line"), bar = box.querySelector("progress"), detail = box.querySelector(".job-detail");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    const seeds = form.seeds.value.split(/\s+/).filter(Boolean);
    const maxPages = form.max_pages.value ? Number(form.max_pages.value) : null;
    box.hidden = false; box.className = "job-progress";
    line.textContent = "starting…"; detail.textContent = ""; bar.removeAttribute("value");
    button.disabled = true;
    let res;
    try {
      res = await fetch("/api/jobs", {method: "POST", headers: {"content-type": "application/json"},
                                      body: JSON.stringify({seeds, max_pages: maxPages})});
    } catch (e) {
      line.textContent = "Could not reach the server."; box.classList.add("failed"); button.disabled = false; return;
    }
    const data = await res.json();
    if (!res.ok) { line.textContent = data.error || "refused"; box.classList.add("failed"); button.disabled = false; return; }
    const t0 = performance.now();
    const es = new EventSource(data.progress);
    const end = () => { es.close(); button.disabled = false; };
    es.addEventListener("progress", (m) => {
      const e = JSON.parse(m.data);
      const secs = (performance.now() - t0) / 1000;
      if (e.stage === "crawl") {
        const c = e.counts || {};
        const fetched = c.fetched || 0;
        line.textContent = `Crawling: ${fetched} pages fetched`;
        detail.textContent = `${c.new || 0} new, ${c.changed || 0} changed, ${c.unchanged || 0} unchanged, ` +
          `${c.errors || 0} errors, ${c.skipped || 0} skipped · ${(fetched / Math.max(secs, 0.1)).toFixed(1)} pages/s`;
        if (maxPages) bar.value = Math.min(fetched / maxPages, 1); else bar.removeAttribute("value");
      } else if (e.stage === "index") {
        line.textContent = e.total ? `Indexing: ${e.done} of ${e.total} chunks embedded` : "Indexing: chunking pages…";
        detail.textContent = e.total ? `${(e.rate || 0).toFixed(1)} chunks/s` : "";
        if (e.total) bar.value = e.done / e.total; else bar.removeAttribute("value");
      }
    });
    es.addEventListener("finished", (m) => {
      const e = JSON.parse(m.data);
      end();
      bar.value = 1;
      box.classList.add(e.exit_code === 0 ? "ok" : "failed");
      line.textContent = (e.exit_code === 0 ? "Done. " : "Finished with errors. ") + e.report.summary;
      const errs = e.report.sources.filter((s) => s.error).map((s) => s.error);
      detail.replaceChildren(errs.join("; "), errs.length ? " " : "", el("a", {href: "/sources"}, "Reload the counts"));
      box.dataset.done = "1";
    });
    es.onerror = () => {
      if (box.dataset.done !== "1") { end(); box.classList.add("failed"); line.textContent = "Lost the connection to the server."; }
    };
    es.addEventListener("failed", (m) => {
      const e = JSON.parse(m.data);
      end();
      box.classList.add("failed");
      line.textContent = "The job failed: " + e.error;
      box.dataset.done = "1";
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("answer");
  if (box && box.dataset.q) startAnswer(box);
  const form = document.getElementById("job-form");
  if (form) startJobs(form);
});
