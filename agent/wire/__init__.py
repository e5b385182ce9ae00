"""The contract between controller and agent: messages, records, delegate names, key files.

The controller imports from `agent` only this package and `agent.formats`; nothing here
imports the rest of the agent.
"""
