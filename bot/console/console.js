// The opsbot web console: chat (the `web` channel), the approvals inbox and the thread view, all live.
// Plain browser JavaScript, no dependencies. Everything from the server is shown with textContent,
// never parsed as HTML. Live updates come as Server-Sent Events read with fetch (EventSource cannot
// send the Authorization header, and the token must never go into a URL).
"use strict";

(() => {
  const TOKEN_KEY = "opsbot.token";
  const CONVERSATION_KEY = "opsbot.conversation";
  const PAGE = 50;  // threads and approvals per page
  const STALE_MS = 45_000;  // no byte, not even a ping (every 15 s), for this long: the stream is dead
  const SUGGESTIONS = 6;
  const $ = (selector) => document.querySelector(selector);
  const state = {
    token: null, identity: null, conversation: null, ready: null, live: null, threadLive: null,
    cards: new Map(), thread: null, at: null, selected: null, signinHint: "",
    pending: new Set(), pendingMore: false, inbox: new Map(),
  };

  // --- small helpers --------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat(Infinity)) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // People and times (core.domain.people): a name for an identity, and times in the browser's zone.
  function display(identity) {
    if (!identity) return "-";
    const cut = identity.indexOf(":");
    if (cut < 0) return identity;
    const kind = identity.slice(0, cut), rest = identity.slice(cut + 1);
    if (kind === "slack") return rest.slice(rest.lastIndexOf(":") + 1);
    if (kind === "group") return `the ${rest} group`;
    return rest;
  }
  const person = (identity) => el("span", { class: "person", title: identity, text: display(identity) });
  const byWhom = (identity) => (identity === state.identity ? "you" : display(identity));

  function localTime(iso, style = "short") {
    if (!iso) return "-";
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return String(iso);
    if (style === "seconds") return at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    const today = at.toDateString() === new Date().toDateString();
    return today ? at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }
  const fullTime = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "full", timeStyle: "long" }) : "-");

  // Markers in text from the core: <who:identity> and <when:2026-12-02T15:49:11Z>.
  const renderText = (text) => String(text ?? "")
    .replace(/<who:([^<>\s]+)>/g, (_, identity) => display(identity))
    .replace(/<when:(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)>/g, (_, iso) => localTime(iso));

  function duration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
    if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
    const seconds = ms / 1000;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    const hours = Math.floor(minutes / 60);
    return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
  }
  const between = (from, to) => new Date(to).getTime() - new Date(from).getTime();

  // JSON with sorted keys at every level, like the bot's own logs (the details panel only).
  const sorted = (value) => (value && typeof value === "object" && !Array.isArray(value)
    ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted(value[key])]))
    : Array.isArray(value) ? value.map(sorted) : value);
  const argValue = (value) => (typeof value === "string" ? value : JSON.stringify(value));

  function toast(message, level = "error") {
    const box = $("#toast");
    box.textContent = message;
    box.className = `toast ${level}`;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // A list read a page at a time. `fetchPage(cursor)` resolves to { items, next }; `add(items, fresh,
  // more)` shows the items not shown before (replacing the list when `fresh`). A page may come short,
  // even empty (it holds only what the identity may see), so reading goes on until something shows or
  // the list ends. `more` is the "Load more" button, hidden on the last page. Returns `load(fresh)`;
  // a fresh load makes any load still under way drop its answer.
  function pager(more, keyOf, fetchPage, add) {
    let seen = new Set(), cursor = null, run = 0;
    async function load(fresh) {
      const mine = fresh ? ++run : run;
      if (fresh) { seen = new Set(); cursor = null; }
      more.disabled = true;
      try {
        let shown = [];
        do {
          const page = await fetchPage(cursor);
          if (mine !== run) return;
          cursor = page.next;
          const unseen = page.items.filter((item) => !seen.has(keyOf(item)));
          unseen.forEach((item) => seen.add(keyOf(item)));
          shown = shown.concat(unseen);
        } while (!shown.length && cursor);
        add(shown, fresh, cursor !== null);
      } catch (error) {
        toast(error.message);
      } finally {
        if (mine === run) { more.disabled = false; more.hidden = !cursor; }
      }
    }
    more.addEventListener("click", () => load(false));
    return load;
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || {};
      if (response.status === 401 && state.identity) signOut("Your session ended: this token is no longer accepted.");
      throw new ApiError(response.status, error.code || "error", renderText(error.message || `${response.status} ${response.statusText}`));
    }
    return data;
  }

  // --- live: Server-Sent Events over fetch ------------------------------------------------------

  function setLive(up) {
    const dot = $("#live");
    dot.hidden = !state.token;
    dot.classList.toggle("down", !up);
    dot.title = up ? "live updates on" : "reconnecting for live updates…";
  }

  // Follows one event stream until `stop()`: reconnects after a drop (with backoff) sending the last
  // event id it saw, so the server replays what the page missed. `handlers[event](data)` gets each event.
  function follow(path, handlers) {
    const live = { stopped: false, lastId: null, controller: null };
    live.stop = () => { live.stopped = true; live.controller?.abort(); };

    function dispatch(block) {
      let event = "message", id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;  // a comment: the server's ping
        const cut = line.indexOf(":");
        const name = cut < 0 ? line : line.slice(0, cut);
        const value = cut < 0 ? "" : line.slice(cut + 1).replace(/^ /, "");
        if (name === "event") event = value;
        else if (name === "data") data.push(value);
        else if (name === "id") id = value;
      }
      if (id !== null) live.lastId = id;
      if (data.length && handlers[event]) handlers[event](JSON.parse(data.join("\n")));
    }

    (async () => {
      let backoff = 500;
      while (!live.stopped && state.token) {
        const controller = live.controller = new AbortController();
        let timer = null;
        const arm = () => { clearTimeout(timer); timer = setTimeout(() => controller.abort(), STALE_MS); };
        try {
          const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
          if (live.lastId !== null) headers["Last-Event-ID"] = live.lastId;
          arm();
          const response = await fetch(typeof path === "function" ? path() : path, { headers, signal: controller.signal, cache: "no-store" });
          if (!response.ok) {
            const data = await response.json().catch(() => null);
            const error = (data && data.error) || {};
            if (response.status === 401) { signOut("Your session ended: this token is no longer accepted."); return; }
            if ([403, 404, 422].includes(response.status)) { toast(renderText(error.message || response.statusText)); return; }
            throw new Error(error.message || response.statusText);
          }
          setLive(true);
          backoff = 500;
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            arm();
            buffer = (buffer + value).replace(/\r\n/g, "\n");
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              dispatch(block);
            }
          }
        } catch (error) {
          if (live.stopped) return;
          if (!(error instanceof DOMException)) console.warn("live updates:", error.message);
        } finally {
          clearTimeout(timer);
        }
        if (live.stopped) return;
        setLive(false);
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 15_000);
      }
    })();
    return live;
  }

  // The page's main stream: this conversation's messages and every approval this identity may see.
  function followConsole() {
    const lastId = state.live ? state.live.lastId : null;
    state.live?.stop();
    let ready;
    state.ready = Promise.race([new Promise((resolve) => { ready = resolve; }), sleep(5000)]);
    const conversation = state.conversation;
    state.live = follow(() => `/web/live?${new URLSearchParams({ conversation })}`, {
      ready: (data) => {
        ready();
        if (!data.resumed) refreshApprovals();  // a fresh start: what is pending now; afterwards, the events
      },
      outbound: renderOutbound,
      approval: onApproval,
    });
    state.live.lastId = lastId;
  }

  // --- sign in -----------------------------------------------------------------------------------

  function takeTokenFromUrl() {
    const match = location.hash.match(/^#token=([^&]+)/);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", `${location.pathname}#chat`);  // keep the token out of history
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function loadSigninHint() {
    try {
      const response = await fetch("/console/signin.json", { cache: "no-store" });
      state.signinHint = (await response.json()).hint || "";
    } catch { state.signinHint = ""; }
    if (state.signinHint) $("#signin-hint").textContent = state.signinHint;
  }

  async function signIn(token) {
    state.token = token;
    try {
      state.identity = (await api("GET", "/v1/me")).identity;
    } catch (error) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      $("#signin-error").textContent = error.status === 401 ? "That token was not accepted." : error.message;
      return false;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#signin-error").textContent = "";
    const who = $("#whoami");
    who.textContent = display(state.identity);
    who.title = `signed in as ${state.identity}`;
    $("#sign-out").hidden = false;
    setLive(false);
    startChat(sessionStorage.getItem(CONVERSATION_KEY));
    loadSuggestions();
    return true;
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.live?.stop();
    state.threadLive?.stop();
    state.live = state.threadLive = null;
    state.token = state.identity = null;
    $("#whoami").textContent = "";
    $("#sign-out").hidden = true;
    $("#live").hidden = true;
    $("#approval-count").hidden = true;
    $("#signin-error").textContent = reason || "";
    show("signin");
  }

  // --- views -------------------------------------------------------------------------------------

  function show(name) {
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === name || (name === "thread" && link.dataset.nav === "threads"));
    }
    if (name !== "thread") { state.threadLive?.stop(); state.threadLive = null; }
  }

  function route() {
    if (!state.token) return show("signin");
    const [name, arg] = location.hash.replace(/^#/, "").split("/");
    if (name === "approvals") { show("approvals"); refreshApprovals(); }
    else if (name === "grants") { show("grants"); refreshGrants(); }
    else if (name === "threads") { show("threads"); refreshThreads(); }
    else if (name === "thread" && arg) { show("thread"); openThread(decodeURIComponent(arg)); }
    else show("chat");
  }

  // --- chat: the `web` channel ---------------------------------------------------------------------

  function startChat(conversation) {
    state.conversation = conversation || crypto.randomUUID();
    sessionStorage.setItem(CONVERSATION_KEY, state.conversation);
    state.cards.clear();
    $("#transcript").replaceChildren();
    $("#chat-empty").hidden = false;
    $("#conversation-id").textContent = state.conversation.slice(0, 8);
    followConsole();
  }

  async function loadSuggestions() {
    let commands = [];
    try { commands = (await api("GET", "/web/commands")).commands; } catch { commands = []; }
    const items = commands.slice(0, SUGGESTIONS).map((command) => {
      const start = command.usage.split(/\s[<[]/)[0];
      return el("li", { class: "suggestion" },
        el("button", { type: "button", class: "quiet", text: command.usage, title: `type ${start}`, onclick: () => compose(`${start} `) }),
        command.approval ? el("span", { class: "tag", text: "may need approval" }) : null,
        el("span", { class: "meta", text: command.description }));
    });
    items.push(el("li", { class: "suggestion" },
      el("button", { type: "button", class: "quiet", text: "help", onclick: () => compose("help") }),
      el("span", { class: "meta", text: "every command you may use, with what it needs" })));
    $("#suggestions").replaceChildren(...items);
  }

  function compose(text) {
    const input = $("#message");
    input.value = text;
    input.focus();
  }

  async function send(text, answers) {
    say(state.identity, "me", el("pre", { class: "text", text }));
    try {
      await state.ready;
      const body = { conversation: state.conversation, text };
      if (answers) body.answers = answers;
      await api("POST", "/web/messages", body);
    } catch (error) {
      say("console", "notice error", el("pre", { class: "text", text: `not sent: ${error.message}` }));
    }
  }

  function say(who, cls, ...body) {
    const name = who === "bot" || who === "console" || who.startsWith("bot ") ? who : byWhom(who);
    const item = el("li", { class: `msg ${cls}` }, el("span", { class: "who", text: name }), ...body);
    $("#transcript").append(item);
    $("#chat-empty").hidden = true;
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function threadLink(threadId) {
    return threadId ? el("a", { class: "thread-link", href: `#thread/${encodeURIComponent(threadId)}`, text: "view thread" }) : null;
  }

  function questionOptions(item) {
    if (!item.options || !item.options.length) return null;
    const box = el("div", { class: "row options", role: "group", "aria-label": "choose an answer" });
    item.options.forEach((option, index) => box.append(el("button", {
      type: "button", class: "quiet option", text: option, title: `answer ${index + 1}: ${option}`,
      onclick: (event) => {
        for (const button of box.querySelectorAll("button")) button.disabled = true;
        event.currentTarget.classList.add("chosen");
        send(option, item.call_id);
      },
    })));
    box.append(el("span", { class: "meta", text: "or type your own answer" }));
    return box;
  }

  // An MCP server's form (a flat JSON schema): a field per property; sent as the `name: value` lines every
  // channel answers with (core.tools.mcp.forms), so the server gets the same answer whichever way it came.
  function questionForm(item) {
    const properties = (item.form && item.form.properties) || {};
    const names = Object.keys(properties);
    if (!names.length) return null;
    const required = new Set(item.form.required || []);
    const form = el("form", { class: "elicit", "aria-label": "answer the form" });
    const inputs = names.map((name) => {
      const spec = properties[name] || {};
      const id = `f-${item.call_id}-${name}`;
      const choices = spec.enum || (spec.oneOf || []).map((option) => option.const);
      let input;
      if (spec.type === "boolean" || choices.length) {
        const values = spec.type === "boolean" ? ["yes", "no"] : choices.map(String);
        const fallback = spec.type === "boolean" && "default" in spec ? (spec.default ? "yes" : "no") : spec.default;
        input = el("select", { id, name }, required.has(name) ? null : el("option", { value: "", text: "(default)" }),
          values.map((value) => el("option", { value, text: value })));
        if (fallback !== undefined) input.value = String(fallback);
      } else {
        const type = spec.type === "integer" || spec.type === "number" ? "number" : "text";
        input = el("input", { id, name, type, step: spec.type === "number" ? "any" : null, placeholder: spec.default ?? "" });
        if (required.has(name)) input.required = true;
      }
      const label = `${spec.title || name}${required.has(name) ? " *" : ""}`;
      form.append(el("label", { for: id, text: label }), input,
        spec.description ? el("span", { class: "meta", text: spec.description }) : null);
      return input;
    });
    const submit = el("button", { type: "submit", text: "Send answer" });
    form.append(submit);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const lines = inputs.filter((input) => input.value !== "").map((input) => `${input.name}: ${input.value}`);
      for (const input of [...inputs, submit]) input.disabled = true;
      send(lines.join("\n"), item.call_id);
    });
    return form;
  }

  function questionLink(item) {
    if (!item.link) return null;
    let host = "";
    try { host = new URL(item.link).host; } catch { return null; }
    return el("a", { class: "elicit-link", href: item.link, target: "_blank", rel: "noopener noreferrer", text: `Open ${host}` });
  }

  function receiptSentence(item) {
    const tool = item.tool ? ` ${item.tool}` : "";
    const at = localTime(item.at);
    const note = item.comment ? `: ${item.comment}` : "";
    if (item.decision === "expire") return `approval${tool} expired without a decision at ${at}`;
    if (item.decision === "approve") return `${byWhom(item.by)} approved${tool} at ${at}${note}`;
    return `${item.tool || "the request"} was rejected by ${byWhom(item.by)} at ${at}${note}`;
  }

  // A progress note ("running deploy…") stands until the thread's next message replaces it.
  const progress = new Map();

  function renderOutbound(item) {
    const link = threadLink(item.thread_id);
    progress.get(item.thread_id)?.remove();
    progress.delete(item.thread_id);
    switch (item.kind) {
      case "reply":
        if (!item.final) {
          progress.set(item.thread_id, say("bot", "bot progress", el("pre", { class: "text", text: renderText(item.text) })));
          break;
        }
        say("bot", "bot", el("pre", { class: "text", text: renderText(item.text) }), link);
        break;
      case "question":
        say("bot", "bot question", el("pre", { class: "text", text: renderText(item.question) }),
          questionForm(item), questionLink(item), questionOptions(item), link);
        break;
      case "notice":
        say(item.to ? "bot (only you)" : "bot", `notice ${item.level}`, el("pre", { class: "text", text: renderText(item.text) }), link);
        break;
      case "approval_request": {
        const shown = state.cards.get(item.approval_id);
        if (shown) { showQuorum(shown, item.approved_by || [], item.needed, item.open_groups); break; }  // a quorum's progress
        const card = approvalCard(item, (decision, comment, args) => api("POST", "/web/decisions", {
          conversation: state.conversation, approval_id: item.approval_id, decision, comment, digest: item.digest || undefined, args,
        }));
        state.cards.set(item.approval_id, card);
        say("bot", "bot approval", card, link);
        break;
      }
      case "decision_receipt": {
        const card = state.cards.get(item.approval_id);
        if (card) markDecided(card, item.decision, item.by, item.at, item.comment);
        say("bot", "notice info receipt", el("pre", { class: "text", text: receiptSentence(item) }));
        break;
      }
      default:
        say("bot", "notice", el("pre", { class: "text", text: renderText(item.text || item.question || "a message this console cannot show yet") }));
    }
  }

  // --- approval cards (chat and inbox) -----------------------------------------------------------

  function approvalCard(request, decide) {
    const args = Object.entries(request.args || {}).sort(([a], [b]) => a.localeCompare(b));
    const status = el("p", { class: "card-status", "aria-live": "polite" });
    const reason = el("input", { class: "reject-reason", placeholder: "why reject? (required)", "aria-label": "rejection reason" });
    const rejectForm = el("div", { class: "row reject-form", hidden: "" }, reason,
      el("button", { type: "button", class: "danger confirm-reject", text: "Send rejection", onclick: () => submit("reject", reason.value.trim()) }));
    const buttons = el("div", { class: "row buttons" },
      el("button", { type: "button", class: "approve", text: "Approve", onclick: () => submit("approve", "") }),
      el("button", { type: "button", class: "reject danger", text: "Reject", onclick: () => { rejectForm.hidden = false; reason.focus(); } }));
    // "Grant": approve, with a standing grant where the tool's policy allows one; sent as `grant 4h` (empty: its longest).
    const grantFor = el("input", { class: "grant-for", size: "4", placeholder: "4h", "aria-label": "standing grant for how long" });
    buttons.append(el("span", { class: "grant" }, grantFor,
      el("button", { type: "button", class: "quiet approve-grant", text: "Grant", title: "approve, and let the requester's same calls run without a card for this long (empty: the longest the policy allows)",
        onclick: () => submit("approve", `grant ${grantFor.value.trim()}`.trim()) })));
    // "Edit": approve with changed arguments, from a form built from the tool's JSON schema.
    const editForm = el("form", { class: "edit-form", hidden: "", "aria-label": "edit the arguments, then approve" });
    buttons.append(el("button", { type: "button", class: "quiet edit", text: "Edit…", title: "change the arguments, then approve: the edited call gets a new digest (and, under a stricter policy, asks for more approvals)",
      onclick: () => openEdit() }));
    const approvers = request.approvers_described ? renderText(request.approvers_described) : (request.approvers || []).map(display).join(", ");
    const card = el("div", { class: "card approval-card", "data-approval-id": request.approval_id },
      el("h3", { text: `Approval needed: ${request.tool}` }),
      el("table", { class: "args" }, args.map(([name, value]) => el("tr", {}, el("th", { text: name }), el("td", {}, el("code", { text: argValue(value) }))))),
      el("p", { text: `why: ${renderText(request.reason) || "(no reason given)"}` }),
      el("p", { class: "meta terms" }, "requested by ", person(request.requester),
        ` · approvers: ${approvers} · expires ${localTime(request.expires_at)} · id ${request.approval_id}`
        + (request.digest ? ` · digest ${request.digest.slice(0, 12)}` : "")),
      request.wait_until ? el("p", { class: "meta wait", text: `can be approved from ${localTime(request.wait_until)}` }) : null,
      previewOf(request),
      el("p", { class: "quorum", hidden: "" }),
      buttons, rejectForm, editForm, status);
    const approved = request.approved_by || (request.votes || []).map((vote) => vote.by);

    async function openEdit() {
      if (!editForm.hidden) { editForm.hidden = true; return; }
      try {
        const tool = await api("GET", `/web/tools/${encodeURIComponent(request.tool)}`);
        editForm.replaceChildren(...argumentsForm(request, tool.parameters || {}, (changes) => submit("approve", "", changes)));
        editForm.hidden = false;
        editForm.querySelector("input, select")?.focus();
      } catch (error) {
        status.textContent = error.message;
        status.classList.add("error");
      }
    }
    showQuorum(card, approved, request.needed || 1, request.open_groups || []);

    async function submit(decision, comment, changes) {
      if (decision === "reject" && !comment) { status.textContent = "a rejection needs a reason"; reason.focus(); return; }
      for (const button of card.querySelectorAll("button")) button.disabled = true;
      status.textContent = "sending…";
      status.classList.remove("error");
      try {
        const accepted = await decide(decision, comment, changes);
        if (accepted && accepted.message && accepted.message.startsWith("your approval counts")) {
          status.textContent = renderText(accepted.message);  // one of a quorum: the card stays open for the others
        } else if (accepted && accepted.message && accepted.message.startsWith("your edit")) {
          markReplaced(card, renderText(accepted.message));  // the edited call is a new request, with its own card
        } else if (!card.classList.contains("decided")) {
          status.textContent = `${decision === "approve" ? "Approval" : "Rejection"} sent; waiting for the bot`;
        }
      } catch (error) {
        status.textContent = error.message;
        status.classList.add("error");
        for (const button of card.querySelectorAll("button")) button.disabled = false;
      }
    }
    return card;
  }

  // The Edit form: one field per parameter of the tool's schema, filled with the call's arguments; it sends
  // only what changed, typed as the schema says (an emptied optional field removes the argument). The
  // server checks the edit against the schema and the policy again: this form only helps.
  function argumentsForm(request, schema, send) {
    const properties = schema.properties || {};
    const required = new Set(schema.required || []);
    const current = request.args || {};
    const fields = Object.keys(properties).map((name) => {
      const spec = properties[name] || {};
      const id = `e-${request.approval_id}-${name}`;
      const choices = spec.type === "boolean" ? ["true", "false"] : (spec.enum || []).map(String);
      const value = name in current ? argValue(current[name]) : "";
      let input;
      if (choices.length) {
        input = el("select", { id, name }, required.has(name) ? null : el("option", { value: "", text: "(none)" }),
          choices.map((choice) => el("option", { value: choice, text: choice })));
      } else {
        const numeric = spec.type === "integer" || spec.type === "number";
        // No `pattern` attribute: HTML reads it with other regex rules than JSON Schema; the server checks it.
        input = el("input", { id, name, type: numeric ? "number" : "text", step: spec.type === "number" ? "any" : null,
          placeholder: spec.pattern || null, required: required.has(name) ? "" : null });
      }
      input.value = value;
      return { name, spec, input, label: el("label", { for: id, text: `${spec.title || name}${required.has(name) ? " *" : ""}` }) };
    });
    const typed = (spec, text) => {
      if (spec.type === "integer" || spec.type === "number") return Number(text);
      if (spec.type === "boolean") return text === "true";
      if (spec.type === "array" || spec.type === "object") { try { return JSON.parse(text); } catch { return text; } }
      return text;
    };
    const changes = () => {
      const changed = {};
      for (const { name, spec, input } of fields) {
        const before = name in current ? argValue(current[name]) : "";
        if (input.value === before) continue;
        changed[name] = input.value === "" ? null : typed(spec, input.value);
      }
      return changed;
    };
    const button = el("button", { type: "submit", class: "approve send-edit", text: "Approve with these arguments" });
    const form = [...fields.flatMap(({ label, input, spec }) => [label, input, spec.description ? el("span", { class: "meta", text: spec.description }) : null]), button];
    button.addEventListener("click", (event) => {
      event.preventDefault();
      const form = button.closest("form");
      if (form && !form.reportValidity()) return;
      const changed = changes();
      if (!Object.keys(changed).length) { button.textContent = "nothing changed: use Approve"; return; }
      send(changed);
    });
    return form.filter(Boolean);
  }

  function markReplaced(card, message) {
    card.querySelector(".buttons")?.remove();
    card.querySelector(".reject-form")?.remove();
    card.querySelector(".edit-form")?.remove();
    card.classList.add("decided", "edited");
    card.querySelector(".card-status").textContent = message;
  }

  // The tool's preview (its plan before apply) on a card; a record's only for the arguments it previewed.
  function previewOf(request) {
    if (!request.preview || (request.preview_of !== undefined && request.preview_of !== request.args_hash)) return null;
    if (request.preview_failed) return el("p", { class: "preview failed error", text: `preview failed: ${request.preview}` });
    const more = request.preview_more
      ? el("p", { class: "meta", text: `${request.preview_more} more characters: the whole preview is in the thread` }, " ", threadLink(request.thread_id))
      : null;
    return el("div", { class: "preview" }, el("p", { class: "meta", text: "preview" }), el("pre", { class: "output", text: request.preview }), more);
  }

  // "1 of 2 approvals: alice": a quorum's progress on a card, updated as approvals arrive on any channel.
  function showQuorum(card, approved, needed, openGroups) {
    const line = card.querySelector(".quorum");
    if (!line || !needed || needed < 2) return;
    const names = approved.map(display).join(", ");
    const groups = openGroups && openGroups.length ? ` (still needs ${openGroups.join(", ")})` : "";
    line.textContent = `${approved.length} of ${needed} approvals${names ? `: ${names}` : ""}${groups}`;
    line.hidden = false;
  }

  function markDecided(card, decision, by, at, comment) {
    card.querySelector(".buttons")?.remove();
    card.querySelector(".reject-form")?.remove();
    card.querySelector(".terms")?.remove();  // who may approve and until when no longer matter
    card.classList.add("decided", { approve: "approved", reject: "rejected", expire: "expired" }[decision] || "rejected");
    const status = card.querySelector(".card-status");
    status.classList.remove("error");
    if (decision === "expire") { status.textContent = `Expired without a decision at ${localTime(at)}`; return; }
    const verb = decision === "approve" ? "Approved" : "Rejected";
    status.textContent = `${verb} by ${byWhom(by)} at ${localTime(at)}${comment ? `: ${comment}` : ""}`;
  }

  const DECISION = { approved: "approve", rejected: "reject", expired: "expire" };

  function approvalItem(record) {
    const card = approvalCard(record, async (decision, comment, args) => {
      const body = { decision, comment, digest: record.digest || undefined, args };
      const accepted = await api("POST", `/v1/approvals/${encodeURIComponent(record.approval_id)}/decision`, body);
      if (accepted && accepted.message && /^your (approval counts|edit)/.test(accepted.message)) return accepted;
      // Confirmed at once, and kept in the list until the next refresh: the decider sees what happened.
      markDecided(card, decision, state.identity, new Date().toISOString(), comment);
      state.pending.delete(record.approval_id);
      badge();
      return accepted;
    });
    const extra = [threadLink(record.thread_id)];
    inboxControls(card, record);  // the bulk checkbox, "Not now" and the snooze line
    if (record.status !== "pending") markDecided(card, DECISION[record.status], record.decided_by, record.decided_at, record.comment);
    else if (record.expired) extra.push(el("p", { class: "error", text: "expired: ask for the action again" }));
    else if (!record.may_decide) extra.push(el("p", { class: "meta not-approver", text: `you (${display(state.identity)}) are not an approver for this` }));
    card.append(...extra.filter(Boolean));
    return card;
  }

  function badge() {
    const count = $("#approval-count");
    count.textContent = `${state.pending.size}${state.pendingMore ? "+" : ""}`;
    count.hidden = state.pending.size === 0;
  }

  function emptyInbox() {
    const list = $("#approval-list");
    const status = $("#approval-status").value;
    list.querySelector(".empty")?.remove();
    if (!list.children.length) list.append(el("p", { class: "empty", text: status === "pending" ? "nothing waiting for approval" : `no ${status} approvals` }));
  }

  // An approval changed somewhere (any channel, any process): the badge, the inbox and a chat card follow.
  function onApproval(record) {
    const id = record.approval_id;
    if (record.status === "pending" && !record.expired) state.pending.add(id);
    else state.pending.delete(id);
    badge();
    const decided = record.status !== "pending";
    const chatCard = state.cards.get(id);
    if (chatCard && decided) markDecided(chatCard, DECISION[record.status], record.decided_by, record.decided_at, record.comment);
    const card = state.inbox.get(id);
    const approved = (record.votes || []).map((vote) => vote.by);
    if (chatCard && !decided) showQuorum(chatCard, approved, record.needed, []);
    if (card) {
      if (decided) markDecided(card, DECISION[record.status], record.decided_by, record.decided_at, record.comment);
      else { showQuorum(card, approved, record.needed, []); showSnoozed(card, record); }
    } else if (fits(record)) {
      const fresh = approvalItem(record);
      state.inbox.set(id, fresh);
      $("#approval-list").querySelector(".empty")?.remove();
      $("#approval-list").append(fresh);
    }
  }

  const loadApprovals = pager($("#more-approvals"), (record) => record.approval_id, async (cursor) => {
    const query = inboxQuery();
    if (cursor) query.set("cursor", cursor);
    const data = await api("GET", `/v1/approvals?${query}`);
    return { items: data.approvals, next: data.next_cursor };
  }, (records, fresh, more) => {
    const list = $("#approval-list");
    const status = $("#approval-status").value;
    if (fresh) { list.replaceChildren(); state.inbox.clear(); }
    for (const record of records) {
      const card = approvalItem(record);
      state.inbox.set(record.approval_id, card);
      list.append(card);
    }
    emptyInbox();
    if (status === "pending" && !filtering()) {  // the badge counts everything pending, not a filtered view
      if (fresh) state.pending = new Set();
      records.filter((r) => r.status === "pending" && !r.expired).forEach((r) => state.pending.add(r.approval_id));
      state.pendingMore = more;
      badge();
    }
  });
  const refreshApprovals = () => { $("#bulk-outcomes").replaceChildren(); $("#pick-all").checked = false; return loadApprovals(true); };

  // --- the inbox's filters, several decisions at once, and "not now" -----------------------------

  const FILTERS = ["agent", "tool", "requester", "channel"];
  const filterValue = (name) => $(`#inbox-${name}`).value.trim();
  const filtering = () => FILTERS.some((name) => filterValue(name));

  function inboxQuery() {
    const query = new URLSearchParams({ status: $("#approval-status").value, limit: String(PAGE) });
    for (const name of FILTERS) if (filterValue(name)) query.set(name, filterValue(name));
    return query;
  }

  // Whether a record that changed elsewhere belongs in the inbox as filtered now.
  function fits(record) {
    const status = $("#approval-status").value;
    const snoozed = record.status === "pending" && isSnoozed(record);
    if (status === "snoozed" ? !snoozed : record.status !== status) return false;
    return FILTERS.every((name) => !filterValue(name) || String(record[name] || "") === filterValue(name));
  }

  const isSnoozed = (record) => Boolean(record.snoozed);  // as the server's clock says

  function showSnoozed(card, record) {
    card.querySelector(".snoozed")?.remove();
    if (!isSnoozed(record)) return;
    card.querySelector(".buttons")?.before(el("p", { class: "meta snoozed",
      text: `snoozed by ${byWhom(record.snoozed_by)} until ${localTime(record.snoozed_until)}: it is asked again then` }));
  }

  // A pending card this identity may decide gets a checkbox (several at once) and "Not now (30 min)".
  function inboxControls(card, record) {
    showSnoozed(card, record);
    if (record.status !== "pending" || record.expired || !record.may_decide) return;
    card.prepend(el("label", { class: "pick" }, el("input", { type: "checkbox", class: "pick-one", value: record.approval_id,
      "aria-label": `select approval ${record.approval_id}` }), " select"));
    const status = card.querySelector(".card-status");
    card.querySelector(".buttons")?.append(el("button", { type: "button", class: "quiet snooze", text: "Not now (30 min)",
      title: "ask again in 30 minutes, without deciding; its expiry stays", onclick: async () => {
        try {
          const body = { duration: "30m", digest: record.digest || undefined };
          const accepted = await api("POST", `/v1/approvals/${encodeURIComponent(record.approval_id)}/snooze`, body);
          status.textContent = renderText(accepted.message);
          const until = (accepted.message.match(/asked again at (\S+ \S+)/) || [])[1];  // the server's time
          showSnoozed(card, { ...record, snoozed: true, snoozed_by: state.identity, snoozed_until: until ? `${until.replace(" ", "T")}:00Z` : null });
        } catch (error) { status.textContent = error.message; status.classList.add("error"); }
      } }));
  }

  // Each selected approval is decided on its own (permission, digest, single use); each outcome is listed.
  async function decideSelected(decision) {
    const ids = [...document.querySelectorAll("#approval-list .pick-one:checked")].map((box) => box.value);
    const comment = $("#bulk-comment").value.trim();
    const told = $("#bulk-status");
    if (!ids.length) { told.textContent = "select one or more approvals first"; return; }
    if (decision === "reject" && !comment) { told.textContent = "a rejection needs a reason: write it in the comment"; $("#bulk-comment").focus(); return; }
    told.textContent = "sending…";
    try {
      const data = await api("POST", "/v1/approvals/decisions", { approval_ids: ids, decision, comment });
      told.textContent = `${data.accepted} of ${data.results.length} ${decision === "approve" ? "approvals" : "rejections"} accepted`;
      $("#bulk-outcomes").replaceChildren(...data.results.map((r) => el("li", { class: r.status === 202 ? "ok" : "error", "data-approval-id": r.approval_id,
        text: `${r.approval_id}: ${r.status === 202 ? (renderText(r.message) || "accepted") : renderText(r.message)}` })));
      for (const result of data.results) {
        const card = state.inbox.get(result.approval_id);
        if (!card || result.status !== 202) continue;
        card.querySelector(".pick")?.remove();
        if (!(result.message || "").startsWith("your approval counts")) markDecided(card, decision, state.identity, new Date().toISOString(), comment);
      }
    } catch (error) { told.textContent = error.message; }
  }

  // --- standing grants ---------------------------------------------------------------------------

  function grantRow(grant) {
    const status = el("td", { class: `grant-status ${grant.status}`, text: grant.status === "revoked" ? `revoked by ${display(grant.revoked_by)}` : grant.status });
    const revoke = el("button", { type: "button", class: "danger revoke-grant", text: "Revoke", hidden: grant.status !== "live" ? "" : null,
      onclick: async () => {
        revoke.disabled = true;
        try {
          const revoked = await api("DELETE", `/v1/grants/${encodeURIComponent(grant.grant_id)}`);
          status.textContent = `revoked by ${display(revoked.revoked_by)}`;
          revoke.hidden = true;
        } catch (error) { toast(error.message); revoke.disabled = false; }
      } });
    return el("tr", { "data-grant-id": grant.grant_id },
      el("td", {}, el("code", { text: grant.grant_id })), el("td", {}, el("code", { class: "tool", text: grant.tool }), " ", grant.pattern),
      el("td", {}, person(grant.requester)), el("td", {}, person(grant.granted_by)),
      el("td", { text: localTime(grant.expires_at) }), status, el("td", {}, revoke));
  }

  async function refreshGrants() {
    try {
      const data = await api("GET", "/v1/grants");
      $("#grant-rows").replaceChildren(...data.grants.map(grantRow));
      $("#grants-empty").hidden = data.grants.length > 0;
    } catch (error) { toast(error.message); }
  }

  // --- threads -------------------------------------------------------------------------------------

  const seen = { agents: new Set(), channels: new Set() };
  function remember(kind, value, list) {
    if (!value || seen[kind].has(value)) return;
    seen[kind].add(value);
    $(list).append(el("option", { value }));
  }

  const loadThreads = pager($("#more-threads"), (t) => t.thread_id, async (cursor) => {
    const query = new URLSearchParams({ limit: String(PAGE), order: "updated" });
    const filters = { status: $("#filter-status").value, agent: $("#filter-agent").value.trim(), channel: $("#filter-channel").value.trim() };
    for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
    if (cursor) query.set("cursor", cursor);
    const data = await api("GET", `/v1/threads?${query}`);
    return { items: data.threads, next: data.next_cursor };
  }, (threads, fresh) => {
    const rows = threads.map((t) => {
      remember("agents", t.agent, "#agents-seen");
      remember("channels", t.channel, "#channels-seen");
      const status = t.status.replace(/_/g, " ") + (t.pending_approval ? ` (${t.pending_approval})` : "");
      return el("tr", { "data-thread-id": t.thread_id },
        el("td", {}, el("a", { href: `#thread/${encodeURIComponent(t.thread_id)}`, text: t.thread_id })),
        el("td", { class: `status ${t.status}`, text: status }),
        el("td", {}, person(t.requester)), el("td", { text: t.agent }), el("td", { text: t.channel }),
        el("td", { text: String(t.events) }),
        el("td", {}, el("time", { datetime: t.updated_at, title: fullTime(t.updated_at), text: localTime(t.updated_at) })));
    });
    if (fresh) $("#thread-rows").replaceChildren(...rows);
    else $("#thread-rows").append(...rows);
    $("#threads-empty").hidden = $("#thread-rows").children.length > 0;
  });
  const refreshThreads = () => loadThreads(true);

  // --- one thread, as a picture --------------------------------------------------------------------

  const LANES = ["human", "agent", "tool", "approval"];
  const LANE_OF = {
    thread_started: "human", user_message: "human", human_answer: "human", paused: "human", resumed: "human",
    model_call: "agent", handed_off: "agent", agent_reply: "agent", human_question: "agent", escalated: "agent",
    failed: "agent", delivery_failed: "agent",
    tool_call: "tool", tool_started: "tool", tool_result: "tool", tool_error: "tool", tool_previewed: "tool",
    approval_requested: "approval", approval_decided: "approval", approval_voted: "approval",
    arguments_edited: "approval", approval_snoozed: "approval", grant_given: "approval", grant_used: "approval",
  };
  const TITLES = {
    thread_started: "Started", user_message: "Message", human_answer: "Answer", paused: "Paused", resumed: "Resumed",
    model_call: "Model call", handed_off: "Handed off", agent_reply: "Reply", human_question: "Question",
    escalated: "Escalated", failed: "Failed", delivery_failed: "Not delivered", tool_call: "Tool call",
    tool_started: "Tool running", tool_result: "Tool result", approval_requested: "Approval requested",
    tool_previewed: "Preview", approval_voted: "Approval counted", arguments_edited: "Arguments edited",
    approval_snoozed: "Snoozed", grant_given: "Grant given", grant_used: "Grant used",
  };
  const TOOL_ERRORS = { rejected: "Rejected", expired: "Expired", interrupted: "Interrupted", invalid: "Invalid call", failed: "Tool failed" };
  const BAD = new Set(["tool_error", "failed", "delivery_failed"]);

  function title(e) {
    if (e.type === "approval_decided") return { approve: "Approved", reject: "Rejected", expire: "Expired" }[e.decision] || "Decided";
    if (e.type === "tool_error") return TOOL_ERRORS[e.kind] || "Tool error";
    return TITLES[e.type] || e.type.replace(/_/g, " ");
  }

  const kv = (args) => Object.entries(args || {}).sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name, value]) => {
      const shown = `${name}=${renderText(argValue(value))}`;
      return [el("code", { class: "kv", title: shown, text: shown }), " "];
    });
  const quote = (text) => el("q", { text: renderText(text) });
  const output = (text) => (text ? el("pre", { class: "output", text: renderText(text) }) : null);

  function summary(e) {
    switch (e.type) {
      case "thread_started": return [person(e.requester), ` on ${e.channel}, agent ${e.agent}`];
      case "user_message": case "human_answer": return [quote(e.text), e.choice ? el("span", { class: "meta", text: " (a choice)" }) : null];
      case "agent_reply": return [output(e.text)];
      case "model_call": return [`${e.model}: ${e.input_tokens} tokens in, ${e.output_tokens} out`];
      case "tool_call":
        if (e.tool === "reply") return [el("code", { class: "tool", text: e.tool }), el("span", { class: "meta", text: " the answer, shown below" })];
        return [el("code", { class: "tool", text: e.tool }), " ", kv(e.args), e.reason ? el("span", { class: "meta", text: ` ${renderText(e.reason)}` }) : null];
      case "tool_started": return [el("code", { class: "tool", text: e.tool })];
      case "tool_result": return [el("code", { class: "tool", text: e.tool }), output(e.output)];
      case "tool_previewed": return [el("code", { class: "tool", text: e.tool }), e.ok ? output(e.output) : el("span", { class: "error", text: ` preview failed: ${renderText(e.output)}` })];
      case "tool_error": return [el("code", { class: "tool", text: e.tool || "-" }), " ", el("span", { class: "error", text: renderText(e.error) })];
      case "approval_requested": return [el("code", { class: "tool", text: e.tool }), " ", kv(e.args), el("span", { class: "meta", text: ` approvers: ${(e.approvers || []).map(display).join(", ")}` })];
      case "arguments_edited": return [["by ", person(e.by)], " ", el("code", { class: "tool", text: e.tool }), " ",
        Object.keys({ ...e.before, ...e.after }).filter((name) => argValue(e.before[name]) !== argValue(e.after[name])).sort()
          .map((name) => el("code", { class: "kv", text: `${name}: ${renderText(argValue(e.before[name] ?? "-"))} → ${renderText(argValue(e.after[name] ?? "-"))}` }))];
      case "approval_voted": return [["by ", person(e.by)], ` (${e.count} of ${e.needed})`];
      case "approval_decided": return [e.decision === "expire" ? "no one decided in time" : ["by ", person(e.actor)], e.comment ? `: ${e.comment}` : ""];
      case "human_question": return [quote(e.question), e.options && e.options.length ? el("span", { class: "meta", text: ` choices: ${e.options.join(" · ")}` }) : null];
      case "escalated": return [renderText(e.reason)];
      case "failed": return [el("span", { class: "error", text: renderText(e.error) })];
      case "delivery_failed": return [el("span", { class: "error", text: `could not show a ${e.outbound_kind.replace(/_/g, " ")} on ${e.channel}: ${renderText(e.error)}` })];
      case "handed_off": return [`${e.from_agent} → ${e.to_agent}`, e.note ? el("span", { class: "meta", text: `: ${renderText(e.note)}` }) : null];
      case "paused": return [e.reason ? renderText(e.reason) : "no step is taken until it is resumed"];
      case "resumed": return ["steps go on"];
      default: return [el("span", { class: "meta", text: "details on click" })];
    }
  }

  // What each event took, or waited for: model and tool time, an approval's or a question's wait.
  function measure(events) {
    const opened = new Map(), spans = [], took = new Map();
    events.forEach((e, index) => {
      if (e.type === "model_call") took.set(index, { text: duration(e.latency_ms) });
      if (e.type === "tool_started") opened.set(`tool:${e.call_id}`, index);
      if (e.type === "tool_result" || e.type === "tool_error") {
        const start = opened.get(`tool:${e.call_id}`);
        if (start !== undefined) { spans.push(["tool", start, index]); opened.delete(`tool:${e.call_id}`); }
        if (e.type === "tool_result") took.set(index, { text: duration(e.duration_ms) });
      }
      if (e.type === "approval_requested") opened.set(`approval:${e.approval_id}`, index);
      if (e.type === "approval_decided") {
        const start = opened.get(`approval:${e.approval_id}`);
        if (start !== undefined) {
          spans.push(["approval", start, index]);
          opened.delete(`approval:${e.approval_id}`);
          took.set(index, { text: `waited ${duration(between(events[start].at, e.at))}`, wait: true });
        }
      }
      if (e.type === "human_question") opened.set("question", index);
      if (e.type === "human_answer" && opened.has("question")) {
        const start = opened.get("question");
        opened.delete("question");
        spans.push(["human", start, index]);
        took.set(index, { text: `after ${duration(between(events[start].at, e.at))}`, wait: true });
      }
    });
    for (const [key, start] of opened) {  // still waiting: the span runs to the last event
      const lane = key.startsWith("approval") ? "approval" : key.startsWith("tool") ? "tool" : "human";
      spans.push([lane, start, null]);
      if (lane === "approval") took.set(start, { text: `waiting ${duration(Date.now() - new Date(events[start].at).getTime())}`, wait: true });
    }
    return { spans, took };
  }

  function renderTimeline() {
    const events = state.thread.events;
    const { spans, took } = measure(events);
    const rows = events.map((e, index) => {
      const lane = LANE_OF[e.type] || "agent";
      const lanes = el("span", { class: "lanes", "aria-hidden": "true" }, LANES.map((name) => {
        const cell = el("span", { class: `lane lane-${name}` });
        for (const [spanLane, start, end] of spans) {
          if (spanLane !== name || index < start || (end !== null && index > end)) continue;
          cell.classList.add("span");
          if (index === start) cell.classList.add("start");
          if (index === end) cell.classList.add("end");
        }
        if (name === lane) cell.append(el("i", { class: "dot" }));
        return cell;
      }));
      const gap = index ? between(events[index - 1].at, e.at) : null;
      const when = el("span", { class: "when" },
        el("time", { datetime: e.at, title: fullTime(e.at), text: localTime(e.at, "seconds") }),
        gap !== null && gap >= 1000 ? el("span", { class: "gap", text: `+${duration(gap)}` }) : null);
      const spent = took.get(index);
      const card = el("button", { type: "button", class: "card-button", "aria-label": `${title(e)}, event ${index + 1}: details`, onclick: () => select(index) },
        el("span", { class: "head" },
          el("span", { class: `title ${lane}`, text: title(e) }),
          spent ? el("span", { class: `dur${spent.wait ? " wait" : ""}`, text: spent.text }) : null,
          el("span", { class: "actor", title: e.actor, text: display(e.actor) })),
        el("span", { class: "summary" }, summary(e)));
      return el("li", { class: `event ${e.type} lane-is-${lane}${BAD.has(e.type) ? " bad" : ""}`, "data-seq": String(index + 1), "data-type": e.type }, when, lanes, el("span", { class: "body" }, card));
    });
    $("#timeline").replaceChildren(...rows);
    $("#step").max = String(events.length);
    if (state.selected !== null && state.selected < events.length) select(state.selected, false);
  }

  function select(index, focus = true) {
    state.selected = index;
    const e = state.thread.events[index];
    for (const row of document.querySelectorAll("#timeline .event")) row.classList.toggle("selected", Number(row.dataset.seq) === index + 1);
    const spent = measure(state.thread.events).took.get(index);
    const rows = [["what", title(e)], ["event", `${index + 1} of ${state.thread.events.length} (${e.type})`], ["when", fullTime(e.at)],
      ["who", `${display(e.actor)} (${e.actor})`], ["lane", LANE_OF[e.type] || "agent"]];
    if (spent) rows.push(["took", spent.text]);
    const box = $("#details");
    box.replaceChildren(
      el("button", { type: "button", class: "quiet close", text: "Close", "aria-label": "close the details", onclick: () => { box.hidden = true; state.selected = null; renderSelection(); } }),
      el("h3", { text: `${title(e)}` }),
      el("dl", {}, rows.map(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })])),
      el("pre", { class: "json", text: JSON.stringify(sorted(e), null, 2) }));
    box.hidden = false;
    if (focus && window.matchMedia("(max-width: 900px)").matches) box.scrollIntoView({ block: "nearest" });
  }
  function renderSelection() {
    for (const row of document.querySelectorAll("#timeline .event")) row.classList.remove("selected");
  }

  async function openThread(threadId, at) {
    const query = at ? `?at=${at}` : "";
    let data;
    try { data = await api("GET", `/v1/threads/${encodeURIComponent(threadId)}${query}`); } catch (error) { toast(error.message); return; }
    const other = !state.thread || state.thread.thread.thread_id !== threadId;
    if (other) { state.selected = null; $("#details").hidden = true; }
    state.thread = data;
    state.at = data.at;
    showSummary(data.thread);
    renderTimeline();
    showState(data);
    showAudit(threadId);
    if (other || !state.threadLive) {
      state.threadLive?.stop();
      state.threadLive = follow(`/web/live/threads/${encodeURIComponent(threadId)}?after=${data.events.length}`, { event: onThreadEvent });
    }
  }

  function showSummary(thread) {
    $("#thread-id").textContent = thread.thread_id;
    $("#thread-status").textContent = thread.status.replace(/_/g, " ");
    $("#thread-status").className = `status ${thread.status}`;
    $("#pause-thread").hidden = thread.paused;
    $("#resume-thread").hidden = !thread.paused;
  }

  // A new event of the open thread, pushed: drawn at once; the derived state follows in one read.
  function onThreadEvent(e) {
    if (!state.thread) return;
    const following = state.at === state.thread.events.length;
    state.thread.events.push(e);
    renderTimeline();
    if (following) state.at = state.thread.events.length;
    clearTimeout(onThreadEvent.timer);
    onThreadEvent.timer = setTimeout(() => refreshThreadState(following), 100);
    if (AUDITED.has(e.type)) { clearTimeout(showAudit.timer); showAudit.timer = setTimeout(() => showAudit(state.thread.thread.thread_id), 300); }
    showState(state.thread);
  }

  async function refreshThreadState(following) {
    const id = state.thread.thread.thread_id;
    const at = following ? "" : `?at=${state.at}`;
    const data = await api("GET", `/v1/threads/${encodeURIComponent(id)}${at}`).catch(() => null);
    if (!data || !state.thread || state.thread.thread.thread_id !== id) return;
    const events = state.thread.events.length > data.events.length ? state.thread.events : data.events;
    state.thread = { ...data, events };
    state.at = following ? events.length : data.at;
    showSummary(data.thread);
    if (events === data.events) renderTimeline();
    showState(state.thread);
  }

  function showState(data) {
    const total = data.events.length;
    $("#step").value = String(state.at);
    $("#step-label").textContent = `as of event ${state.at} of ${total}`;
    for (const item of document.querySelectorAll("#timeline .event")) {
      const seq = Number(item.dataset.seq);
      item.classList.toggle("future", seq > state.at);
      item.classList.toggle("current", seq === state.at);
    }
    const s = data.state;
    const rows = [
      ["status", s.paused ? `paused (${s.status})` : s.status],
      ["agent", s.agent || "-"],
      ["requester", display(s.requester)], ["last actor", s.last_actor ? display(s.last_actor) : "-"],
      ["pending approval", s.pending_approval ? `${s.pending_approval.approval_id} (${s.pending_approval.tool})` : "-"],
      ["question", s.pending_question ? renderText(s.pending_question) : "-"],
      ["steps", `${s.steps} (this turn ${s.turn_steps})`], ["errors in a row", String(s.consecutive_errors)],
      ["last outcome", s.last_outcome ? renderText(s.last_outcome) : "-"], ["updated", localTime(s.updated_at)],
    ];
    $("#state").replaceChildren(el("h3", { text: `State as of event ${data.at}` }),
      el("dl", {}, rows.map(([name, value]) => [el("dt", { text: name }), el("dd", { class: `state-${name.replace(/ /g, "-")}`, text: value })])));
  }

  // The thread's audit trail (GET /v1/threads/{id}/audit): each approval fact with its time, who and channel.
  const AUDITED = new Set(["approval_requested", "approval_voted", "approval_snoozed", "approval_decided", "tool_started", "tool_result", "tool_error"]);
  async function showAudit(threadId) {
    const box = $("#audit");
    const data = await api("GET", `/v1/threads/${encodeURIComponent(threadId)}/audit`).catch(() => null);
    if (!data || !state.thread || state.thread.thread.thread_id !== threadId) return;
    box.hidden = data.records.length === 0;
    const fact = (r) => r.fact === "result" ? `result: ${r.detail.outcome}` : r.fact;
    const rows = data.records.map((r) => el("tr", { title: `record ${r.n}, ${r.tool} ${r.approval_id}, hash ${r.hash.slice(0, 12)}` },
      el("td", { text: localTime(r.at, "seconds"), title: localTime(r.at) }), el("td", { class: "audit-fact", text: fact(r) }),
      el("td", { text: r.who ? display(r.who) : "-" }), el("td", { text: r.channel || "-" })));
    box.replaceChildren(el("h3", { text: "Audit trail" }),
      el("table", {}, el("thead", {}, el("tr", {}, ...["time", "fact", "who", "channel"].map((name) => el("th", { text: name })))),
        el("tbody", {}, ...rows)));
  }

  async function step(to) {
    if (!state.thread) return;
    const at = Math.min(Math.max(1, to), state.thread.events.length);
    const data = await api("GET", `/v1/threads/${encodeURIComponent(state.thread.thread.thread_id)}?at=${at}`).catch((error) => toast(error.message));
    if (data) { state.thread = data; state.at = data.at; showSummary(data.thread); showState(data); }
  }

  async function control(action) {
    const id = state.thread.thread.thread_id;
    try {
      await api("POST", `/v1/threads/${encodeURIComponent(id)}/${action}`);
      toast(`${action} sent`, "info");
    } catch (error) { toast(error.message); }
  }

  // --- wiring --------------------------------------------------------------------------------------

  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await signIn($("#token-input").value.trim())) route();
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#message");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text, "");
  });
  $("#new-conversation").addEventListener("click", () => startChat(null));
  $("#refresh-approvals").addEventListener("click", refreshApprovals);
  $("#refresh-grants").addEventListener("click", refreshGrants);
  $("#approval-status").addEventListener("change", refreshApprovals);
  $("#approval-filters").addEventListener("submit", (event) => { event.preventDefault(); refreshApprovals(); });
  $("#pick-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("#approval-list .pick-one")) box.checked = event.target.checked;
  });
  $("#bulk-approve").addEventListener("click", () => decideSelected("approve"));
  $("#bulk-reject").addEventListener("click", () => decideSelected("reject"));
  $("#refresh-threads").addEventListener("click", refreshThreads);
  $("#thread-filters").addEventListener("change", refreshThreads);
  $("#thread-filters").addEventListener("submit", (event) => { event.preventDefault(); refreshThreads(); });
  $("#refresh-thread").addEventListener("click", () => state.thread && openThread(state.thread.thread.thread_id));
  $("#pause-thread").addEventListener("click", () => control("pause"));
  $("#resume-thread").addEventListener("click", () => control("resume"));
  $("#step").addEventListener("change", (event) => step(Number(event.target.value)));
  $("#step-first").addEventListener("click", () => step(1));
  $("#step-prev").addEventListener("click", () => step(state.at - 1));
  $("#step-next").addEventListener("click", () => step(state.at + 1));
  $("#step-last").addEventListener("click", () => step(state.thread ? state.thread.events.length : 1));
  window.addEventListener("hashchange", route);

  loadSigninHint();
  const token = takeTokenFromUrl();
  if (token) signIn(token).then((ok) => (ok ? route() : show("signin")));
  else show("signin");
})();
