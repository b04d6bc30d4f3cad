/* esbridge status page: a dependency-free view over the JSON API (/api/v1/checks).
 *
 * Why it is built this way:
 * - one innerHTML for the first render (1,000 rows paint in one layout), then keyed in-place
 *   updates so a refresh keeps scroll position, focus and the filter;
 * - the filter lives in the query string (?q=&tag=&state=&check=) so a link can be shared;
 * - a failed refresh never leaves old states looking current: a banner says since when and
 *   the list is greyed until esbridge answers again;
 * - an open detail does not stop the refresh: it is re-read every cycle and updated part by
 *   part in place (scroll, focus and the preview chart stay), and greyed on a failed refresh.
 */
"use strict";
(() => {
  const STATES = ["CRITICAL", "UNKNOWN", "WARNING", "PENDING", "OK"]; // worst first
  const RANK = { CRITICAL: 0, UNKNOWN: 1, WARNING: 2, PENDING: 3, OK: 4 };
  const REFRESH_MS = 5000;
  const FETCH_TIMEOUT_MS = 4000;
  const STATUS_EVERY = 6; // refresh the header facts every 6th cycle (~30 s)

  const $ = (id) => document.getElementById(id);
  const ui = {
    rows: $("rows"),
    counts: $("counts"),
    banner: $("banner"),
    list: $("list"),
    q: $("q"),
    tag: $("tag"),
    clear: $("clear"),
    shown: $("shown"),
    info: $("service-info"),
    dialog: $("detail"),
    detailTitle: $("detail-title"),
    detailBody: $("detail-body"),
    detailClose: $("detail-close"),
    detailNote: $("detail-note"),
  };

  const app = {
    checks: [], // last good list, worst first
    counts: {},
    total: 0,
    generatedAt: null, // server seconds of the last good list
    skew: 0, // server seconds minus browser seconds
    downSince: null, // browser ms of the first failed refresh in a row
    downReason: "",
    status: null,
    filter: { q: "", tag: "", states: new Set() },
    detail: null, // name of the open check
    detailShown: null, // name whose parts are in the detail body (null: loading or an error)
    detailAt: null, // browser ms of the last good read of the open detail
    detailSeq: 0, // detail requests sent, and the newest one applied
    detailApplied: 0,
    opener: null, // element to focus when the detail closes
    timer: null,
    inflight: false,
    cycle: 0,
    rendered: false,
    rowMap: new Map(), // name -> {tr, sig}
    tagsKey: "",
    countEls: {},
  };

  // -- formatting ------------------------------------------------------------------------

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const pad = (n) => String(n).padStart(2, "0");
  const serverNow = () => Date.now() / 1000 + app.skew;

  function hms(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function absTime(ts) {
    if (ts == null) return "";
    const d = new Date(ts * 1000);
    const off = -d.getTimezoneOffset();
    const tz = `UTC${off >= 0 ? "+" : "-"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${tz}`
    );
  }

  function isoTime(ts) {
    return ts == null ? "" : new Date(ts * 1000).toISOString();
  }

  function relTime(ts) {
    if (ts == null) return "—";
    let s = Math.round(serverNow() - ts);
    if (s < 0) return s > -5 ? "just now" : `in ${duration(-s)}`;
    if (s < 5) return "just now";
    return `${duration(s)} ago`;
  }

  function duration(s) {
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
  }

  function fmtNum(v) {
    if (v == null || Number.isNaN(v)) return "—";
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return String(a >= 100 ? +v.toFixed(1) : a >= 1 ? +v.toFixed(2) : +v.toPrecision(3));
  }

  function withUnit(v, unit) {
    const n = fmtNum(v);
    if (n === "—" || !unit) return n;
    return unit === "%" ? `${n}%` : `${n} ${unit}`;
  }

  /** Plain words for a Nagios range: "alerts when > 50". */
  function explainRange(text) {
    if (text == null || text === "") return "";
    const raw = String(text);
    const inside = raw.startsWith("@");
    const body = inside ? raw.slice(1) : raw;
    let lo = "0";
    let hi = body;
    if (body.includes(":")) [lo, hi] = body.split(":", 2);
    const hasLo = lo !== "~" && lo !== "";
    const hasHi = hi !== "";
    if (inside) {
      if (hasLo && hasHi) return `alerts when ${lo} ≤ value ≤ ${hi}`;
      if (hasLo) return `alerts when ≥ ${lo}`;
      if (hasHi) return `alerts when ≤ ${hi}`;
      return "always alerts";
    }
    const parts = [];
    if (hasLo) parts.push(`< ${lo}`);
    if (hasHi) parts.push(`> ${hi}`);
    return parts.length ? `alerts when ${parts.join(" or ")}` : "never alerts";
  }

  function badge(state) {
    return `<span class="badge st-${esc(state)}">${esc(state)}</span>`;
  }

  function timeEl(ts, extra = "") {
    if (ts == null) return `<time>—</time>`;
    return `<time datetime="${isoTime(ts)}" title="${esc(absTime(ts))}"${extra}>${esc(relTime(ts))}</time>`;
  }

  // -- URL <-> filter --------------------------------------------------------------------

  function readUrl() {
    const p = new URLSearchParams(location.search);
    app.filter.q = p.get("q") || "";
    app.filter.tag = p.get("tag") || "";
    app.filter.states = new Set(
      (p.get("state") || "")
        .split(",")
        .map((s) => s.trim().toUpperCase())
        .filter((s) => s in RANK),
    );
    return p.get("check") || null;
  }

  function writeUrl() {
    const p = new URLSearchParams();
    if (app.filter.q) p.set("q", app.filter.q);
    if (app.filter.tag) p.set("tag", app.filter.tag);
    if (app.filter.states.size) p.set("state", STATES.filter((s) => app.filter.states.has(s)).join(","));
    if (app.detail) p.set("check", app.detail);
    const qs = p.toString().replace(/%2C/g, ",");
    const url = location.pathname + (qs ? `?${qs}` : "") + location.hash;
    if (url !== location.pathname + location.search + location.hash) {
      history.replaceState(null, "", url);
    }
  }

  function globRegex(q) {
    const src = q.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    return new RegExp(`^${src}$`, "i");
  }

  function matcher() {
    const { q, tag, states } = app.filter;
    const needle = q.trim().toLowerCase();
    const re = /[*?]/.test(needle) ? globRegex(needle) : null;
    return (c) =>
      (!states.size || states.has(c.state)) &&
      (!tag || (c.tags || []).includes(tag)) &&
      (!needle || (re ? re.test(c.name) : c.name.toLowerCase().includes(needle)));
  }

  // -- the list --------------------------------------------------------------------------

  function signature(c) {
    // Everything shown in a row except the relative times, which tick separately.
    return [c.state, c.summary, c.value, c.unit, shownSince(c), c.stale, c.description,
      (c.tags || []).join(","), c.groups_not_ok, c.error, c.owner].join("\u0001");
  }

  // A stale check is UNKNOWN since it went stale, not since its last change (a day ago, say).
  function shownSince(c) {
    return c.stale_since_ts != null ? c.stale_since_ts : c.since_ts;
  }

  function rowHtml(c) {
    const n = esc(c.name);
    const tags = (c.tags || [])
      .map((t) => `<span class="tag" role="button" tabindex="-1" data-tag="${esc(t)}" title="Show only tag ${esc(t)}">${esc(t)}</span>`)
      .join("");
    const notOk = c.groups_not_ok ? ` <span class="muted">(${c.groups_not_ok} group${c.groups_not_ok > 1 ? "s" : ""} not OK)</span>` : "";
    const stale = c.stale ? ` <span class="stale" title="older than the allowed age: the state is not current">STALE</span>` : "";
    // Several replicas: which one evaluates the check (absent on a single instance).
    const owner = c.owner ? ` <span class="owner muted" title="replica that evaluates this check">by ${esc(c.owner)}</span>` : "";
    return (
      `<tr data-name="${n}" data-state="${esc(c.state)}" class="st-${esc(c.state)}">` +
      `<td class="state">${badge(c.state)}</td>` +
      `<td class="name"><a href="?check=${encodeURIComponent(c.name)}" data-open="${n}">${n}</a>` +
      (c.description ? `<span class="desc">${esc(c.description)}</span>` : "") +
      `</td>` +
      `<td class="summary">${esc(c.summary)}${notOk}</td>` +
      `<td class="num" data-label="Value">${esc(withUnit(c.value, c.unit))}</td>` +
      `<td class="when since" data-label="Since">${timeEl(shownSince(c))}</td>` +
      `<td class="when evaluated" data-label="Last evaluated">${timeEl(c.evaluated_at_ts)}${stale}${owner}</td>` +
      `<td class="tags" data-label="Tags">${tags}</td>` +
      `</tr>`
    );
  }

  function emptyRowHtml() {
    const hidden = app.checks.length;
    const msg = app.checks.length
      ? `No check matches the filter (${hidden} check${hidden > 1 ? "s" : ""} hidden).`
      : app.generatedAt == null ? "Loading checks…" : "No checks are configured.";
    return `<tr class="placeholder"><td colspan="7" class="empty">${esc(msg)}</td></tr>`;
  }

  function parseRows(html) {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    return Array.from(tpl.content.children);
  }

  function refreshTime(el, ts) {
    if (!el) return;
    const text = relTime(ts);
    if (el.textContent !== text) el.textContent = text;
    if (el._ts !== ts) {
      el._ts = ts;
      el.setAttribute("datetime", isoTime(ts));
      el.title = absTime(ts);
    }
  }

  function renderList() {
    const match = matcher();
    const visible = app.checks.filter(match);
    ui.shown.textContent =
      visible.length === app.checks.length ? `${app.checks.length} checks` : `${visible.length} of ${app.checks.length} checks shown`;

    if (!app.rendered) {
      // First paint: one innerHTML for every row.
      ui.rows.innerHTML = visible.length ? visible.map(rowHtml).join("") : emptyRowHtml();
      app.rowMap = new Map();
      for (const tr of ui.rows.rows) {
        if (tr.dataset.name) app.rowMap.set(tr.dataset.name, { tr, sig: "" });
      }
      for (const c of visible) app.rowMap.get(c.name).sig = signature(c);
      if (app.generatedAt != null) {
        app.rendered = true;
        performance.mark("esbridge:rows-rendered");
        window.esbridgeFirstRender = { ms: performance.now(), rows: visible.length };
      }
      return;
    }

    // Keyed update: reuse unchanged rows, rebuild changed ones in one parse.
    const active = document.activeElement;
    const activeName = active && active.closest ? active.closest("tr")?.dataset.name : null;
    const fresh = visible.filter((c) => {
      const e = app.rowMap.get(c.name);
      return !e || e.sig !== signature(c);
    });
    const built = fresh.length ? parseRows(fresh.map(rowHtml).join("")) : [];
    const builtBy = new Map(built.map((tr) => [tr.dataset.name, tr]));
    const nextMap = new Map();
    const wanted = [];
    const replaced = [];
    for (const c of visible) {
      const old = app.rowMap.get(c.name);
      let tr = builtBy.get(c.name);
      if (tr) {
        if (old && old.tr.dataset.state !== c.state) tr.classList.add("changed");
        if (old) replaced.push([old.tr, tr]);
      } else {
        tr = old.tr;
        refreshTime(tr.cells[4].firstElementChild, shownSince(c));
        refreshTime(tr.cells[5].firstElementChild, c.evaluated_at_ts);
      }
      nextMap.set(c.name, { tr, sig: signature(c) });
      wanted.push(tr);
    }
    // Same rows in the same order: swap changed rows in place; otherwise re-order once.
    const current = ui.rows.rows;
    let sameOrder = current.length === wanted.length;
    for (let i = 0; sameOrder && i < wanted.length; i++) {
      const want = wanted[i];
      const cur = current[i];
      if (cur !== want && !(cur.dataset.name && cur.dataset.name === want.dataset.name)) sameOrder = false;
    }
    if (sameOrder) {
      for (const [oldTr, newTr] of replaced) oldTr.replaceWith(newTr);
    } else if (wanted.length) {
      const frag = document.createDocumentFragment();
      for (const tr of wanted) frag.appendChild(tr);
      ui.rows.replaceChildren(frag);
    } else {
      ui.rows.innerHTML = emptyRowHtml();
    }
    app.rowMap = nextMap;
    if (activeName && !document.contains(active)) {
      nextMap.get(activeName)?.tr.querySelector("a")?.focus({ preventScroll: true });
    }
  }

  function renderCounts() {
    if (!ui.counts.firstChild) {
      ui.counts.innerHTML = STATES.map(
        (s) =>
          `<button type="button" class="count st-${s}" data-state="${s}" aria-pressed="false" ` +
          `title="Show only ${s} checks (click again to show all)"><span>${s}</span> <b>0</b></button>`,
      ).join("");
      for (const b of ui.counts.querySelectorAll("button")) app.countEls[b.dataset.state] = b;
    }
    for (const s of STATES) {
      const b = app.countEls[s];
      const n = String(app.counts[s] ?? 0);
      const num = b.querySelector("b");
      if (num.textContent !== n) num.textContent = n; // only real changes reach aria-live
      b.classList.toggle("zero", n === "0");
      const pressed = String(app.filter.states.has(s));
      if (b.getAttribute("aria-pressed") !== pressed) b.setAttribute("aria-pressed", pressed);
    }
    const bad = ["CRITICAL", "UNKNOWN", "WARNING"].filter((s) => app.counts[s]).map((s) => `${app.counts[s]} ${s}`);
    const prefix = app.downSince ? "⚠ unreachable · " : bad.length ? `(${bad.join(", ")}) ` : "";
    document.title = `${prefix}esbridge status`;
  }

  function renderTags() {
    const tags = [...new Set(app.checks.flatMap((c) => c.tags || []))].sort();
    if (app.filter.tag && !tags.includes(app.filter.tag)) tags.push(app.filter.tag);
    const key = tags.join("\u0001");
    if (key !== app.tagsKey) {
      app.tagsKey = key;
      ui.tag.innerHTML =
        `<option value="">all tags</option>` + tags.map((t) => `<option value="${esc(t)}">${esc(t)}</option>`).join("");
    }
    if (ui.tag.value !== app.filter.tag) ui.tag.value = app.filter.tag;
  }

  function renderInfo() {
    const parts = [];
    if (app.status) parts.push(`v${app.status.version}`);
    parts.push(`${app.total} checks`);
    if (app.generatedAt != null) parts.push(`updated ${hms((app.generatedAt - app.skew) * 1000)}`);
    let html = esc(parts.join(" · "));
    const es = app.status && app.status.elasticsearch;
    if (es) {
      const down = Object.entries(es).filter(([, v]) => v && v.up === false);
      if (down.length) {
        html += ` · <strong class="badge st-CRITICAL" title="${esc(down.map(([k, v]) => `${k}: ${v.last_error || "down"}`).join("; "))}">Elasticsearch ${esc(down.map(([k]) => k).join(", "))} down</strong>`;
      }
    }
    ui.info.innerHTML = html;
  }

  function renderBanner() {
    if (!app.downSince) {
      if (!ui.banner.hidden) {
        ui.banner.hidden = true;
        ui.banner.textContent = "";
      }
      ui.list.classList.remove("outdated");
      ui.counts.classList.remove("outdated");
      renderDetailNote();
      return;
    }
    const from = app.generatedAt != null ? hms((app.generatedAt - app.skew) * 1000) : null;
    const text = from
      ? `esbridge unreachable since ${hms(app.downSince)} — states below are from ${from} and may be outdated`
      : `esbridge unreachable since ${hms(app.downSince)} — no states loaded yet`;
    const html = `${esc(text)} <span class="muted">(${esc(app.downReason)}; retrying every ${REFRESH_MS / 1000} s)</span>`;
    if (ui.banner.innerHTML !== html) ui.banner.innerHTML = html;
    ui.banner.className = "banner down";
    ui.banner.hidden = false;
    ui.list.classList.add("outdated");
    ui.counts.classList.add("outdated");
    renderDetailNote();
  }

  function renderAll() {
    renderCounts();
    renderTags();
    renderList();
    renderInfo();
    renderBanner();
  }

  // -- fetching --------------------------------------------------------------------------

  async function getJson(path) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store", signal: ctl.signal });
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try {
          const body = await r.json();
          if (body && body.error) msg += `: ${body.error}`;
        } catch (_) {
          /* not JSON: keep the status */
        }
        const err = new Error(msg);
        err.status = r.status;
        throw err;
      }
      return await r.json();
    } catch (e) {
      if (e.name === "AbortError") throw new Error(`no answer within ${FETCH_TIMEOUT_MS / 1000} s`);
      throw e;
    } finally {
      clearTimeout(t);
    }
  }

  async function refresh() {
    if (app.inflight) return;
    app.inflight = true;
    clearTimeout(app.timer);
    const name = app.detail;
    try {
      // The open detail is read alongside the list (never rejects: see fetchDetail).
      const detail = name != null ? fetchDetail(name) : null;
      if (app.cycle++ % STATUS_EVERY === 0) {
        getJson("api/v1/status")
          .then((s) => {
            app.status = s;
            renderInfo();
          })
          .catch(() => {});
      }
      const data = await getJson("api/v1/checks");
      app.skew = data.generated_at - Date.now() / 1000;
      app.generatedAt = data.generated_at;
      app.checks = data.checks.slice().sort((a, b) => RANK[a.state] - RANK[b.state] || (a.name < b.name ? -1 : 1));
      app.counts = data.counts || {};
      app.total = data.total ?? data.checks.length;
      const got = detail && (await detail);
      if (got && got.error && got.error.status !== 404) throw got.error; // a failed refresh too
      app.downSince = null;
      app.downReason = "";
      renderAll();
      if (got) applyDetail(name, got);
      document.body.dataset.refreshedAt = String(data.generated_at);
    } catch (e) {
      if (!app.downSince) app.downSince = Date.now();
      app.downReason = e && e.message ? e.message : String(e);
      renderCounts();
      renderBanner();
      if (app.rendered) renderList(); // keeps relative times honest while greyed
      tickDetail();
    } finally {
      app.inflight = false;
      schedule();
    }
  }

  function paused() {
    return document.hidden; // an open detail refreshes too: it must not look current when it is not
  }

  function schedule() {
    clearTimeout(app.timer);
    app.timer = null;
    if (!paused()) app.timer = setTimeout(refresh, REFRESH_MS);
  }

  // -- detail ----------------------------------------------------------------------------

  function kvRow(label, valueHtml) {
    return valueHtml === "" ? "" : `<tr><th scope="row">${esc(label)}</th><td>${valueHtml}</td></tr>`;
  }

  function defValue(v) {
    if (v == null || v === "" || (Array.isArray(v) && !v.length)) return "";
    if (typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length) return "";
    if (Array.isArray(v) && v.every((x) => typeof x !== "object")) return `<code>${esc(v.join(", "))}</code>`;
    if (typeof v === "object") return `<pre>${esc(JSON.stringify(v, null, 2))}</pre>`;
    return `<code>${esc(v)}</code>`;
  }

  function definitionHtml(def) {
    const shown = new Set(["name", "description", "runbook", "tags"]);
    const order = ["kind", "index", "query", "query_dsl", "window", "delay", "interval", "timeout",
      "warning", "critical", "unit", "no_data", "group_by", "max_groups"];
    let rows = "";
    for (const k of order) {
      if (!(k in def)) continue;
      shown.add(k);
      let html = defValue(def[k]);
      if ((k === "warning" || k === "critical") && html) html += ` <span class="muted">${esc(explainRange(def[k]))}</span>`;
      rows += kvRow(k, html);
    }
    for (const [k, v] of Object.entries(def)) {
      if (!shown.has(k)) rows += kvRow(k, defValue(v));
    }
    return `<table class="kv"><tbody>${rows}</tbody></table>`;
  }

  function perfTable(perf) {
    if (!perf || !perf.length) return "";
    const rows = perf
      .map(
        (p) =>
          `<tr><td class="mono">${esc(p.label)}</td><td class="num">${esc(fmtNum(p.value))}</td><td>${esc(p.uom)}</td>` +
          `<td class="mono">${esc(p.warn ?? "")}</td><td class="mono">${esc(p.crit ?? "")}</td>` +
          `<td class="num">${p.min == null ? "" : esc(fmtNum(p.min))}</td><td class="num">${p.max == null ? "" : esc(fmtNum(p.max))}</td></tr>`,
      )
      .join("");
    return (
      `<h3>Performance data</h3><div class="scroll"><table class="perf"><thead><tr><th scope="col">label</th><th scope="col" class="num">value</th>` +
      `<th scope="col">uom</th><th scope="col">warn</th><th scope="col">crit</th><th scope="col" class="num">min</th><th scope="col" class="num">max</th></tr></thead>` +
      `<tbody>${rows}</tbody></table></div>`
    );
  }

  function groupsHtml(d, res) {
    const groups = (res && res.groups) || [];
    const omitted = (res && res.groups_omitted) || 0;
    if (!groups.length && !omitted) return "";
    const rank = { CRITICAL: 0, UNKNOWN: 1, WARNING: 2, OK: 3 };
    const sorted = groups
      .map((g, i) => [g, i])
      .sort((a, b) => (rank[a[0].state] ?? 9) - (rank[b[0].state] ?? 9) || a[1] - b[1])
      .map(([g]) => g);
    const notOk = groups.filter((g) => g.state !== "OK").length;
    const rows = sorted
      .map(
        (g) =>
          `<tr class="st-${esc(g.state)}" data-group="${esc(g.key_text)}"><td>${badge(g.state)}</td><td class="mono">${esc(g.label || g.key_text)}</td>` +
          `<td class="num">${esc(withUnit(g.value, res.unit || d.unit))}</td><td>${esc(g.summary)}</td></tr>`,
      )
      .join("");
    const max = d.definition && d.definition.max_groups;
    const more = omitted
      ? `<p class="omitted">${omitted} more group${omitted > 1 ? "s" : ""} not evaluated` +
        `${max ? ` (max_groups: ${esc(max)})` : ""}</p>`
      : "";
    return (
      `<h3>Groups <span class="muted">(${groups.length} evaluated, ${notOk} not OK)</span></h3>` +
      `<div class="scroll"><table class="groups"><thead><tr><th scope="col">State</th><th scope="col">Group</th>` +
      `<th scope="col" class="num">Value</th><th scope="col">Summary</th></tr></thead><tbody>${rows}</tbody></table></div>${more}`
    );
  }

  /** A relative time in the detail: tickDetail() updates its text in place. */
  function relEl(ts, attrs = "", tag = "time") {
    return `<${tag} class="rel" data-ts="${esc(ts)}"${attrs}>${esc(relTime(ts))}</${tag}>`;
  }

  function deployHtml(e) {
    // A deploy of a matching tag, placed in the history where it happened.
    return (
      `<li class="deploy" data-deploy="${esc(e.id)}"><time datetime="${esc(e.at_iso)}">${esc(absTime(e.at))}</time> ` +
      `<span class="muted">(${relEl(e.at, "", "span")})</span> ` +
      `<span class="deploy-mark">deploy</span> ${esc(e.service)} ${esc(e.version)}${e.by ? ` by ${esc(e.by)}` : ""}</li>`
    );
  }

  function historyHtml(d) {
    const ts = d.transitions || [];
    if (!ts.length) return `<h3>State history</h3><p class="muted">No state change recorded yet.</p>`;
    // Newest first; a deploy goes right below (before) the transitions that came after it.
    const rows = ts.map((t) => ({ at: t.at, t })).concat((d.deploys || []).map((e) => ({ at: e.at, e })));
    rows.sort((a, b) => b.at - a.at || (a.e ? 1 : -1));
    const items = rows
      .map(({ t, e }) =>
        e
          ? deployHtml(e)
          : `<li><time datetime="${esc(t.at_iso)}">${esc(absTime(t.at))}</time> ` +
            `<span class="muted">(${relEl(t.at, "", "span")})</span> ` +
            `${t.from ? badge(t.from) : `<span class="muted">start</span>`} → ${badge(t.to)} ${esc(t.summary)}` +
            (t.after_deploy ? ` <span class="after-deploy">${esc(t.after_deploy.text)}</span>` : "") +
            `</li>`,
      )
      .join("");
    return `<h3>State history <span class="muted">(newest first)</span></h3><ol class="history" reversed>${items}</ol>`;
  }

  function copyBlock(label, id, text) {
    return (
      `<div class="copyrow"><h3>${esc(label)}</h3><button type="button" class="copy" data-copy="${id}">Copy</button></div>` +
      `<pre id="${id}" tabindex="0">${esc(text)}</pre>`
    );
  }

  function runbookHtml(rb) {
    if (!rb) return "";
    const isUrl = /^https?:\/\//i.test(rb);
    const body = isUrl ? `<a href="${esc(rb)}" target="_blank" rel="noopener noreferrer">${esc(rb)}</a>` : esc(rb);
    return `<p class="runbook"><strong>Runbook:</strong> ${body}</p>`;
  }

  /** The detail as keyed parts, each updated on its own when its content changes. */
  function detailParts(d) {
    const res = d.result;
    const def = d.definition || {};
    const stale = d.stale ? ` <span class="stale">STALE</span>` : "";
    const when = (ts) => `${relEl(ts, ` title="${esc(absTime(ts))}"`)} (${esc(absTime(ts))})`;
    const facts = [
      d.stale_since_ts != null ? `stale since ${when(d.stale_since_ts)}` : "",
      `${d.stale_since_ts != null ? "last change" : "since"} ${d.since_ts ? when(d.since_ts) : "—"}`,
      d.previous_state ? `before: ${esc(d.previous_state)}` : "",
      `last evaluated ${d.evaluated_at_ts ? relEl(d.evaluated_at_ts, ` title="${esc(absTime(d.evaluated_at_ts))}"`) : "never"}${stale}`,
      d.owner ? `evaluated by replica ${esc(d.owner)}` : "",
      d.next_run_ts ? `next run ${relEl(d.next_run_ts, "", "span")}` : "",
      res && res.duration != null ? `took ${esc(fmtNum(res.duration * 1000))} ms` : "",
    ].filter(Boolean);
    const err = (res && res.error) || d.error;
    return [
      ["state", `<p class="lead">${badge(d.state)} ${esc(d.summary)}</p>` + `<p class="muted facts">${facts.join(" · ")}</p>`],
      [
        "about",
        (d.description ? `<p class="description">${esc(d.description)}</p>` : "") +
          runbookHtml(def.runbook) +
          (d.tags && d.tags.length ? `<p>Tags: ${d.tags.map((t) => `<code>${esc(t)}</code>`).join(" ")}</p>` : ""),
      ],
      [
        "error",
        err
          ? `<h3>Last error${res && res.error_kind ? ` <span class="muted">(${esc(res.error_kind)})</span>` : ""}</h3><blockquote class="error">${esc(err)}</blockquote>`
          : "",
      ],
      ["preview", `<section id="preview" class="preview" aria-live="polite"></section>`], // built once
      ["groups", groupsHtml(d, res)],
      ["history", historyHtml(d)],
      ["perf", perfTable(res ? [...(res.perfdata || []), ...(res.groups || []).flatMap((g) => g.perfdata || [])] : [])],
      ["definition", `<h3>Definition</h3>` + definitionHtml(def)],
      [
        "commands",
        copyBlock("Nagios command line", "plugin-command", d.plugin_command || "") +
          copyBlock(`Nagios output (exit code ${d.nagios ? d.nagios.exit_code : "?"})`, "nagios-output", (d.nagios && d.nagios.text) || ""),
      ],
    ];
  }

  // A part's content without its relative times, which tick on their own.
  const partSig = (html) => html.replace(/(<(?:time|span) class="rel" data-ts="[^"]*"[^>]*>)[^<]*/g, "$1");

  function tickDetail() {
    if (app.detailShown == null) return;
    for (const el of ui.detailBody.querySelectorAll(".rel[data-ts]")) {
      const text = relTime(Number(el.dataset.ts));
      if (el.textContent !== text) el.textContent = text;
    }
  }

  /** Show a detail answer: the first time in one go, later only the parts that changed. */
  function showDetail(d) {
    const title = `${esc(d.name)} <span class="muted">(${esc(d.kind)})</span>`;
    if (ui.detailTitle.innerHTML !== title) ui.detailTitle.innerHTML = title;
    const parts = detailParts(d);
    const body = ui.detailBody;
    const els = app.detailShown === d.name ? Array.from(body.children) : [];
    if (els.length !== parts.length || els.some((el, i) => el.dataset.part !== parts[i][0])) {
      body.innerHTML = parts.map(([key, html]) => `<div data-part="${key}">${html}</div>`).join("");
      parts.forEach(([, html], i) => (body.children[i]._sig = partSig(html)));
      app.detailShown = d.name;
      if (window.esbridgePreview) window.esbridgePreview.load($("preview"), d); // web/preview.js
      return;
    }
    const scroll = ui.dialog.scrollTop;
    const active = document.activeElement;
    parts.forEach(([key, html], i) => {
      const el = els[i];
      const sig = partSig(html);
      if (key === "preview" || el._sig === sig) return; // the chart is loaded once per opening
      const open = Array.from(el.querySelectorAll("details"), (x) => x.open);
      el.innerHTML = html;
      el._sig = sig;
      const now = el.querySelectorAll("details");
      if (now.length === open.length) now.forEach((x, j) => (x.open = open[j]));
    });
    tickDetail();
    if (active && active.id && !document.contains(active)) $(active.id)?.focus({ preventScroll: true });
    if (ui.dialog.scrollTop !== scroll) ui.dialog.scrollTop = scroll;
  }

  /** Read a check's detail; resolves to {seq, d} or {seq, error}, never rejects. */
  function fetchDetail(name) {
    const seq = ++app.detailSeq;
    return getJson(`api/v1/checks/${encodeURIComponent(name)}`).then(
      (d) => ({ seq, d }),
      (error) => ({ seq, error }),
    );
  }

  function applyDetail(name, got) {
    if (app.detail !== name || got.seq < app.detailApplied) return; // closed, or an older answer
    app.detailApplied = got.seq;
    if (got.d) {
      showDetail(got.d);
      app.detailAt = Date.now();
    } else if (got.error.status === 404 || app.detailShown == null) {
      // Gone (or never loaded): say so. A failed re-read keeps the parts, greyed by the note.
      const e = got.error;
      const why = e.status === 404 ? `No check named ${name}.` : `Could not load ${name}: ${e.message || e}`;
      const html = `<p class="banner down" role="status">${esc(why)}</p>`;
      app.detailShown = null;
      if (ui.detailBody.innerHTML !== html) ui.detailBody.innerHTML = html;
    }
    renderDetailNote();
  }

  /** While esbridge does not answer, the open detail is greyed and says as of when it is. */
  function renderDetailNote() {
    const down = app.detail != null && app.downSince != null;
    ui.detailBody.classList.toggle("outdated", down);
    if (!down) {
      if (!ui.detailNote.hidden) {
        ui.detailNote.hidden = true;
        ui.detailNote.textContent = "";
      }
      return;
    }
    const text =
      app.detailAt != null && app.detailShown != null
        ? `as of ${hms(app.detailAt)}, esbridge unreachable — this detail may be outdated`
        : `esbridge unreachable since ${hms(app.downSince)}`;
    const html = `${esc(text)} <span class="muted">(${esc(app.downReason)}; retrying every ${REFRESH_MS / 1000} s)</span>`;
    if (ui.detailNote.innerHTML !== html) ui.detailNote.innerHTML = html;
    ui.detailNote.hidden = false;
  }

  async function openDetail(name, opener) {
    app.detail = name;
    app.opener = opener || null;
    app.detailShown = null;
    app.detailAt = null;
    writeUrl();
    ui.detailTitle.textContent = name;
    ui.detailBody.innerHTML = `<p class="muted">Loading ${esc(name)}…</p>`;
    renderDetailNote();
    if (!ui.dialog.open) ui.dialog.showModal();
    applyDetail(name, await fetchDetail(name)); // later refreshes keep it current
  }

  function closeDetail() {
    if (ui.dialog.open) ui.dialog.close(); // the "close" event does the rest
  }

  function onDialogClosed() {
    app.detail = null;
    app.detailShown = null;
    renderDetailNote();
    writeUrl();
    const name = app.opener && app.opener.closest ? app.opener.closest("tr")?.dataset.name : null;
    const target = (name && app.rowMap.get(name)?.tr.querySelector("a")) || app.opener;
    if (target && document.contains(target)) target.focus({ preventScroll: true });
    app.opener = null;
    if (!document.hidden) refresh();
  }

  async function copyText(id, button) {
    const el = document.getElementById(id);
    if (!el) return;
    const text = el.textContent;
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents(el);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try {
        ok = document.execCommand("copy");
      } catch (__) {
        ok = false;
      }
    }
    button.textContent = ok ? "Copied" : "Selected: press Ctrl+C";
    setTimeout(() => (button.textContent = "Copy"), 2000);
  }

  // -- events ----------------------------------------------------------------------------

  function filterChanged() {
    writeUrl();
    renderCounts();
    renderTags();
    if (app.generatedAt != null) renderList();
  }

  function wire() {
    ui.q.addEventListener("input", () => {
      app.filter.q = ui.q.value;
      filterChanged();
    });
    ui.tag.addEventListener("change", () => {
      app.filter.tag = ui.tag.value;
      filterChanged();
    });
    ui.clear.addEventListener("click", () => {
      app.filter = { q: "", tag: "", states: new Set() };
      ui.q.value = "";
      filterChanged();
      ui.q.focus();
    });
    ui.counts.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-state]");
      if (!b) return;
      const s = b.dataset.state;
      const only = app.filter.states.size === 1 && app.filter.states.has(s);
      // click: show only this state; shift/ctrl-click: add or remove it; click again: all.
      if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
        if (app.filter.states.has(s)) app.filter.states.delete(s);
        else app.filter.states.add(s);
      } else {
        app.filter.states = only ? new Set() : new Set([s]);
      }
      filterChanged();
    });
    ui.rows.addEventListener("click", (ev) => {
      const tag = ev.target.closest("[data-tag]");
      if (tag) {
        ev.preventDefault();
        app.filter.tag = app.filter.tag === tag.dataset.tag ? "" : tag.dataset.tag;
        filterChanged();
        return;
      }
      const tr = ev.target.closest("tr[data-name]");
      if (!tr) return;
      const link = ev.target.closest("a");
      if (link && (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button === 1)) return; // new tab
      if (!link && getSelection().toString()) return; // the user is selecting text
      ev.preventDefault();
      openDetail(tr.dataset.name, tr.querySelector("a"));
    });
    ui.detailClose.addEventListener("click", closeDetail);
    ui.dialog.addEventListener("close", onDialogClosed);
    ui.dialog.addEventListener("click", (ev) => {
      if (ev.target === ui.dialog) closeDetail(); // click on the backdrop
      const b = ev.target.closest("button[data-copy]");
      if (b) copyText(b.dataset.copy, b);
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "/" && !ui.dialog.open && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
        ev.preventDefault();
        ui.q.focus();
      } else if (ev.key === "Escape" && ui.dialog.open) {
        ev.preventDefault();
        closeDetail();
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        clearTimeout(app.timer);
        app.timer = null;
      } else {
        refresh();
      }
    });
  }

  function start() {
    const check = readUrl();
    ui.q.value = app.filter.q;
    wire();
    renderCounts();
    renderTags();
    refresh().then(() => {
      if (check) openDetail(check, null);
    });
  }

  start();
})();
