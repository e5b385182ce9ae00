"""Android phones through ADB: `benchmark_model` pushed, run and parsed.

Nothing here imports `adb-shell` at module level: the agent loads it only when a cell
for a phone runs.
"""
