"""edgebench controller: pushes models to agents, runs the matrix, keeps the history."""

__version__ = "0.1.0"
