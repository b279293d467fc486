"""raychat: a real-time chat backend on Ray.

This package holds the leaf modules every room may import (errors, config,
clock) and the command-line entry point. It must stay import-light: actors and
gateways import it inside Ray workers.
"""

__version__ = "0.1.0"
