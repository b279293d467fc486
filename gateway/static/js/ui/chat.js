// The open conversation: messages (older pages on scroll-back), who is typing, the composer.

import {$, h, shortTime} from "../dom.js";

const NEAR_BOTTOM_PX = 80;
const TYPING_REPEAT_MS = 3_000;   // the server drops a typist 5 s after their last typing frame
const TYPING_IDLE_MS = 4_000;
const TYPING_SHOWN_MS = 6_000;    // a typing frame lost on the way is forgotten after this

export class ChatView {
  // hooks: send(text), attach(file, caption), typing(cid, on), older(), back(), retry(clientMsgId),
  // name(userId), me(), mediaUrl(mediaId), forgetMedia(mediaId)
  constructor(hooks) {
    this.hooks = hooks;
    this.cid = null;
    this.timeline = null;
    this.group = false;
    this.nodes = new Map();         // seq -> <li>
    this.pendingNodes = new Map();  // client_msg_id -> <li>
    this.typists = new Map();       // user_id -> timer
    this.loadingOlder = false;
    this.typingOn = false;
    this.typingSentAt = 0;
    this.idleTimer = null;

    this.title = $("chat-title");
    this.status = $("chat-status");
    this.scroller = $("scroller");
    this.list = $("messages");
    this.olderButton = $("older");
    this.typingLine = $("typing");
    this.composer = $("composer");
    this.text = $("composer-text");
    this.file = $("composer-file");
    this.error = $("chat-error");
    this.announcer = $("announcer");

    this.composer.addEventListener("submit", (e) => { e.preventDefault(); this._submit(); });
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this._submit(); }
    });
    this.text.addEventListener("input", () => this._typed());
    this.text.addEventListener("blur", () => this._stopTyping());
    this.file.addEventListener("change", () => {
      const file = this.file.files[0];
      this.file.value = "";
      if (file) this.hooks.attach(file, this._takeText());
    });
    this.olderButton.addEventListener("click", () => this._older());
    $("back").addEventListener("click", () => this.hooks.back());
    // Reaching the top of the list loads the page before it, as the button does.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this._older();
    }, {root: this.scroller});
    this.observer.observe(this.olderButton);
  }

  open(cid, timeline, {title, group}) {
    this._stopTyping();
    this.cid = cid;
    this.timeline = timeline;
    this.group = group;
    this.nodes.clear();
    this.pendingNodes.clear();
    for (const t of this.typists.values()) clearTimeout(t);
    this.typists.clear();
    this.list.replaceChildren();
    this.typingLine.textContent = "";
    this.error.textContent = "";
    this.composer.hidden = false;
    this.setHeader(title, "");
    for (const m of timeline.sorted()) this._insert(m);
    for (const p of timeline.pending.values()) this.addPending(p);
    this._olderState();
    this._toBottom();
    this.text.focus();
  }

  close() {
    this._stopTyping();
    this.cid = null;
    this.timeline = null;
    this.nodes.clear();
    this.pendingNodes.clear();
    this.list.replaceChildren();
    this.composer.hidden = true;
    this.olderButton.hidden = true;
    this.typingLine.textContent = "";
    this.setHeader("Pick a conversation", "");
  }

  setHeader(title, status) {
    this.title.textContent = title;
    this.status.textContent = status;
  }

  showError(text) {
    this.error.textContent = text;
  }

  // Messages that arrived (live or from a page): inserted in seq order.
  added(seqs, {announce = false} = {}) {
    const stick = this._nearBottom();
    for (const seq of seqs) {
      const m = this.timeline.items.get(seq);
      this._insert(m);
      if (announce && m.sender_id !== this.hooks.me()) {
        this.announcer.append(h("p", {}, `${this.hooks.name(m.sender_id)}: ${m.body || "sent an image"}`));
        while (this.announcer.childNodes.length > 5) this.announcer.firstChild.remove();
        this.typist(m.sender_id, false);
      }
    }
    if (stick || seqs.some((s) => this.timeline.items.get(s).sender_id === this.hooks.me())) this._toBottom();
  }

  changed(seqs) {
    for (const seq of seqs) {
      const old = this.nodes.get(seq);
      if (!old) continue;
      const node = this._message(this.timeline.items.get(seq));
      old.replaceWith(node);
      this.nodes.set(seq, node);
    }
  }

  // An older page: prepended without moving what the reader is looking at.
  prepended(seqs) {
    const height = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    for (const seq of seqs) this._insert(this.timeline.items.get(seq));
    this._olderState();         // before measuring: a button that goes away moves the list too
    this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
  }

  addPending(p) {
    const node = this._pending(p);
    this.pendingNodes.set(p.client_msg_id, node);
    this.list.append(node);
    this._toBottom();
  }

  updatePending(p) {
    const old = this.pendingNodes.get(p.client_msg_id);
    if (!old) return;
    const node = this._pending(p);
    old.replaceWith(node);
    this.pendingNodes.set(p.client_msg_id, node);
  }

  confirmed(clientMsgId) {
    this.pendingNodes.get(clientMsgId)?.remove();
    this.pendingNodes.delete(clientMsgId);
  }

  // Someone started (on) or stopped typing here.
  typist(userId, on) {
    clearTimeout(this.typists.get(userId));
    this.typists.delete(userId);
    if (on) this.typists.set(userId, setTimeout(() => this.typist(userId, false), TYPING_SHOWN_MS));
    const names = [...this.typists.keys()].map((u) => this.hooks.name(u));
    this.typingLine.textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
  }

  // A user's profile came in: redraw what shows their name.
  renamed(userId) {
    if (!this.timeline) return;
    this.changed([...this.nodes.entries()].filter(([, n]) => n.dataset.sender === userId).map(([seq]) => seq));
    if (this.typists.has(userId)) this.typist(userId, true);
  }

  _insert(m) {
    if (this.nodes.has(m.seq)) return;
    const node = this._message(m);
    this.nodes.set(m.seq, node);
    const next = this.timeline.nextAfter(m.seq);
    const before = next !== null ? this.nodes.get(next) : null;
    // Pending sends stay last: they have no seq yet.
    this.list.insertBefore(node, before || this.list.querySelector(".pending"));
  }

  _message(m) {
    const mine = m.sender_id === this.hooks.me();
    const sender = mine ? "You" : this.hooks.name(m.sender_id);
    const body = m.deleted ? h("p", {class: "body deleted"}, "Message deleted")
      : m.body ? h("p", {class: "body"}, m.body) : null;
    const reactions = Object.entries(m.reactions || {});
    return h("li", {class: `msg ${mine ? "mine" : "theirs"}`, dataset: {seq: m.seq, sender: m.sender_id}},
      h("div", {class: "bubble"},
        this.group && !mine ? h("span", {class: "sender"}, sender) : null,
        body,
        m.attachments.length ? h("div", {class: "attachments"}, m.attachments.map((id) => this._image(id, sender)))
          : null,
        reactions.length ? h("span", {class: "reactions"}, reactions.map(([e, n]) => `${e} ${n}`).join("  ")) : null,
        h("span", {class: "meta"},
          h("time", {datetime: m.created_at}, shortTime(m.created_at)),
          m.edited_at && !m.deleted ? " · edited" : null)));
  }

  _pending(p) {
    const failed = p.state === "failed";
    return h("li", {class: `msg mine pending${failed ? " failed" : ""}`, dataset: {pending: p.client_msg_id}},
      h("div", {class: "bubble"},
        p.body ? h("p", {class: "body"}, p.body) : null,
        p.file ? h("p", {class: "body muted"}, `Image: ${p.file}`) : null,
        h("span", {class: "meta"},
          failed ? `Not sent: ${p.error}` : (p.state === "uploading" ? "Uploading…" : "Sending…"),
          failed ? h("button", {type: "button", class: "link", onclick: () => this.hooks.retry(p.client_msg_id)},
            "Retry") : null)));
  }

  _image(mediaId, sender) {
    const img = h("img", {alt: `Image from ${sender}`, class: "image", dataset: {media: mediaId}});
    let tries = 0;
    const load = () => this.hooks.mediaUrl(mediaId).then((url) => { img.src = url; }, () => failed());
    const failed = () => {
      // The URL may have expired: get a fresh one once, then say it is gone.
      this.hooks.forgetMedia(mediaId);
      if (tries++ < 1) load();
      else img.replaceWith(h("span", {class: "muted small"}, "Image unavailable"));
    };
    img.addEventListener("error", failed);
    img.addEventListener("load", () => { if (this._nearBottom(img.height + NEAR_BOTTOM_PX)) this._toBottom(); });
    load();
    return img;
  }

  async _older() {
    if (this.loadingOlder || !this.timeline?.hasMore || this.olderButton.hidden) return;
    this.loadingOlder = true;
    this.olderButton.textContent = "Loading…";
    try {
      await this.hooks.older();
    } finally {
      this.loadingOlder = false;
      this.olderButton.textContent = "Load older messages";
      this._olderState();
    }
  }

  _olderState() {
    this.olderButton.hidden = !this.timeline?.hasMore;
  }

  _submit() {
    const text = this._takeText();
    if (!text.trim()) return;
    this.hooks.send(text);
  }

  _takeText() {
    const text = this.text.value;
    this.text.value = "";
    this._stopTyping();
    return text;
  }

  _typed() {
    clearTimeout(this.idleTimer);
    if (!this.text.value.trim()) return this._stopTyping();
    const now = Date.now();
    if (!this.typingOn || now - this.typingSentAt > TYPING_REPEAT_MS) {
      this.typingOn = true;
      this.typingSentAt = now;
      this.hooks.typing(this.cid, true);
    }
    this.idleTimer = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  _stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.typingOn && this.cid) this.hooks.typing(this.cid, false);
    this.typingOn = false;
  }

  _nearBottom(margin = NEAR_BOTTOM_PX) {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < margin;
  }

  _toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
