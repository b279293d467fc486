// Who is who: profiles by user id (fetched once each) and presence.

export class Users extends EventTarget {
  // Events: "change" (a profile arrived), "presence" (detail: user id).
  constructor(api) {
    super();
    this.api = api;
    this.profiles = new Map();    // user_id -> {user_id, username, display_name}
    this.loading = new Map();     // user_id -> Promise
    this.presence = new Map();    // user_id -> {status, last_seen}
  }

  // The name to show; until the profile is in, a placeholder (and a "change" event follows).
  name(userId) {
    const p = this.profiles.get(userId);
    if (p) return p.display_name || p.username;
    this.load(userId);
    return "…";
  }

  load(userId) {
    if (this.profiles.has(userId)) return Promise.resolve(this.profiles.get(userId));
    if (!this.loading.has(userId)) {
      const p = this.api.get(`v1/users/${encodeURIComponent(userId)}`)
        .then((profile) => this.remember(profile))
        .catch(() => null)
        .finally(() => this.loading.delete(userId));
      this.loading.set(userId, p);
    }
    return this.loading.get(userId);
  }

  remember(profile) {
    this.profiles.set(profile.user_id, profile);
    this.dispatchEvent(new CustomEvent("change", {detail: profile.user_id}));
    return profile;
  }

  // Username to profile; rejects with ApiError not_found when there is no such user.
  async byUsername(username) {
    const profile = await this.api.get(`v1/users?username=${encodeURIComponent(username)}`);
    return this.remember(profile);
  }

  async loadPresence(userIds) {
    const ids = [...new Set(userIds)].slice(0, 500);
    if (!ids.length) return;
    const found = await this.api.get(`v1/presence?user_ids=${ids.map(encodeURIComponent).join(",")}`);
    for (const [uid, p] of Object.entries(found)) this.setPresence(uid, p);
  }

  setPresence(userId, p) {
    this.presence.set(userId, {status: p.status, last_seen: p.last_seen ?? null});
    this.dispatchEvent(new CustomEvent("presence", {detail: userId}));
  }
}
