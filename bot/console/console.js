// The opsbot web console: chat (the `web` channel), the approvals inbox and the thread view.
// Plain browser JavaScript, no dependencies. Everything from the server is shown with
// textContent, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "opsbot.token";
  const CONVERSATION_KEY = "opsbot.conversation";
  const PAGE = 50;  // threads and approvals per page
  const $ = (selector) => document.querySelector(selector);
  const state = {
    token: null, identity: null, conversation: null, after: null, polling: false,
    cards: new Map(), thread: null, at: null,
  };

  // --- small helpers --------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat(Infinity)) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "-");
  // JSON with sorted keys at every level, like the bot's own logs.
  const sorted = (value) => (value && typeof value === "object" && !Array.isArray(value)
    ? Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted(value[key])]))
    : Array.isArray(value) ? value.map(sorted) : value);
  const json = (value) => JSON.stringify(sorted(value));

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
      if (response.status === 401) signOut(error.message);
      throw new ApiError(response.status, error.code || "error", error.message || `${response.status} ${response.statusText}`);
    }
    return data;
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

  async function signIn(token) {
    state.token = token;
    try {
      state.identity = (await api("GET", "/v1/me")).identity;
    } catch (error) {
      $("#signin-error").textContent = error.message;
      return false;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#whoami").textContent = state.identity;
    $("#sign-out").hidden = false;
    startChat(sessionStorage.getItem(CONVERSATION_KEY));
    refreshApprovals();
    return true;
  }

  function signOut(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = state.identity = null;
    $("#whoami").textContent = "";
    $("#sign-out").hidden = true;
    $("#signin-error").textContent = reason || "";
    show("signin");
  }

  // --- views -------------------------------------------------------------------------------------

  function show(name) {
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === name || (name === "thread" && link.dataset.nav === "threads"));
    }
  }

  function route() {
    if (!state.token) return show("signin");
    const [name, arg] = location.hash.replace(/^#/, "").split("/");
    if (name === "approvals") { show("approvals"); refreshApprovals(); }
    else if (name === "threads") { show("threads"); refreshThreads(); }
    else if (name === "thread" && arg) { show("thread"); openThread(decodeURIComponent(arg)); }
    else show("chat");
  }

  // --- chat: the `web` channel ---------------------------------------------------------------------

  function startChat(conversation) {
    state.conversation = conversation || crypto.randomUUID();
    sessionStorage.setItem(CONVERSATION_KEY, state.conversation);
    state.after = null;
    state.cards.clear();
    $("#transcript").replaceChildren();
    $("#conversation-id").textContent = state.conversation.slice(0, 8);
    state.ready = positionOnce();
    poll();
  }

  async function positionOnce() {
    const query = new URLSearchParams({ conversation: state.conversation });
    state.after = (await api("GET", `/web/updates?${query}`)).after;
  }

  async function poll() {
    if (state.polling) return;
    state.polling = true;
    try {
      while (state.token) {
        const conversation = state.conversation;
        try {
          await state.ready;
          const query = new URLSearchParams({ conversation, after: state.after, wait: "20" });
          const data = await api("GET", `/web/updates?${query}`);
          if (conversation !== state.conversation) continue;
          state.after = data.after;
          data.items.forEach(renderOutbound);
        } catch (error) {
          if (error.status === 401) return;
          toast(`lost the connection to the bot (${error.message}); retrying`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
          if (conversation === state.conversation) state.ready = positionOnce().catch(() => {});
        }
      }
    } finally {
      state.polling = false;
    }
  }

  function say(who, cls, ...body) {
    const item = el("li", { class: `msg ${cls}` }, el("span", { class: "who", text: who }), ...body);
    $("#transcript").append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function threadLink(threadId) {
    return threadId ? el("a", { class: "thread-link", href: `#thread/${encodeURIComponent(threadId)}`, text: "view thread" }) : null;
  }

  function renderOutbound(item) {
    const link = threadLink(item.thread_id);
    switch (item.kind) {
      case "reply":
        say("bot", item.final ? "bot" : "bot progress", el("pre", { class: "text", text: item.text }), link);
        break;
      case "question":
        say("bot", "bot question", el("pre", { class: "text", text: item.question }), link);
        break;
      case "notice":
        say(item.to ? "bot (only you)" : "bot", `notice ${item.level}`, el("pre", { class: "text", text: item.text }), link);
        break;
      case "approval_request": {
        const card = approvalCard(item, (decision, comment) => api("POST", "/web/decisions", {
          conversation: state.conversation, approval_id: item.approval_id, decision, comment,
        }));
        state.cards.set(item.approval_id, card);
        say("bot", "bot approval", card, link);
        break;
      }
      case "decision_receipt": {
        const card = state.cards.get(item.approval_id);
        if (card) markDecided(card, item.decision, item.by, item.at, item.comment);
        const verb = { approve: "approved", reject: "rejected", expire: "expired" }[item.decision] || item.decision;
        const note = item.comment ? `: ${item.comment}` : "";
        const by = item.decision === "expire" ? "without a decision" : `by ${item.by}`;
        say("bot", "notice info receipt", el("pre", { class: "text", text: `approval ${item.approval_id} ${verb} ${by} at ${when(item.at)}${note}` }));
        break;
      }
      default:
        say("bot", "notice", el("pre", { class: "text", text: JSON.stringify(item) }));
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
    const card = el("div", { class: "card approval-card", "data-approval-id": request.approval_id },
      el("h3", { text: `Approval needed: ${request.tool}` }),
      el("table", { class: "args" }, args.map(([name, value]) => el("tr", {}, el("th", { text: name }), el("td", {}, el("code", { text: typeof value === "string" ? value : JSON.stringify(value) }))))),
      el("p", { text: `why: ${request.reason || "(no reason given)"}` }),
      el("p", { class: "meta", text: `requested by ${request.requester} · approvers: ${request.approvers_described || (request.approvers || []).join(", ")} · expires ${when(request.expires_at)} · id ${request.approval_id}` }),
      buttons, rejectForm, status);

    async function submit(decision, comment) {
      if (decision === "reject" && !comment) { status.textContent = "a rejection needs a reason"; reason.focus(); return; }
      for (const button of card.querySelectorAll("button")) button.disabled = true;
      status.textContent = "sending…";
      try {
        await decide(decision, comment);
        status.textContent = `${decision === "approve" ? "approval" : "rejection"} sent; waiting for the bot`;
      } catch (error) {
        status.textContent = error.message;
        status.classList.add("error");
        for (const button of card.querySelectorAll("button")) button.disabled = false;
      }
    }
    return card;
  }

  function markDecided(card, decision, by, at, comment) {
    card.querySelector(".buttons")?.remove();
    card.querySelector(".reject-form")?.remove();
    card.classList.add(decision === "approve" ? "approved" : "rejected");
    if (decision === "expire") {
      card.querySelector(".card-status").textContent = `Expired without a decision at ${when(at)}`;
      return;
    }
    const verb = decision === "approve" ? "Approved" : "Rejected";
    card.querySelector(".card-status").textContent = `${verb} by ${by} at ${when(at)}${comment ? `: ${comment}` : ""}`;
  }

  const DECISION = { approved: "approve", rejected: "reject", expired: "expire" };

  function approvalItem(record) {
    const card = approvalCard(record, async (decision, comment) => {
      await api("POST", `/v1/approvals/${encodeURIComponent(record.approval_id)}/decision`, { decision, comment });
      setTimeout(refreshApprovals, 1000);
    });
    const extra = [threadLink(record.thread_id)];
    if (record.status !== "pending") markDecided(card, DECISION[record.status], record.decided_by, record.decided_at, record.comment);
    else if (record.expired) extra.push(el("p", { class: "error", text: "expired: ask for the action again" }));
    else if (!record.may_decide) extra.push(el("p", { class: "meta", text: `you (${state.identity}) are not an approver for this` }));
    card.append(...extra.filter(Boolean));
    return card;
  }

  const loadApprovals = pager($("#more-approvals"), (record) => record.approval_id, async (cursor) => {
    const query = new URLSearchParams({ status: $("#approval-status").value, limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const data = await api("GET", `/v1/approvals?${query}`);
    return { items: data.approvals, next: data.next_cursor };
  }, (records, fresh, more) => {
    const list = $("#approval-list");
    const status = $("#approval-status").value;
    if (fresh) list.replaceChildren();
    list.append(...records.map(approvalItem));
    if (!list.children.length) list.append(el("p", { class: "empty", text: status === "pending" ? "nothing waiting for approval" : `no ${status} approvals` }));
    if (status === "pending") {
      const count = $("#approval-count");
      const shown = list.querySelectorAll(".approval-card").length;
      count.textContent = `${shown}${more ? "+" : ""}`;
      count.hidden = shown === 0;
    }
  });
  const refreshApprovals = () => loadApprovals(true);

  // --- threads and time travel ---------------------------------------------------------------------

  const loadThreads = pager($("#more-threads"), (t) => t.thread_id, async (cursor) => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const data = await api("GET", `/v1/threads?${query}`);
    return { items: data.threads, next: data.next_cursor };
  }, (threads, fresh) => {
    const rows = threads.map((t) => el("tr", { "data-thread-id": t.thread_id },
      el("td", {}, el("a", { href: `#thread/${encodeURIComponent(t.thread_id)}`, text: t.thread_id })),
      el("td", { class: `status ${t.status}`, text: t.status + (t.pending_approval ? ` (${t.pending_approval})` : "") }),
      el("td", { text: t.requester }), el("td", { text: t.channel }), el("td", { text: String(t.events) }),
      el("td", { text: when(t.updated_at) })));
    if (fresh) $("#thread-rows").replaceChildren(...rows);
    else $("#thread-rows").append(...rows);
  });
  const refreshThreads = () => loadThreads(true);

  function describe(e) {
    switch (e.type) {
      case "thread_started": return [`started by ${e.requester} on ${e.channel}, agent ${e.agent}`];
      case "user_message": case "human_answer": case "agent_reply": return [el("q", { text: e.text })];
      case "model_call": return [`${e.model}: ${e.input_tokens} in, ${e.output_tokens} out, ${Math.round(e.latency_ms)} ms`];
      case "tool_call": return [el("code", { class: "tool", text: e.tool }), " ", el("code", { class: "args", text: json(e.args) }), e.reason ? ` — ${e.reason}` : ""];
      case "tool_started": return [el("code", { class: "tool", text: e.tool }), " started"];
      case "tool_result": return [el("code", { class: "tool", text: e.tool }), ` (${Math.round(e.duration_ms)} ms)`, el("pre", { text: e.output })];
      case "tool_error": return [el("code", { class: "tool", text: e.tool || "-" }), ` ${e.kind}: `, el("span", { class: "error", text: e.error })];
      case "approval_requested": return [`approval ${e.approval_id} for `, el("code", { class: "tool", text: e.tool }), " ", el("code", { class: "args", text: json(e.args) }), `; approvers ${e.approvers.join(", ")}`];
      case "approval_decided": return [`approval ${e.approval_id}: ${e.decision === "approve" ? "approved" : "rejected"} by ${e.actor}${e.comment ? `: ${e.comment}` : ""}`];
      case "human_question": case "escalated": return [el("q", { text: e.question || e.reason })];
      case "paused": return [`paused${e.reason ? `: ${e.reason}` : ""}`];
      case "resumed": return ["resumed"];
      case "failed": return [el("span", { class: "error", text: e.error })];
      case "delivery_failed": return [el("span", { class: "error", text: `could not deliver ${e.outbound_kind} on ${e.channel}: ${e.error}` })];
      default: return [JSON.stringify(e)];
    }
  }

  async function openThread(threadId, at) {
    const query = at ? `?at=${at}` : "";
    let data;
    try { data = await api("GET", `/v1/threads/${encodeURIComponent(threadId)}${query}`); } catch (error) { toast(error.message); return; }
    state.thread = data;
    state.at = data.at;
    $("#thread-id").textContent = threadId;
    $("#thread-status").textContent = data.thread.status;
    $("#thread-status").className = `status ${data.thread.status}`;
    $("#pause-thread").hidden = data.thread.paused;
    $("#resume-thread").hidden = !data.thread.paused;
    $("#timeline").replaceChildren(...data.events.map((e, index) => el("li",
      { class: `event ${e.type}${["tool_error", "failed", "delivery_failed"].includes(e.type) ? " bad" : ""}`, "data-seq": String(index + 1) },
      el("span", { class: "seq", text: String(index + 1) }),
      el("span", { class: "time", text: when(e.at).slice(11, 19) }),
      el("span", { class: "type", text: e.type }),
      el("span", { class: "actor", text: e.actor }),
      el("span", { class: "what" }, describe(e)))));
    const slider = $("#step");
    slider.max = String(data.events.length);
    showState(data);
  }

  function showState(data) {
    $("#step").value = String(data.at);
    $("#step-label").textContent = `as of event ${data.at} of ${data.events.length}`;
    for (const item of document.querySelectorAll("#timeline .event")) {
      const seq = Number(item.dataset.seq);
      item.classList.toggle("future", seq > data.at);
      item.classList.toggle("current", seq === data.at);
    }
    const s = data.state;
    const rows = [
      ["status", s.paused ? `paused (${s.status})` : s.status],
      ["requester", s.requester], ["last actor", s.last_actor || "-"],
      ["pending approval", s.pending_approval ? `${s.pending_approval.approval_id} (${s.pending_approval.tool})` : "-"],
      ["question", s.pending_question || "-"],
      ["steps", `${s.steps} (this turn ${s.turn_steps})`], ["errors in a row", String(s.consecutive_errors)],
      ["last outcome", s.last_outcome || "-"], ["updated", when(s.updated_at)],
    ];
    $("#state").replaceChildren(el("h3", { text: `State as of event ${data.at}` }),
      el("dl", {}, rows.map(([name, value]) => [el("dt", { text: name }), el("dd", { class: `state-${name.replace(/ /g, "-")}`, text: value })])));
  }

  async function step(to) {
    if (!state.thread) return;
    const at = Math.min(Math.max(1, to), state.thread.events.length);
    const data = await api("GET", `/v1/threads/${encodeURIComponent(state.thread.thread.thread_id)}?at=${at}`).catch((error) => toast(error.message));
    if (data) { state.thread = data; state.at = data.at; showState(data); }
  }

  async function control(action) {
    const id = state.thread.thread.thread_id;
    try {
      await api("POST", `/v1/threads/${encodeURIComponent(id)}/${action}`);
      toast(`${action} sent`, "info");
      setTimeout(() => openThread(id), 1000);
    } catch (error) { toast(error.message); }
  }

  // --- wiring --------------------------------------------------------------------------------------

  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await signIn($("#token-input").value.trim())) route();
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#message");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    say(state.identity, "me", el("pre", { class: "text", text }));
    try {
      await state.ready;
      await api("POST", "/web/messages", { conversation: state.conversation, text });
    } catch (error) {
      say("console", "notice error", el("pre", { class: "text", text: `not sent: ${error.message}` }));
    }
  });
  $("#new-conversation").addEventListener("click", () => startChat(null));
  $("#refresh-approvals").addEventListener("click", refreshApprovals);
  $("#approval-status").addEventListener("change", refreshApprovals);
  $("#refresh-threads").addEventListener("click", refreshThreads);
  $("#refresh-thread").addEventListener("click", () => state.thread && openThread(state.thread.thread.thread_id));
  $("#pause-thread").addEventListener("click", () => control("pause"));
  $("#resume-thread").addEventListener("click", () => control("resume"));
  $("#step").addEventListener("change", (event) => step(Number(event.target.value)));
  $("#step-first").addEventListener("click", () => step(1));
  $("#step-prev").addEventListener("click", () => step(state.at - 1));
  $("#step-next").addEventListener("click", () => step(state.at + 1));
  $("#step-last").addEventListener("click", () => step(state.thread ? state.thread.events.length : 1));
  window.addEventListener("hashchange", route);

  const token = takeTokenFromUrl();
  if (token) signIn(token).then((ok) => (ok ? route() : show("signin")));
  else show("signin");
})();
