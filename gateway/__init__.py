"""The edge: HTTP, WebSocket and SSE handlers, and their pure rules (auth, frames, limits)."""
