"""The virtual-actor runtime and the chat actors that run on it.

Pure modules (no Ray import): mailbox, registry, placement, conversation_state.
Ray-facing modules: host (the ActorHost Ray actor), directory (finding hosts).
"""
