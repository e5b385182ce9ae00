"""Device profiles shipped with edgebench: one TOML file per device kind."""
