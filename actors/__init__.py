"""The virtual-actor runtime and the chat actors that run on it.

Pure modules (no Ray import): mailbox, registry, placement, membership (which hosts should
exist), conversation_state.
Ray-facing modules: host (the ActorHost Ray actor), directory (the membership view: starts and
stops the hosts as nodes come and go), follower (a host's copy of the view).
"""
