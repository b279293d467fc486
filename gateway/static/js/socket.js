// The WebSocket to /v1/ws (docs/protocol.md, "WebSocket"): one per tab, reconnected for ever.
//
// - `hello` carries the last seq of every known conversation, so a reconnect gets exactly
//   the events it missed; the Sequencer drops repeats and holds events past a gap until a
//   `sync` fills it.
// - Sends keep their client_msg_id until acknowledged and are sent again after a reconnect:
//   the server stores a retried send once (Guarantee 3).
// - Before the access token expires, Api refreshes it and the new one goes out in an `auth`
//   frame, so the socket is not closed at the old token's expiry.
// - Reconnects back off exponentially with jitter, so a restarted server is not stampeded.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const PING_EVERY_MS = 25_000;       // keeps idle proxies from cutting the socket, and finds dead ones
const PONG_WAIT_MS = 10_000;
const RETRYABLE = new Set(["rate_limited", "unavailable"]);     // the rest: retrying cannot help

export function backoff(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

export class ChatSocket extends EventTarget {
  // Events: "event" (a conversation event, in order), "typing", "presence", "receipt",
  // "status" (detail: "connecting" | "online" | "offline"), "failed" (detail: an error frame).
  constructor(api, url, sequencer) {
    super();
    this.api = api;
    this.url = url;
    this.seq = sequencer;
    this.ws = null;
    this.live = false;            // welcome received on the current socket
    this.stopped = true;
    this.attempt = 0;
    this.unauthorized = false;    // the server said the token is no good (expired, revoked)
    this.sends = new Map();       // client_msg_id -> {frame, resolve, reject, timer}
    this._pingTimer = null;
    this._pongTimer = null;
    this._retryTimer = null;
    this._onToken = (e) => this._frame({type: "auth", token: e.detail});
    this._onOnline = () => { if (!this.ws) this._connectNow(); };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.api.addEventListener("token", this._onToken);
    window.addEventListener("online", this._onOnline);
    this._connect();
  }

  stop() {
    this.stopped = true;
    this.api.removeEventListener("token", this._onToken);
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._retryTimer);
    this._stopPing();
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this.live = false;
    for (const s of this.sends.values()) s.reject(new Error("signed out"));
    this.sends.clear();
  }

  // Send a message; resolves with its ack, or rejects with the error frame of a refusal that
  // retrying cannot fix (invalid, forbidden, too_large...). Waits through reconnects.
  send(conversationId, clientMsgId, body, attachments = []) {
    return new Promise((resolve, reject) => {
      const frame = {type: "send", conversation_id: conversationId, client_msg_id: clientMsgId, body};
      if (attachments.length) frame.attachments = attachments;
      this.sends.set(clientMsgId, {frame, resolve, reject, timer: null});
      if (this.live) this._frame(frame);
    });
  }

  typing(conversationId, on) {
    return this._frame({type: "typing", conversation_id: conversationId, on});
  }

  read(conversationId, seq) {
    return this._frame({type: "read", conversation_id: conversationId, seq});
  }

  // Ask for the events after `afterSeq` again (a gap, or a conversation just learned of).
  sync(conversationId, afterSeq) {
    return this._frame({type: "sync", conversation_id: conversationId, after_seq: afterSeq});
  }

  _frame(frame) {
    if (!this.live || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  _status(status) {
    this.dispatchEvent(new CustomEvent("status", {detail: status}));
  }

  _connectNow() {
    clearTimeout(this._retryTimer);
    this.attempt = 0;
    this._connect();
  }

  async _connect() {
    if (this.stopped || this.ws) return;
    this._status("connecting");
    let token;
    try {
      token = await this.api.token();
    } catch (err) {
      if (err.status === 401) return;       // signed out: Api has said so
      return this._retry();
    }
    if (this.stopped || this.ws) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.seq.reset();
    ws.onopen = () => ws.send(JSON.stringify({type: "hello", token, since: this.seq.since()}));
    ws.onmessage = (m) => this._receive(m.data);
    ws.onclose = (e) => this._closed(ws, e);
  }

  _closed(ws, event) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.live = false;
    this._stopPing();
    if (this.stopped) return;
    this._status("offline");
    if (event.code === 1008 && (this.unauthorized || String(event.reason).startsWith("unauthorized"))) {
      // The token expired or was refused: a new one first. A refresh that fails with 401 signs
      // the user out (Api's "signedout"); other failures retry. Other 1008s (too many sockets,
      // too many invalid frames) only wait their backoff: a refresh would not help them.
      this.unauthorized = false;
      this.api.refresh().then(() => this._retry(), (err) => { if (err.status !== 401) this._retry(); });
      return;
    }
    this._retry();
  }

  _retry() {
    if (this.stopped) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), backoff(this.attempt++));
  }

  _receive(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    switch (f.type) {
      case "welcome":
        this.live = true;
        this.attempt = 0;
        this._status("online");
        this._startPing();
        for (const s of this.sends.values()) this._frame(s.frame);   // unacknowledged: send again
        break;
      case "event": {
        const {deliver, syncAfter} = this.seq.offer(f);
        if (syncAfter !== null) this.sync(f.conversation_id, syncAfter);
        for (const ev of deliver) this.dispatchEvent(new CustomEvent("event", {detail: ev}));
        break;
      }
      case "ack":
        this._settle(f.client_msg_id, (s) => s.resolve(f));
        break;
      case "error":
        this._error(f);
        break;
      case "pong":
        clearTimeout(this._pongTimer);
        break;
      case "typing":
      case "presence":
      case "receipt":
        this.dispatchEvent(new CustomEvent(f.type, {detail: f}));
        break;
      default:            // authed, and frames added later
        break;
    }
  }

  _error(f) {
    if (f.code === "unauthorized") this.unauthorized = true;      // the close that follows needs a token
    const pending = f.ref && this.sends.get(f.ref);
    if (!pending) {
      this.dispatchEvent(new CustomEvent("failed", {detail: f}));
      return;
    }
    if (RETRYABLE.has(f.code)) {
      // Same client_msg_id again later: stored once whatever happened to the first try.
      clearTimeout(pending.timer);
      pending.timer = setTimeout(() => this._frame(pending.frame), f.retry_after_ms ?? 1000);
      return;
    }
    this._settle(f.ref, (s) => s.reject(f));
  }

  _settle(clientMsgId, fn) {
    const s = this.sends.get(clientMsgId);
    if (!s) return;
    clearTimeout(s.timer);
    this.sends.delete(clientMsgId);
    fn(s);
  }

  _startPing() {
    this._stopPing();
    this._pingTimer = setInterval(() => {
      if (!this._frame({type: "ping"})) return;
      clearTimeout(this._pongTimer);
      this._pongTimer = setTimeout(() => {
        // A dead network may take minutes to say so: give up on this socket now.
        const dead = this.ws;
        this._closed(dead, {code: 1006});
        dead?.close(4000, "no pong");
      }, PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
  }
}
