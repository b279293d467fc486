// One conversation's messages as the chat view shows them: history pages and live events merged
// by seq, edits and deletions applied, the user's own sends shown while they are in flight.
//
// Pure: no DOM, no network. History pages come with edits, deletions and reaction counts already
// applied (docs/protocol.md, "Stored messages carry their projections"); live events are applied
// here the same way.

export class Timeline {
  constructor() {
    this.items = new Map();     // seq -> message
    this.pending = new Map();   // client_msg_id -> {client_msg_id, body, attachments, state, error}
    this.hasMore = true;        // older messages may exist before the oldest one held
  }

  get oldest() {
    let min = null;
    for (const seq of this.items.keys()) if (min === null || seq < min) min = seq;
    return min;
  }

  get newest() {
    let max = null;
    for (const seq of this.items.keys()) if (max === null || seq > max) max = seq;
    return max;
  }

  // A page of GET .../messages (newest first). Answers the seqs added.
  addPage(page) {
    const added = [];
    for (const m of page.messages) {
      if (!this.items.has(m.seq)) {
        this.items.set(m.seq, toItem(m));
        added.push(m.seq);
      }
    }
    this.hasMore = page.has_more;
    return added;
  }

  // One live event, in seq order. Answers {added, changed, confirmed}: seqs to insert, seqs to
  // redraw, and the client_msg_id of an own send the event confirms.
  apply(event, me) {
    const out = {added: [], changed: [], confirmed: null};
    const target = this.items.get(event.target_seq);
    switch (event.kind) {
      case "message":
        if (!this.items.has(event.seq)) {
          this.items.set(event.seq, toItem(event));
          out.added.push(event.seq);
        }
        if (event.sender_id === me && this.pending.delete(event.client_msg_id)) out.confirmed = event.client_msg_id;
        break;
      case "edit":
        if (target && !target.deleted) {
          target.body = event.body;
          target.edited_at = event.created_at;
          out.changed.push(target.seq);
        }
        break;
      case "delete":
        if (target) {
          target.deleted = true;
          target.body = null;
          target.attachments = [];
          out.changed.push(target.seq);
        }
        break;
      case "reaction":
        // History counts every reaction stored before the page was read, so one that arrives
        // live while that page is in flight can be counted twice until the view is reopened.
        if (target && !target.deleted) {
          const n = (target.reactions[event.emoji] || 0) + (event.on ? 1 : -1);
          if (n > 0) target.reactions[event.emoji] = n;
          else delete target.reactions[event.emoji];
          out.changed.push(target.seq);
        }
        break;
      default:        // membership and title: the conversation list shows those
        break;
    }
    return out;
  }

  // Messages in seq order.
  sorted() {
    return [...this.items.values()].sort((a, b) => a.seq - b.seq);
  }

  // Where a new seq goes: the seq of the first message after it, or null at the end.
  nextAfter(seq) {
    let next = null;
    for (const s of this.items.keys()) if (s > seq && (next === null || s < next)) next = s;
    return next;
  }

  addPending(clientMsgId, body, attachments) {
    const p = {client_msg_id: clientMsgId, body, attachments, state: "sending", error: null};
    this.pending.set(clientMsgId, p);
    return p;
  }
}

function toItem(m) {
  return {
    seq: m.seq,
    sender_id: m.sender_id,
    client_msg_id: m.client_msg_id,
    body: m.deleted ? null : (m.body ?? ""),
    attachments: m.deleted ? [] : (m.attachments || []),
    created_at: m.created_at,
    edited_at: m.edited_at || null,
    deleted: !!m.deleted,
    reactions: {...(m.reactions || {})},
  };
}
