"""JSON Schemas that ship with edgebench: `run-document.schema.json` describes a run document."""
