// The amem console: a single page over the REST API (docs/console.md).
// Every value from the API is put into the page as text (textContent), never as HTML.
// The API key lives in sessionStorage (this tab, until sign-out or the tab closes) and is sent
// as a Bearer header; it never goes into a URL.
"use strict";

(() => {
  const KEY = "amem.console.key";
  // The API is mounted beside the console (…/console/ -> …/v1/), whatever prefix an ingress adds.
  const API = new URL("../", document.baseURI);
  const view = document.getElementById("view");

  // --- small DOM helpers --------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const memoryLink = (id, label) => el("a", { class: "chip", href: `#/memory/${encodeURIComponent(id)}`, text: label || id });
  const badge = (status) => el("span", { class: `badge ${status}`, text: status });
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  // Each navigation gets a number; a view that finishes loading after the user moved on is
  // not shown (its buttons would act on another memory than the address names).
  let navigation = 0;
  let current = 0;
  const show = (...nodes) => {
    if (current !== navigation) throw new Superseded();
    view.replaceChildren(...nodes);
  };
  class Superseded extends Error {}

  function fail(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  // --- the API --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(path, { method = "GET", body, query } = {}) {
    const url = new URL(path, API);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
    if (!response.ok) {
      if (response.status === 401) signOut();
      throw new ApiError(response.status, data?.error || "error", data?.message || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  // Runs a view, showing its failure in words.
  async function guarded(work) {
    fail("");
    try { await work(); } catch (err) {
      if (err instanceof Superseded) return;
      fail(err instanceof ApiError ? `${err.message} (${err.status} ${err.code})` : String(err));
    }
  }

  // --- sign in / out --------------------------------------------------------------------------
  function signOut() {
    sessionStorage.removeItem(KEY);
    route();
  }

  async function signedIn() {
    const usage = await api("v1/usage");
    document.getElementById("who").textContent = `tenant ${usage.tenant}`;
    return usage;
  }

  document.getElementById("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = "";
    guarded(async () => {
      await signedIn();
      if (location.hash === "#/search") route(); else location.hash = "#/search"; // hashchange routes
    });
  });
  document.getElementById("sign-out").addEventListener("click", signOut);

  // --- filters shared by search and browse ---------------------------------------------------
  function filterFields(values) {
    const field = (name, label, type = "text") =>
      el("label", {}, label, el("input", { name, type, value: values[name] || "" }));
    return [
      field("user_id", "user"), field("agent_id", "agent"), field("tag", "tag"),
      field("category", "category"), field("since", "since", "datetime-local"), field("until", "until", "datetime-local"),
    ];
  }
  const iso = (local) => (local ? new Date(local).toISOString() : undefined);

  // --- search ---------------------------------------------------------------------------------
  function searchView() {
    const results = el("div", { id: "results" });
    const form = el("form", { class: "bar", id: "search-form" },
      el("label", {}, "query", el("input", { name: "query", required: true, size: 40 })),
      el("label", {}, "mode", el("select", { name: "mode" }, ["hybrid", "dense", "lexical"].map((m) => el("option", { value: m, text: m })))),
      el("label", {}, "k", el("input", { name: "k", type: "number", min: 1, max: 100, value: 10 })),
      ...filterFields({}),
      el("label", {}, "links", el("input", { name: "include_links", type: "checkbox" })),
      el("button", { type: "submit", text: "Search" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const f = new FormData(form);
      const filters = {};
      for (const name of ["user_id", "agent_id", "tag", "category"]) if (f.get(name)) filters[name] = f.get(name);
      if (f.get("since")) filters.since = iso(f.get("since"));
      if (f.get("until")) filters.until = iso(f.get("until"));
      guarded(async () => {
        const found = await api("v1/memories/search", {
          method: "POST",
          body: { query: f.get("query"), mode: f.get("mode"), k: Number(f.get("k")), filters, include_links: f.get("include_links") === "on" },
        });
        results.replaceChildren(
          el("p", { class: "muted", text: `${found.results.length} results (${found.mode})` }),
          el("table", {}, el("tr", {}, ["#", "memory", "score", "similarity", "status"].map((h) => el("th", { text: h }))),
            found.results.map((hit, i) => el("tr", { class: "hit" },
              el("td", { text: hit.linked_from ? "linked" : i + 1 }),
              el("td", {}, el("div", { class: "content", text: hit.memory.content }), memoryLink(hit.memory.id, "open")),
              el("td", { text: hit.score === null ? "" : hit.score.toFixed(4) }),
              el("td", { text: hit.similarity === null || hit.similarity === undefined ? "" : hit.similarity.toFixed(3) }),
              el("td", {}, badge(hit.memory.status))))));
      });
    });
    show(el("h1", { text: "Search" }), form, results);
  }

  // --- browse ---------------------------------------------------------------------------------
  function browseView() {
    const rows = el("tbody");
    const more = el("button", { type: "button", text: "More", hidden: true });
    let cursor = null;
    let query = {};
    const form = el("form", { class: "bar" }, ...filterFields({}),
      el("label", {}, "status", el("select", { name: "status" }, ["", "pending", "done", "failed"].map((s) => el("option", { value: s, text: s || "any" })))),
      el("button", { type: "submit", text: "List" }));
    async function page() {
      const got = await api("v1/memories", { query: { ...query, limit: 50, cursor } });
      for (const memory of got.memories) rows.append(memoryRow(memory));
      cursor = got.next_cursor;
      more.hidden = !cursor;
    }
    function memoryRow(memory) {
      const status = el("td", {}, badge(memory.status));
      if (memory.status === "failed") {
        status.append(el("div", { class: "muted", text: memory.status_reason || "" }),
          el("button", { type: "button", text: "Retry", on: { click: () => guarded(async () => {
            const again = await api(`v1/memories/${encodeURIComponent(memory.id)}:evolve`, { method: "POST" });
            status.replaceChildren(badge(again.status));
          }) } }));
      }
      return el("tr", {}, el("td", {}, memoryLink(memory.id, "open")), el("td", { class: "content", text: memory.content }),
        el("td", {}, memory.tags.map((t) => el("span", { class: "chip", text: t }))), status, el("td", { text: when(memory.timestamp) }));
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const f = new FormData(form);
      query = { user_id: f.get("user_id"), agent_id: f.get("agent_id"), tag: f.get("tag"), category: f.get("category"),
        status: f.get("status"), since: iso(f.get("since")), until: iso(f.get("until")) };
      cursor = null;
      rows.replaceChildren();
      guarded(page);
    });
    more.addEventListener("click", () => guarded(page));
    show(el("h1", { text: "Browse" }), form,
      el("table", {}, el("thead", {}, el("tr", {}, ["", "content", "tags", "status", "time"].map((h) => el("th", { text: h })))), rows), more);
    guarded(page);
  }

  // --- one memory -----------------------------------------------------------------------------
  async function memoryView(id) {
    const path = `v1/memories/${encodeURIComponent(id)}`;
    const [memory, links] = await Promise.all([api(path), api(`${path}/links`, { query: { depth: 1 } })]);
    const field = (name, value) => [el("dt", { text: name }), el("dd", {}, value)];
    const chips = (ids) => (ids.length ? ids.map((i) => memoryLink(i)) : el("span", { class: "muted", text: "none" }));
    const receipt = el("div", { id: "receipt" });
    const remove = el("button", { type: "button", class: "danger", text: "Delete", on: { click: () => guarded(async () => {
      if (!window.confirm("Delete this memory? What its evolution wrote into other memories is undone too.")) return;
      const done = await api(path, { method: "DELETE" });
      receipt.replaceChildren(receiptView(done));
    }) } });
    show(
      el("h1", {}, "Memory ", badge(memory.status)),
      el("div", { class: "actions" },
        el("a", { href: `#/graph/${encodeURIComponent(id)}`, text: "Graph" }),
        el("a", { href: `#/history/${encodeURIComponent(id)}`, text: `History (${memory.evolution_history.length})` }), remove),
      receipt,
      el("dl", { class: "fields" },
        field("id", memory.id), field("content", el("div", { class: "content", id: "memory-content", text: memory.content })),
        field("keywords", memory.keywords.map((k) => el("span", { class: "chip", text: k }))),
        field("tags", memory.tags.map((t) => el("span", { class: "chip", text: t }))),
        field("context", memory.context), field("category", memory.category),
        field("links", chips(memory.links)), field("linked from", chips(links.backlinks || [])),
        field("follows", memory.follows ? memoryLink(memory.follows) : el("span", { class: "muted", text: "none" })),
        field("user", memory.user_id || ""), field("agent", memory.agent_id || ""),
        field("metadata", el("code", { text: JSON.stringify(memory.metadata) })),
        field("status", [badge(memory.status), " ", memory.status_reason || ""]),
        field("timestamp", when(memory.timestamp)), field("created", when(memory.created_at)),
        field("updated", when(memory.updated_at)), field("version", memory.version),
        field("retrievals", `${memory.retrieval_count} (last ${when(memory.last_accessed)})`)));
  }

  function receiptView(receipt) {
    const list = (ids) => (ids.length ? ids.map((i) => el("span", { class: "chip", text: i })) : "none");
    return el("div", { class: "receipt" }, el("h2", { text: "Erased" }),
      el("dl", { class: "fields" },
        el("dt", { text: "deleted" }), el("dd", {}, list(receipt.erased)),
        el("dt", { text: "unlinked" }), el("dd", {}, list(receipt.unlinked)),
        el("dt", { text: "unfollowed" }), el("dd", {}, list(receipt.unfollowed || [])),
        el("dt", { text: "restored" }), el("dd", {}, receipt.scrubbed.length
          ? receipt.scrubbed.map((s) => el("div", { text: `${s.memory_id}: ${s.fields.join(", ") || "index only"}` })) : "none")));
  }

  // --- graph ----------------------------------------------------------------------------------
  const PALETTE = ["#2f5fd0", "#2f855a", "#b7791f", "#805ad5", "#c05621", "#2c7a7b", "#b83280", "#4a5568"];
  const STATUS_COLOURS = { pending: "#b7791f", done: "#2f855a", failed: "#c53030" };

  async function graphView(id, depth = 1, colourBy = "status") {
    const links = await api(`v1/memories/${encodeURIComponent(id)}/links`, { query: { depth } });
    const tagColour = new Map();
    const colour = (memory) => {
      if (colourBy === "status") return STATUS_COLOURS[memory.status] || "#4a5568";
      const tag = memory.tags[0] || "";
      if (!tagColour.has(tag)) tagColour.set(tag, tag ? PALETTE[tagColour.size % PALETTE.length] : "#a0aec0");
      return tagColour.get(tag);
    };
    const controls = el("form", { class: "bar" },
      el("label", {}, "depth", el("select", { name: "depth" }, [1, 2, 3].map((d) => el("option", { value: d, text: d, selected: d === depth })))),
      el("label", {}, "colour by", el("select", { name: "colour" }, ["status", "tag"].map((c) => el("option", { value: c, text: c, selected: c === colourBy })))));
    controls.addEventListener("change", () => {
      const f = new FormData(controls);
      guarded(() => graphView(id, Number(f.get("depth")), f.get("colour")));
    });
    if (window.amemGraph) window.amemGraph.destroy(); // its listeners go with it
    window.amemGraph = null;
    const box = el("div", { id: "graph" });
    show(el("h1", {}, "Graph of ", memoryLink(id)), controls,
      el("p", { class: "muted", text: `${links.memories.length} memories, ${links.edges.length} links${links.truncated ? " (cut at the server's cap)" : ""}. Click a memory to move there.` }),
      box);
    const label = (text) => (text.length > 40 ? `${text.slice(0, 39)}…` : text);
    const cy = window.cytoscape({
      container: box,
      elements: [
        ...links.memories.map(({ memory, depth: d }) => ({
          data: { id: memory.id, label: label(memory.content), colour: colour(memory), root: d === 0 ? 1 : 0 },
        })),
        ...links.edges.map(([from, to]) => ({ data: { id: `${from}->${to}`, source: from, target: to } })),
      ],
      style: [
        { selector: "node", style: { "background-color": "data(colour)", label: "data(label)", "font-size": 10, "text-wrap": "ellipsis", "text-max-width": 140 } },
        { selector: "node[root = 1]", style: { "border-width": 4, "border-color": "#1d2330", width: 40, height: 40 } },
        { selector: "edge", style: { width: 1.5, "line-color": "#a0aec0", "target-arrow-color": "#a0aec0", "target-arrow-shape": "triangle", "curve-style": "bezier" } },
      ],
      layout: { name: "concentric", concentric: (node) => (node.data("root") ? 2 : 1), levelWidth: () => 1, animate: false },
      minZoom: 0.2,
      maxZoom: 2, // a lone memory is not blown up to fill the box
      wheelSensitivity: 0.3,
    });
    cy.on("tap", "node", (event) => { location.hash = `#/graph/${encodeURIComponent(event.target.id())}`; });
    window.amemGraph = cy; // for the browser tests and the curious
  }

  // --- history --------------------------------------------------------------------------------
  async function historyView(id) {
    const path = `v1/memories/${encodeURIComponent(id)}`;
    const history = await api(`${path}/history`);
    const value = (v) => (v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
    const entry = (e) => {
      const fields = [...new Set([...Object.keys(e.before || {}), ...Object.keys(e.after || {})])];
      const outcome = el("span", { class: "outcome" });
      const revertable = !e.erased && ["evolve", "update_neighbor"].includes(e.kind)
        && !history.entries.some((other) => other.reverts === e.id);
      return el("li", { class: `entry ${e.kind}`, "data-entry": e.id },
        el("div", {}, el("strong", { text: e.kind }), " ", el("span", { class: "muted", text: when(e.at) }),
          e.trigger ? [" by ", memoryLink(e.trigger)] : "",
          e.model ? el("span", { class: "muted", text: ` · ${e.model} · prompt ${e.prompt_version}` }) : "",
          e.erased ? el("span", { class: "muted", text: " · values erased" }) : ""),
        fields.length ? el("div", { class: "diff" },
          el("span", { class: "muted", text: "field" }), el("span", { class: "muted", text: "before" }), el("span", { class: "muted", text: "after" }),
          fields.map((f) => [el("span", { text: f }), el("span", { class: "before", text: value(e.before?.[f]) }), el("span", { class: "after", text: value(e.after?.[f]) })])) : "",
        revertable ? el("div", { class: "actions" }, el("button", { type: "button", text: "Revert", on: { click: () => guarded(async () => {
          try {
            await api(`${path}/history/${encodeURIComponent(e.id)}:revert`, { method: "POST" });
            await historyView(id);
          } catch (err) {
            if (!(err instanceof ApiError) || err.status !== 409) throw err;
            outcome.textContent = `Not reverted: ${err.message}`;
          }
        }) } }), outcome) : "");
    };
    show(el("h1", {}, "History of ", memoryLink(id)),
      history.entries.length ? el("ol", { class: "timeline" }, history.entries.slice().reverse().map(entry))
        : el("p", { class: "muted", text: "Evolution has not changed this memory." }));
  }

  // --- usage ----------------------------------------------------------------------------------
  async function usageView() {
    const usage = await signedIn();
    const of = (used, quota) => (quota === null ? `${used} (no limit)` : `${used} of ${quota}`);
    show(el("h1", { text: "Usage" }), el("dl", { class: "fields panel" },
      el("dt", { text: "tenant" }), el("dd", { text: usage.tenant }),
      el("dt", { text: "memories" }), el("dd", { text: of(usage.notes, usage.notes_quota) }),
      el("dt", { text: `LLM tokens on ${usage.day} (UTC)` }), el("dd", { text: of(usage.llm_tokens, usage.llm_tokens_per_day) })));
  }

  // --- routing --------------------------------------------------------------------------------
  const ROUTES = [
    [/^#\/search$/, () => searchView()],
    [/^#\/browse$/, () => browseView()],
    [/^#\/usage$/, () => usageView()],
    [/^#\/memory\/(.+)$/, (id) => memoryView(id)],
    [/^#\/graph\/(.+)$/, (id) => graphView(id)],
    [/^#\/history\/(.+)$/, (id) => historyView(id)],
  ];

  function route() {
    current = ++navigation;
    const key = sessionStorage.getItem(KEY);
    document.getElementById("sign-in").hidden = Boolean(key);
    document.getElementById("nav").hidden = !key;
    document.getElementById("sign-out").hidden = !key;
    if (!key) {
      document.getElementById("who").textContent = "";
      view.replaceChildren();
      return;
    }
    const hash = location.hash || "#/search";
    for (const [pattern, render] of ROUTES) {
      const match = hash.match(pattern);
      if (!match) continue;
      let ids;
      try { ids = match.slice(1).map(decodeURIComponent); } catch { break; } // a malformed address
      if (ids.some((id) => id === "." || id === "..")) break; // never a memory: not a path either
      guarded(async () => {
        if (!document.getElementById("who").textContent) await signedIn();
        await render(...ids);
      });
      return;
    }
    location.hash = "#/search";
  }

  window.addEventListener("hashchange", route);
  route();
})();
