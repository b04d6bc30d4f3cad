/* esbridge status page: the preview chart of a check (GET /api/v1/checks/NAME/preview).
 *
 * What the check would have said over the last hours, drawn as an inline SVG (no library):
 * the value over time, the warning and critical bands (the alerting side of each Nagios
 * range), the transitions it would have made, generic vertical markers (time + label, e.g.
 * deploys) and the current value at the right edge. Data attributes carry the scale so that
 * tests (and curious people) can check where things are drawn.
 */
"use strict";
(() => {
  const W = 720;
  const H = 220;
  const PAD = { left: 52, right: 86, top: 12, bottom: 40 };
  const FETCH_TIMEOUT_MS = 30000;
  const NS = "http://www.w3.org/2000/svg";
  const RANGES = ["6h", "24h", "7d"];

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const pad = (n) => String(n).padStart(2, "0");
  const num = (v) => (Number.isInteger(v) ? String(v) : String(+(+v).toPrecision(4)));

  function hm(ts) {
    const d = new Date(ts * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fullTime(ts) {
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm(ts)}:${pad(d.getSeconds())}`;
  }

  function spanText(seconds) {
    const m = Math.round(seconds / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }

  /** The alerting parts of a Nagios range, as [from, to] value intervals (infinite ends). */
  function alertIntervals(t) {
    if (!t) return [];
    const lo = t.start == null ? -Infinity : t.start;
    const hi = t.end == null ? Infinity : t.end;
    if (t.inside) return [[lo, hi]];
    const out = [];
    if (lo > -Infinity) out.push([-Infinity, lo]);
    if (hi < Infinity) out.push([hi, Infinity]);
    return out;
  }

  function thresholdValues(t) {
    if (!t) return [];
    return [t.start, t.end].filter((v) => v != null && !(v === 0 && !t.inside));
  }

  function domain(data) {
    const values = data.points.map((p) => p.value).filter((v) => v != null);
    const marks = [...thresholdValues(data.thresholds.warning), ...thresholdValues(data.thresholds.critical)];
    let lo = Math.min(0, ...values, ...marks);
    let hi = Math.max(...values, ...marks, lo + 1);
    hi += (hi - lo) * 0.08; // headroom so a threshold at the top is still visible
    return [lo, hi];
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    return node;
  }

  /** Build the SVG element for a preview answer. */
  function chart(data) {
    const points = data.points;
    const [lo, hi] = domain(data);
    const x0 = PAD.left;
    const x1 = W - PAD.right;
    const y0 = PAD.top;
    const y1 = H - PAD.bottom;
    const t0 = points[0].at;
    const t1 = points[points.length - 1].at;
    const x = (t) => (t1 === t0 ? x1 : x0 + ((t - t0) / (t1 - t0)) * (x1 - x0));
    const y = (v) => y0 + ((hi - v) / (hi - lo)) * (y1 - y0);
    const clampY = (v) => y(Math.max(lo, Math.min(hi, v)));

    const unit = data.unit && data.unit !== "c" ? (data.unit === "%" ? "%" : ` ${data.unit}`) : "";
    const svg = el("svg", {
      class: "preview-chart",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `${data.check}: value over the last ${data.since} with its thresholds`,
      "data-y-min": lo,
      "data-y-max": hi,
      "data-plot-top": y0,
      "data-plot-bottom": y1,
      "data-plot-left": x0,
      "data-plot-right": x1,
      "data-points": points.length,
    });

    // Bands: the alerting side of each threshold, critical drawn over warning.
    for (const level of ["warning", "critical"]) {
      const t = data.thresholds[level];
      for (const [a, b] of alertIntervals(t)) {
        const from = Math.max(a, lo);
        const to = Math.min(b, hi);
        if (!(to > from)) continue;
        const rect = el("rect", {
          class: `band band-${level}`,
          x: x0,
          width: x1 - x0,
          y: y(to),
          height: y(from) - y(to),
          "data-from": Number.isFinite(a) ? a : "-inf",
          "data-to": Number.isFinite(b) ? b : "inf",
        });
        rect.appendChild(el("title", {}, `${level} ${t.text}: alerts in this band`));
        svg.appendChild(rect);
      }
      for (const v of thresholdValues(t)) {
        if (v < lo || v > hi) continue;
        svg.appendChild(el("line", { class: `threshold threshold-${level}`, x1: x0, x2: x1, y1: y(v), y2: y(v), "data-value": v }));
        svg.appendChild(el("text", { class: `threshold-label threshold-${level}`, x: x0 - 4, y: y(v) + 4, "text-anchor": "end" }, num(v)));
      }
    }

    // Axes: the frame, the value range, start/middle/end times.
    svg.appendChild(el("rect", { class: "frame", x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
    svg.appendChild(el("text", { class: "axis", x: x0 - 4, y: y0 + 10, "text-anchor": "end" }, num(+hi.toPrecision(3))));
    svg.appendChild(el("text", { class: "axis", x: x0 - 4, y: y1, "text-anchor": "end" }, num(+lo.toPrecision(3))));
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      svg.appendChild(el("text", { class: "axis", x: x(t), y: H - 6, "text-anchor": anchor }, hm(t)));
    }

    // State strip under the plot: one run per stretch of the same state.
    const step = points.length > 1 ? (x1 - x0) / (points.length - 1) : x1 - x0;
    let runStart = 0;
    for (let i = 1; i <= points.length; i++) {
      if (i < points.length && points[i].state === points[runStart].state) continue;
      const left = Math.max(x0, x(points[runStart].at) - step / 2);
      const right = Math.min(x1, x(points[i - 1].at) + step / 2);
      const run = el("rect", { class: `state-run st-${points[runStart].state}`, x: left, y: y1 + 4, width: Math.max(1, right - left), height: 8 });
      run.appendChild(el("title", {}, `${points[runStart].state} ${hm(points[runStart].at)}–${hm(points[i - 1].at)}`));
      svg.appendChild(run);
      runStart = i;
    }

    // The value: one polyline per stretch with a value (no data leaves a gap).
    let segment = [];
    const flush = () => {
      if (segment.length) svg.appendChild(el("polyline", { class: "series", points: segment.join(" ") }));
      segment = [];
    };
    for (const p of points) {
      if (p.value == null) flush();
      else segment.push(`${x(p.at).toFixed(2)},${clampY(p.value).toFixed(2)}`);
    }
    flush();

    // Transitions: a dot where the state changed, coloured by the new state.
    for (const t of data.transitions) {
      const cy = t.value == null ? y1 : clampY(t.value);
      const dot = el("circle", { class: `transition st-${t.to}`, cx: x(t.at), cy, r: 3.5, "data-at": t.at, "data-to": t.to });
      dot.appendChild(el("title", {}, `${fullTime(t.at)}: ${t.from} → ${t.to}: ${t.summary}`));
      svg.appendChild(dot);
    }

    // Markers (time + label): vertical dashed lines, e.g. deploys.
    for (const m of data.markers || []) {
      if (m.at < t0 || m.at > t1) continue;
      const line = el("line", { class: "marker", x1: x(m.at), x2: x(m.at), y1: y0, y2: y1, "data-at": m.at });
      line.appendChild(el("title", {}, `${fullTime(m.at)}: ${m.label}`));
      svg.appendChild(line);
    }

    // The current value at the right edge.
    const last = points[points.length - 1];
    const lastY = last.value == null ? y1 : clampY(last.value);
    svg.appendChild(el("circle", { class: `current-dot st-${last.state}`, cx: x1, cy: lastY, r: 4 }));
    svg.appendChild(
      el("text", { class: "current", x: x1 + 8, y: lastY + 4, "data-value": last.value ?? "" }, last.value == null ? "no data" : `${num(last.value)}${unit}`),
    );
    return svg;
  }

  function factsHtml(data) {
    const tis = Object.entries(data.time_in_state)
      .filter(([, s]) => s > 0)
      .map(([state, s]) => `<span class="badge st-${esc(state)}">${esc(state)}</span> ${esc(spanText(s))}`)
      .join(" · ");
    const pages = `would have paged <strong>${data.pages}</strong> time${data.pages === 1 ? "" : "s"}`;
    const reqs = `${data.points.length} points every ${esc(data.step)}, ${data.requests} request${data.requests === 1 ? "" : "s"}`;
    const worst = (data.worst_groups || []).slice(0, 3).map((g) => `${esc(g.group)} (${esc(spanText(g.seconds_not_ok))} not OK)`);
    return (
      `<p class="preview-facts muted">${reqs} · ${data.transitions.length} transition${data.transitions.length === 1 ? "" : "s"} · ${pages}</p>` +
      `<p class="preview-facts">${tis}</p>` +
      (worst.length ? `<p class="preview-facts muted">worst groups: ${worst.join(", ")}</p>` : "")
    );
  }

  async function fetchPreview(name, since) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const r = await fetch(`api/v1/checks/${encodeURIComponent(name)}/preview?since=${encodeURIComponent(since)}`, {
        headers: { Accept: "application/json" },
        cache: "no-store",
        signal: ctl.signal,
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
      return body;
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`no answer within ${FETCH_TIMEOUT_MS / 1000} s`);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Fill ``container`` with the preview of ``detail`` (the check detail JSON). */
  async function load(container, detail, since = "24h") {
    if (!container) return;
    const name = detail.name;
    container.dataset.check = name;
    container.dataset.since = since;
    container.dataset.loaded = "loading";
    const buttons = RANGES.map(
      (r) => `<button type="button" class="linkish" data-since="${r}" aria-pressed="${r === since}">${r}</button>`,
    ).join(" ");
    container.innerHTML =
      `<div class="copyrow"><h3>Preview <span class="muted">(what the check would have said)</span></h3><span class="preview-ranges">${buttons}</span></div>` +
      `<div class="preview-body"><p class="muted">Replaying ${esc(name)} over the last ${esc(since)}…</p></div>`;
    container.querySelector(".preview-ranges").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-since]");
      if (b) load(container, detail, b.dataset.since);
    });
    const body = container.querySelector(".preview-body");
    try {
      const data = await fetchPreview(name, since);
      if (container.dataset.check !== name || container.dataset.since !== since) return;
      if (!document.contains(container)) return;
      body.innerHTML = "";
      body.appendChild(chart(data));
      body.insertAdjacentHTML("beforeend", factsHtml(data));
      container.dataset.loaded = "true";
    } catch (e) {
      body.innerHTML = `<p class="muted preview-error">${esc(e.message || e)}</p>`;
      container.dataset.loaded = "error";
    }
  }

  window.esbridgePreview = { load, chart };
})();
