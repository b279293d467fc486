// Per-conversation order of incoming events (docs/protocol.md, "Resume" and "Guarantees").
//
// Pure: no sockets, no DOM, so the rules are tested on their own. Each (conversation, seq) is
// delivered once and in seq order. An event past a gap is held back until the events before it
// arrive (the caller asks for them with a `sync` frame), so what the page shows never skips.

export class Sequencer {
  constructor() {
    this.last = new Map();      // cid -> highest seq delivered with nothing missing before it
    this.held = new Map();      // cid -> Map(seq -> event) waiting for a gap to fill
    this.asked = new Map();     // cid -> the after_seq of the sync already asked for
  }

  // Events up to `seq` are known already (the conversation list or history showed them).
  // Only ever moves forward: a stale list never makes old events deliverable twice. Answers
  // the held events this makes deliverable.
  start(cid, seq) {
    const last = this.last.get(cid);
    if (last === undefined || seq > last) this.last.set(cid, seq);
    return this._release(cid, []);
  }

  knows(cid) {
    return this.last.has(cid);
  }

  // The `since` of a `hello`: resume every known conversation from its last seq.
  since(limit = 1000) {
    return Object.fromEntries([...this.last.entries()].slice(-limit));
  }

  // Take one `event` frame. Answers the events now deliverable, in order, and `syncAfter`:
  // the seq to sync from when a gap was found (null when there is none or one is being filled).
  offer(event) {
    const cid = event.conversation_id;
    const seq = event.seq;
    const last = this.last.get(cid);
    if (last === undefined) {
      // A conversation this client never saw (it was just added to it): start from here; its
      // earlier events are history, read when it is opened.
      this.last.set(cid, seq);
      return {deliver: this._release(cid, [event]), syncAfter: null};
    }
    if (seq <= last) return {deliver: [], syncAfter: null};            // a repeat
    if (seq === last + 1) {
      this.last.set(cid, seq);
      return {deliver: this._release(cid, [event]), syncAfter: null};
    }
    let held = this.held.get(cid);
    if (!held) this.held.set(cid, (held = new Map()));
    held.set(seq, event);
    if (this.asked.get(cid) === last) return {deliver: [], syncAfter: null};
    this.asked.set(cid, last);
    return {deliver: [], syncAfter: last};
  }

  // A reconnect: nothing asked for on the old socket will be answered.
  reset() {
    this.asked.clear();
  }

  _release(cid, out) {
    const held = this.held.get(cid);
    let last = this.last.get(cid);
    if (held) {
      for (const seq of [...held.keys()].sort((a, b) => a - b)) {
        if (seq <= last) held.delete(seq);
        else if (seq === last + 1) {
          out.push(held.get(seq));
          held.delete(seq);
          last = seq;
        } else break;
      }
      if (held.size === 0) this.held.delete(cid);
      this.last.set(cid, last);
    }
    if (!this.held.has(cid)) this.asked.delete(cid);
    return out;
  }
}
