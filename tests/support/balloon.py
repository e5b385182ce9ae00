"""A real model made to need much more memory: its input batch raised, nothing else changed."""

from __future__ import annotations

from pathlib import Path

import flatbuffers  # installed with ai-edge-litert, whose schema module needs it
from ai_edge_litert import schema_py_generated as schema


def balloon(model: Path, batch: int, out: Path) -> Path:
    """`model` with the first dimension of every input set to `batch`, written to `out`.

    Each activation then grows by the same factor when the interpreter allocates tensors,
    as a model exported with a large fixed batch would.
    """
    data = model.read_bytes()
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    for graph in tree.subgraphs:
        for index in graph.inputs:
            tensor = graph.tensors[index]
            tensor.shape = tensor.shape.copy()
            tensor.shape[0] = batch
            if tensor.shapeSignature is not None:
                tensor.shapeSignature = tensor.shapeSignature.copy()
                tensor.shapeSignature[0] = batch
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(builder.Output())
    return out
