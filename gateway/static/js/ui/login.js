// The sign-in screen: log in, or create the account and log in.

import {$} from "../dom.js";

const MESSAGES = {
  unauthorized: "Wrong username or password.",
  conflict: "That username is taken. Pick another, or log in.",
  network: "Cannot reach the server. Check your connection and try again.",
};

export class LoginView {
  constructor(api, onSignedIn) {
    this.api = api;
    this.onSignedIn = onSignedIn;
    this.root = $("login-view");
    this.form = $("login-form");
    this.error = $("login-error");
    this.form.addEventListener("submit", (e) => this._submit(e));
  }

  show() {
    this.root.hidden = false;
    this.error.textContent = "";
    this.form.reset();
    $("login-username").focus();
  }

  hide() {
    this.root.hidden = true;
  }

  async _submit(event) {
    event.preventDefault();
    const register = event.submitter?.value === "register";
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    const buttons = this.form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    this.error.textContent = "";
    try {
      if (register) await this.api.register(username, password);
      await this.api.login(username, password);
      this.onSignedIn();
    } catch (err) {
      this.error.textContent = describe(err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
}

export function describe(err) {
  if (err.code === "rate_limited") {
    const s = Math.ceil((err.retryAfterMs ?? 1000) / 1000);
    return `Too many attempts. Try again in ${s} s.`;
  }
  return MESSAGES[err.code] || err.message || "Something went wrong.";
}
