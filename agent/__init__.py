"""edgebench agent: measures LiteRT models on the device it runs on."""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, read from the package metadata when first asked for (it costs an import)."""
    if name == "__version__":
        from agent.wire.version import version

        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
