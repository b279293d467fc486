// The conversation list: most recently active first, with unread counts and, for direct
// conversations, whether the other person is online.

import {$, h, shortTime} from "../dom.js";

export class ConversationList {
  // `names(conv)` gives a conversation's name, `peer(conv)` the other member of a direct one.
  constructor({names, peer, presence, me, onOpen}) {
    this.names = names;
    this.peer = peer;
    this.presence = presence;
    this.me = me;
    this.onOpen = onOpen;
    this.list = $("conversation-list");
    this.empty = $("list-empty");
    this.nodes = new Map();       // cid -> <li>
  }

  render(conversations, selected) {
    const seen = new Set();
    let before = this.list.firstChild;
    for (const conv of conversations) {
      seen.add(conv.conversation_id);
      let li = this.nodes.get(conv.conversation_id);
      if (!li) {
        li = h("li", {dataset: {cid: conv.conversation_id}});
        this.nodes.set(conv.conversation_id, li);
      }
      // Redrawn on every change; a keyboard user's focus stays on the item it was on.
      const focused = li.contains(document.activeElement);
      const button = this._item(conv, conv.conversation_id === selected);
      li.replaceChildren(button);
      if (li !== before) this.list.insertBefore(li, before);
      else before = before.nextSibling;
      if (focused) button.focus();
    }
    for (const [cid, li] of this.nodes) {
      if (!seen.has(cid)) {
        li.remove();
        this.nodes.delete(cid);
      }
    }
    this.empty.hidden = conversations.length > 0;
  }

  _item(conv, selected) {
    const name = this.names(conv);
    const unread = conv.unread_count || 0;
    const peer = this.peer(conv);
    const online = peer && this.presence(peer)?.status === "online";
    const last = conv.last_message;
    let preview = "";
    if (last) {
      const who = last.sender_id === this.me() ? "You: " : "";
      preview = last.deleted ? "Message deleted"
        : who + (last.body ? last.body : (last.kind === "message" ? "Image" : ""));
    }
    // The button's accessible name is its text: name, whether online, preview, time, unread.
    return h("button", {
      type: "button", class: `conv${unread ? " unread" : ""}`, "aria-current": selected ? "true" : null,
      onclick: () => this.onOpen(conv.conversation_id),
    },
    h("span", {class: "avatar", "aria-hidden": "true"}, initial(name),
      peer ? h("span", {class: `dot ${online ? "online" : "offline"}`}) : null),
    h("span", {class: "conv-main"},
      h("span", {class: "conv-name"}, name),
      online ? h("span", {class: "visually-hidden"}, ", online, ") : null,
      h("span", {class: "conv-last"}, preview)),
    h("span", {class: "conv-meta"},
      h("time", {datetime: conv.last_activity_at}, shortTime(conv.last_activity_at)),
      unread ? h("span", {class: "badge", "aria-hidden": "true"}, unread > 99 ? "99+" : String(unread)) : null,
      unread ? h("span", {class: "visually-hidden"}, `, ${unread} unread`) : null));
  }
}

export function initial(name) {
  const first = [...(name || "?").trim()][0] || "?";
  return first.toUpperCase();
}
