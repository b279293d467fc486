// The web client: wires the API, the socket and the views together and holds the state they
// share (conversations by id, one Timeline per opened conversation).

import {Api} from "./api.js";
import {$} from "./dom.js";
import {MediaUrls, upload} from "./media.js";
import {Sequencer} from "./sequencer.js";
import {ChatSocket} from "./socket.js";
import {Timeline} from "./timeline.js";
import {ChatView} from "./ui/chat.js";
import {ConversationList} from "./ui/conversations.js";
import {LoginView, describe} from "./ui/login.js";
import {Users} from "./users.js";

const PAGE = 30;                  // messages per history page
const LIST_PAGE = 100;            // conversations per list page
const CHANGES = new Set(["member_added", "member_removed", "role_changed", "title_changed"]);

// The page's own directory ("/" or "/prefix/"): API and socket URLs are relative to it, so the
// client works wherever the gateway is mounted.
const BASE = new URL(".", location.href);
const WS_URL = new URL("v1/ws", BASE);
WS_URL.protocol = location.protocol === "https:" ? "wss:" : "ws:";

// A client_msg_id. crypto.randomUUID exists only on https and localhost pages.
function newId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "w-" + [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

class App {
  constructor() {
    this.api = new Api(BASE);
    this.users = new Users(this.api);
    this.media = new MediaUrls(this.api);
    this.login = new LoginView(this.api, () => this.enter());
    this.convs = new Map();         // cid -> conversation (GET /v1/conversations item)
    this.timelines = new Map();     // cid -> Timeline
    this.openCid = null;
    this.listCursor = null;
    this.socket = null;
    this.seq = null;
    this.drafts = new Map();        // client_msg_id -> {cid, body, attachments, file}: until acknowledged
    this.fetching = new Map();      // cid -> Promise of GET /v1/conversations/{cid}
    this.early = new Map();         // cid -> events that arrived before the conversation was known
    this._renderQueued = false;

    this.list = new ConversationList({
      names: (c) => this.nameOf(c), peer: (c) => this.peerOf(c), presence: (u) => this.users.presence.get(u),
      me: () => this.api.userId, onOpen: (cid) => this.open(cid),
    });
    this.chat = new ChatView({
      send: (text) => this.sendText(text), attach: (file, caption) => this.sendImage(file, caption),
      typing: (cid, on) => this.socket?.typing(cid, on), older: () => this.older(),
      back: () => this.closeChat(), retry: (id) => this.retry(id), name: (u) => this.users.name(u),
      me: () => this.api.userId, mediaUrl: (id) => this.media.url(id), forgetMedia: (id) => this.media.forget(id),
    });

    this.api.addEventListener("signedout", () => this.leave());
    this.users.addEventListener("change", (e) => { this.renderList(); this.chat.renamed(e.detail); this.header(); });
    this.users.addEventListener("presence", () => { this.renderList(); this.header(); });
    $("logout").addEventListener("click", () => this.api.logout());
    $("list-more").addEventListener("click", () => this.loadConversations(this.listCursor));
    $("new-form").addEventListener("submit", (e) => { e.preventDefault(); this.startConversation(); });
    document.addEventListener("visibilitychange", () => this.markRead());
    window.addEventListener("hashchange", () => this.followHash());
  }

  boot() {
    if (this.api.session) this.enter();
    else this.login.show();
  }

  // ---- session ------------------------------------------------------------------------
  async enter() {
    this.login.hide();
    $("chat-app").hidden = false;
    const me = this.api.userId;
    this.users.load(me).then((p) => { $("me").textContent = p ? `@${p.username}` : ""; });
    this.seq = new Sequencer();
    this.socket = new ChatSocket(this.api, WS_URL.href, this.seq);
    this.socket.addEventListener("event", (e) => this.onEvent(e.detail));
    this.socket.addEventListener("typing", (e) => this.onTyping(e.detail));
    this.socket.addEventListener("receipt", (e) => this.onReceipt(e.detail));
    this.socket.addEventListener("presence", (e) => this.users.setPresence(e.detail.user_id, e.detail));
    this.socket.addEventListener("status", (e) => this.connection(e.detail));
    this.socket.addEventListener("failed", (e) => this.onFailed(e.detail));
    try {
      await this.loadConversations(null);
    } catch (err) {
      this.chat.showError(describe(err));
    }
    // After the list: `hello` then resumes each listed conversation from its last_seq.
    this.socket.start();
    this.followHash();
  }

  leave() {
    this.socket?.stop();
    this.socket = null;
    for (const m of [this.convs, this.timelines, this.drafts, this.early, this.fetching]) m.clear();
    this.openCid = null;
    this.chat.close();
    this.list.render([], null);
    $("chat-app").hidden = true;
    history.replaceState(null, "", location.pathname + location.search);
    this.login.show();
  }

  connection(status) {
    $("connection").textContent = status === "online" ? "" : status === "connecting" ? "connecting…" : "offline";
  }

  // ---- conversations ------------------------------------------------------------------
  async loadConversations(cursor) {
    const q = `v1/conversations?limit=${LIST_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page = await this.api.get(q);
    for (const conv of page.conversations) this.remember(conv);
    this.listCursor = page.next_cursor;
    $("list-more").hidden = !page.next_cursor;
    const peers = page.conversations.map((c) => this.peerOf(c)).filter(Boolean);
    this.users.loadPresence(peers).catch(() => {});
    this.renderList();
  }

  remember(conv) {
    conv.read_seq ??= conv.last_seq;
    conv.unread_count ??= 0;
    this.convs.set(conv.conversation_id, conv);
    for (const ev of this.seq.start(conv.conversation_id, conv.last_seq)) this.onEvent(ev);
    for (const uid of conv.members) if (uid !== this.api.userId) this.users.load(uid);
  }

  fetchConversation(cid) {
    if (!this.fetching.has(cid)) {
      this.fetching.set(cid, this._fetchConversation(cid).finally(() => this.fetching.delete(cid)));
    }
    return this.fetching.get(cid);
  }

  async _fetchConversation(cid) {
    try {
      const conv = await this.api.get(`v1/conversations/${encodeURIComponent(cid)}`);
      const known = this.convs.get(cid);
      if (known) Object.assign(known, {title: conv.title, members: conv.members, roles: conv.roles});
      else {
        this.remember(conv);
        // The answer counts the events up to its last_seq (the store may lag behind the socket);
        // the ones after it are counted here.
        for (const ev of this.early.get(cid) || []) if (ev.seq > conv.last_seq) this._track(conv, ev);
      }
      this.early.delete(cid);
      const peer = this.peerOf(conv);
      if (peer) this.users.loadPresence([peer]).catch(() => {});
      this.renderList();
      this.header();
      return this.convs.get(cid);
    } catch (err) {
      if (err.code === "not_found") this.forget(cid);
      return null;
    }
  }

  forget(cid) {
    this.convs.delete(cid);
    this.timelines.delete(cid);
    if (this.openCid === cid) this.closeChat();
    this.renderList();
  }

  peerOf(conv) {
    return conv.kind === "direct" ? conv.members.find((u) => u !== this.api.userId) ?? null : null;
  }

  nameOf(conv) {
    if (conv.kind === "group") {
      return conv.title || conv.members.filter((u) => u !== this.api.userId).map((u) => this.users.name(u)).join(", ");
    }
    const peer = this.peerOf(conv);
    return peer ? this.users.name(peer) : "Just you";
  }

  renderList() {
    if (this._renderQueued) return;
    this._renderQueued = true;
    requestAnimationFrame(() => {
      this._renderQueued = false;
      const sorted = [...this.convs.values()].sort((a, b) =>
        (b.last_activity_at || "").localeCompare(a.last_activity_at || ""));
      this.list.render(sorted, this.openCid);
    });
  }

  async startConversation() {
    const names = $("new-usernames").value.split(/[\s,]+/).map((n) => n.replace(/^@/, "")).filter(Boolean);
    const title = $("new-title").value.trim();
    const error = $("new-error");
    error.textContent = "";
    if (!names.length) return;
    try {
      const ids = [];
      for (const name of names) {
        try {
          ids.push((await this.users.byUsername(name)).user_id);
        } catch (err) {
          throw err.code === "not_found" ? new Error(`No user is called ${name}.`)
            : err.code === "invalid" ? new Error(`"${name}" is not a valid username.`) : err;
        }
      }
      const direct = ids.length === 1 && !title;
      const body = direct ? {kind: "direct", members: ids}
        : {kind: "group", title: title || names.join(", "), members: ids};
      const conv = await this.api.post("v1/conversations", body);
      if (!this.convs.has(conv.conversation_id)) this.remember(conv);
      const peer = this.peerOf(conv);
      if (peer) this.users.loadPresence([peer]).catch(() => {});
      $("new-form").reset();
      $("new-conversation").open = false;
      this.renderList();
      this.open(conv.conversation_id);
    } catch (err) {
      error.textContent = err instanceof Error && !err.code ? err.message : describe(err);
    }
  }

  // ---- the open conversation ----------------------------------------------------------
  followHash() {
    const cid = new URLSearchParams(location.hash.slice(1)).get("c");
    if (cid && cid !== this.openCid && this.socket) this.open(cid);
  }

  async open(cid) {
    let conv = this.convs.get(cid) || await this.fetchConversation(cid);
    if (!conv) return;
    this.openCid = cid;
    if (new URLSearchParams(location.hash.slice(1)).get("c") !== cid) location.hash = `c=${encodeURIComponent(cid)}`;
    document.body.classList.add("chat-open");
    let timeline = this.timelines.get(cid);
    if (!timeline) {
      timeline = new Timeline();
      this.timelines.set(cid, timeline);
      try {
        timeline.addPage(await this.api.get(`v1/conversations/${encodeURIComponent(cid)}/messages?limit=${PAGE}`));
      } catch (err) {
        this.chat.showError(describe(err));
      }
      if (this.openCid !== cid) return;     // another one was opened meanwhile
    }
    this.chat.open(cid, timeline, {title: this.nameOf(conv), group: conv.kind === "group"});
    this.header();
    this.markRead();
    this.renderList();
  }

  closeChat() {
    this.openCid = null;
    this.chat.close();
    document.body.classList.remove("chat-open");
    history.replaceState(null, "", location.pathname + location.search);
    this.renderList();
  }

  header() {
    const conv = this.convs.get(this.openCid);
    if (!conv) return;
    const peer = this.peerOf(conv);
    let status = "";
    if (peer) {
      const p = this.users.presence.get(peer);
      status = p?.status === "online" ? "online" : p?.last_seen ? `last seen ${new Date(p.last_seen).toLocaleString()}`
        : "offline";
    } else if (conv.kind === "group") {
      status = `${conv.members.length} members`;
    }
    this.chat.setHeader(this.nameOf(conv), status);
  }

  async older() {
    const cid = this.openCid;
    const timeline = this.timelines.get(cid);
    if (!timeline?.hasMore || timeline.oldest === null) return;
    const page = await this.api.get(
      `v1/conversations/${encodeURIComponent(cid)}/messages?limit=${PAGE}&before_seq=${timeline.oldest}`);
    const added = timeline.addPage(page);
    if (this.openCid === cid) this.chat.prepended(added);
  }

  // Everything up to last_seq is read once the reader can see it.
  markRead() {
    const conv = this.convs.get(this.openCid);
    if (!conv || document.visibilityState !== "visible" || conv.last_seq <= (conv.read_seq || 0)) return;
    conv.read_seq = conv.last_seq;
    conv.unread_count = 0;
    const cid = conv.conversation_id;
    if (!this.socket?.read(cid, conv.last_seq)) {
      this.api.post(`v1/conversations/${encodeURIComponent(cid)}/read`, {seq: conv.last_seq}).catch(() => {});
    }
    this.renderList();
  }

  // ---- sending ------------------------------------------------------------------------
  sendText(text) {
    this.dispatch({cid: this.openCid, body: text, attachments: []});
  }

  sendImage(file, caption) {
    if (!file.type.startsWith("image/")) {
      this.chat.showError("Only images can be attached here.");
      return;
    }
    const id = newId();
    const pending = this.timelines.get(this.openCid).addPending(id, caption, []);
    pending.file = file.name;
    this.chat.addPending(pending);
    this.uploadThenSend({cid: this.openCid, body: caption, attachments: [], file: file.name, blob: file}, id, pending);
  }

  async uploadThenSend(draft, id, pending) {
    const show = () => { if (this.chat.cid === draft.cid) this.chat.updatePending(pending); };
    this.drafts.set(id, draft);
    Object.assign(pending, {state: "uploading", error: null});
    show();
    try {
      draft.attachments = [await upload(this.api, draft.blob)];
    } catch (err) {
      Object.assign(pending, {state: "failed", error: err.code ? describe(err) : err.message});
      show();
      return;
    }
    delete draft.blob;          // uploaded: a retry from here on only sends again
    this.dispatch(draft, id, pending);
  }

  dispatch(draft, id = newId(), pending = null) {
    const timeline = this.timelines.get(draft.cid);
    if (!pending) {
      pending = timeline.addPending(id, draft.body, draft.attachments);
      pending.file = draft.file;
      if (this.chat.cid === draft.cid) this.chat.addPending(pending);
    }
    Object.assign(pending, {state: "sending", error: null, attachments: draft.attachments});
    if (this.chat.cid === draft.cid) this.chat.updatePending(pending);
    this.drafts.set(id, draft);
    this.socket.send(draft.cid, id, draft.body, draft.attachments).then(
      () => this.drafts.delete(id),
      (f) => {
        Object.assign(pending, {state: "failed", error: f.message || f.code || "refused"});
        if (this.chat.cid === draft.cid) this.chat.updatePending(pending);
      });
  }

  retry(id) {
    const draft = this.drafts.get(id);
    const pending = this.timelines.get(draft?.cid)?.pending.get(id);
    if (!draft || !pending) return;
    if (draft.blob) this.uploadThenSend(draft, id, pending);
    else this.dispatch(draft, id, pending);
  }

  // ---- what the socket brings ---------------------------------------------------------
  onEvent(ev) {
    const cid = ev.conversation_id;
    const me = this.api.userId;
    const conv = this.convs.get(cid);
    if (!conv) {
      // Added to a conversation since the list was read: fetch it, and keep the event until then.
      if (!this.early.has(cid)) this.early.set(cid, []);
      this.early.get(cid).push(ev);
      this.fetchConversation(cid);
    } else {
      this._track(conv, ev);
    }
    const timeline = this.timelines.get(cid);
    if (timeline) {
      const {added, changed, confirmed} = timeline.apply(ev, me);
      if (confirmed) this.drafts.delete(confirmed);
      if (this.chat.cid === cid) {      // drawn only once the view shows this timeline
        if (confirmed) this.chat.confirmed(confirmed);
        if (added.length) this.chat.added(added, {announce: true});
        if (changed.length) this.chat.changed(changed);
      }
    }
  }

  // What the conversation list shows of an event: activity, last message, unread count.
  _track(conv, ev) {
    const me = this.api.userId;
    conv.last_seq = Math.max(conv.last_seq, ev.seq);
    conv.last_activity_at = ev.created_at;
    if (ev.kind === "message") {
      conv.last_message = {seq: ev.seq, sender_id: ev.sender_id, kind: ev.kind,
        body: (ev.body || "").slice(0, 200), created_at: ev.created_at};
      if (ev.sender_id === me) conv.read_seq = ev.seq;       // one's own messages are read
      else conv.unread_count = (conv.unread_count || 0) + 1;
    }
    // An edit or delete of the newest message changes the preview, as the server's list does.
    if ((ev.kind === "edit" || ev.kind === "delete") && conv.last_message?.seq === ev.target_seq) {
      conv.last_message = ev.kind === "delete"
        ? {...conv.last_message, body: null, deleted: true}
        : {...conv.last_message, body: (ev.body || "").slice(0, 200)};
    }
    if (CHANGES.has(ev.kind)) {
      if (ev.kind === "member_removed" && ev.user_ids?.includes(me)) this.forget(conv.conversation_id);
      else this.fetchConversation(conv.conversation_id);
    }
    if (this.openCid === conv.conversation_id) this.markRead();
    this.renderList();
  }

  // This user read on another device (or this one): what was read there is read here too.
  onReceipt(f) {
    const conv = f.user_id === this.api.userId && this.convs.get(f.conversation_id);
    if (!conv || f.seq <= (conv.read_seq || 0)) return;
    conv.read_seq = f.seq;
    if (f.seq >= conv.last_seq) conv.unread_count = 0;
    this.renderList();
  }

  onTyping(f) {
    if (f.conversation_id === this.openCid && f.user_id !== this.api.userId) this.chat.typist(f.user_id, f.on);
  }

  // An error frame that answers no send: about a conversation (a `since` entry or a `read` of one
  // the user was removed from is not_found), or about the socket itself.
  onFailed(f) {
    if (f.code === "not_found" && this.convs.has(f.ref)) this.forget(f.ref);
    else if (f.ref && f.ref === this.openCid) this.chat.showError(f.message);
  }
}

new App().boot();
