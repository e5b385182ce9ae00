"""edgebench controller: pushes models to agents, runs the matrix, keeps the history."""

from agent.wire.version import VERSION as __version__

__all__ = ["__version__"]
