// HTTP to the gateway (docs/protocol.md, "HTTP"), with the token pair kept fresh.
//
// The pair lives in sessionStorage: it survives a reload, and each tab has its own login. A
// refresh token shared by tabs (localStorage) would be spent by one tab while another still
// holds it; the next refresh is then a reuse, and the server revokes the whole login
// (docs/protocol.md, "Refresh tokens"). The access token is refreshed a minute before it
// expires, one refresh at a time, and once more on a 401.

const SESSION_KEY = "raychat.session";
const REFRESH_EARLY_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || (status === 0 ? "network" : "internal");
    this.retryAfterMs = body?.retry_after_ms ?? null;
  }
}

export class Api extends EventTarget {
  // Events: "token" (detail: a new access token), "signedout" (the session is gone).
  constructor(base, storage = window.sessionStorage) {
    super();
    this.base = base;            // a URL ending in "/": the page's own directory
    this.storage = storage;
    this.session = load(storage);
    this._refreshing = null;
    this._timer = null;
    if (this.session) this._schedule();
  }

  get userId() {
    return this.session?.user_id ?? null;
  }

  async register(username, password) {
    return this.request("POST", "v1/auth/register", {username, password}, {auth: false});
  }

  async login(username, password) {
    const pair = await this.request("POST", "v1/auth/login", {username, password}, {auth: false});
    this._keep(pair);
    return pair;
  }

  async logout() {
    const refresh = this.session?.refresh_token;
    this._forget();
    if (refresh) {
      // Best effort: the tokens are gone from this tab whatever the server answers.
      await this.request("POST", "v1/auth/logout", {refresh_token: refresh}, {auth: false}).catch(() => {});
    }
  }

  // An access token good for at least a minute more, refreshing first if needed.
  async token() {
    if (!this.session) throw new ApiError(401, {code: "unauthorized", message: "not signed in"});
    if (this.session.expires_at - Date.now() < REFRESH_EARLY_MS) await this.refresh();
    return this.session.access_token;
  }

  // Spend the refresh token for a new pair; concurrent callers share one request.
  refresh() {
    if (!this._refreshing) {
      const refreshToken = this.session?.refresh_token;
      this._refreshing = (async () => {
        try {
          if (!refreshToken) throw new ApiError(401, {code: "unauthorized", message: "not signed in"});
          const pair = await this.request("POST", "v1/auth/refresh", {refresh_token: refreshToken}, {auth: false});
          this._keep(pair);
          this.dispatchEvent(new CustomEvent("token", {detail: pair.access_token}));
        } catch (err) {
          if (err.status === 401) this._forget();
          throw err;
        } finally {
          this._refreshing = null;
        }
      })();
    }
    return this._refreshing;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, body); }

  async request(method, path, body, {auth = true, retried = false} = {}) {
    const headers = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (auth) headers.authorization = `Bearer ${await this.token()}`;
    let response;
    try {
      response = await fetch(new URL(path, this.base), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, {code: "network", message: "cannot reach the server"});
    }
    if (response.status === 401 && auth && !retried) {
      // The token may have been revoked or the clock be off: one refresh, one retry.
      await this.refresh();
      return this.request(method, path, body, {auth, retried: true});
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  _keep(pair) {
    this.session = {
      user_id: pair.user_id, access_token: pair.access_token, refresh_token: pair.refresh_token,
      expires_at: Date.now() + pair.expires_in * 1000,
    };
    this.storage.setItem(SESSION_KEY, JSON.stringify(this.session));
    this._schedule();
  }

  _forget() {
    const had = this.session !== null;
    this.session = null;
    this.storage.removeItem(SESSION_KEY);
    clearTimeout(this._timer);
    if (had) this.dispatchEvent(new Event("signedout"));
  }

  // Refresh ahead of expiry, so an open socket gets its `auth` frame before the server closes it.
  _schedule() {
    clearTimeout(this._timer);
    const wait = Math.max(5_000, this.session.expires_at - Date.now() - REFRESH_EARLY_MS);
    this._timer = setTimeout(() => this.refresh().catch(() => {}), wait);
  }
}

function load(storage) {
  try {
    const s = JSON.parse(storage.getItem(SESSION_KEY));
    return s && s.access_token && s.refresh_token && s.user_id ? s : null;
  } catch {
    return null;
  }
}
