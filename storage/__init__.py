"""Storage ports (typing.Protocol, with written contracts) and their adapters.

Imports nothing else of raychat's: other rooms depend on storage, never the reverse.
"""
