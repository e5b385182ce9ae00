"""edgebench controller: pushes models to agents, runs the matrix, keeps the history."""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, read from the package metadata when first asked for (it costs an import)."""
    if name == "__version__":
        from agent.wire.version import version

        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
