"""Pure readers and writers shared by agent and controller: model files, datasets,
preprocessing specs, TOML files, benchmark_model logs, binary checks. No side effects
beyond reading the files they are given; nothing here imports the rest of the agent."""
