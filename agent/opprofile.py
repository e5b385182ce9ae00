"""Per-op profile of a cell by isolated-op timing, a phase of its own after the timed phase.

The model is cut into one-op models with the flatbuffer schema the runtime ships. A full
run of the model with every tensor preserved gives each op its real input tensors; each
one-op model is then built with the cell's own delegate and thread count and timed like
the whole model (warmup, then at least `num_runs` invokes, leaving out those the OS
interrupted for another process). The fixed cost of one invoke (measured on a model with
no op, and on one trivial op through the delegate) is subtracted from each op, because
the whole model pays it once, not once per op. Ops measured in isolation miss what the
whole graph shares (a delegate fusing neighbours, tensors still in cache), so `reconciled`
(the sum of the per-op times over the cell's own p50) says how far the profile can be
trusted; the whole model timed by the same loop in the same phase is noted next to it.

Where each op ran comes from the full model's delegate partition, not from the cut model.
"""

from __future__ import annotations

import copy
import importlib
import resource
import statistics
import time
from typing import Callable, Optional

import msgspec
import numpy as np

from agent.runtime import Runtime, first_line, make_interpreter
from agent.wire.delegates import recipe_of
from agent.wire.records import OpNode, OpProfile, OpTypeTotal

METHOD = "isolated ops"
# Each op's timing: warmup invokes, then at least the cell's `num_runs` and this long.
WARMUP_RUNS = 3
MIN_SECS_PER_OP = 0.01
MAX_SECS_PER_OP = 2.0
# Where the flatbuffer schema lives, per runtime (tflite-runtime ships none).
_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")


class OpProfileUnavailable(RuntimeError):
    """This runtime, model or delegate cannot be profiled per op; the message says why."""


def load_schema():
    """The flatbuffer schema module of the installed runtime; OpProfileUnavailable when none."""
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise OpProfileUnavailable("the runtime ships no flatbuffer schema to cut the model into ops")


def op_type_names(schema) -> dict[int, str]:
    """Builtin operator codes to their names (`CONV_2D`, ...)."""
    return {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def op_type(schema, model, op) -> str:
    """The type of `op` as the interpreter names it: the builtin name or the custom op's code."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return op_type_names(schema).get(builtin, f"BUILTIN_{builtin}")


def _has_data(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _pack(schema, model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _shell(schema, model):
    """A model with the original's version and no graph yet."""
    shell = schema.ModelT()
    shell.version = model.version
    shell.description = getattr(model, "description", None)
    shell.buffers = [schema.BufferT()]
    return shell


def computed_constants(model) -> set[int]:
    """Tensors of subgraph 0 computed from constants alone (fp16 weights through DEQUANTIZE,
    for instance): the runtime and its delegates treat them as constants, so must a cut op."""
    graph = model.subgraphs[0]
    known = {i for i, tensor in enumerate(graph.tensors) if _has_data(model, tensor)}
    found: set[int] = set()
    for op in graph.operators:
        inputs = [t for t in op.inputs if t >= 0]
        if inputs and all(t in known for t in inputs):
            found.update(op.outputs)
            known.update(op.outputs)
    return found


def cut(schema, model, index: int, constants: Optional[dict[int, np.ndarray]] = None) -> tuple[bytes, list[int]]:
    """Operator `index` of subgraph 0 as a model of its own, and the original indices of
    its graph inputs (the op's non-constant inputs, in order). `constants` gives the values
    of computed constants (see `computed_constants`), which become constants of the cut model."""
    constants = constants or {}
    graph = model.subgraphs[0]
    op = graph.operators[index]
    shell = _shell(schema, model)
    remap: dict[int, int] = {}
    tensors, inputs = [], []
    for old in [*op.inputs, *(op.outputs or []), *(op.intermediates if op.intermediates is not None else [])]:
        if old < 0 or old in remap:
            continue
        tensor = copy.copy(graph.tensors[old])
        if _has_data(model, tensor):
            shell.buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(shell.buffers) - 1
        elif old in constants and old in op.inputs:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(constants[old]).tobytes(), np.uint8)
            shell.buffers.append(buffer)
            tensor.buffer = len(shell.buffers) - 1
        else:
            tensor.buffer = 0
            if old in op.inputs:
                inputs.append(old)
        remap[old] = len(tensors)
        tensors.append(tensor)
    single = copy.copy(op)
    single.opcodeIndex = 0
    single.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
    single.outputs = [remap[t] for t in op.outputs]
    if op.intermediates is not None:
        single.intermediates = [remap[t] for t in op.intermediates]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [single]
    sub.inputs, sub.outputs = [remap[t] for t in inputs], list(single.outputs)
    shell.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
    shell.subgraphs = [sub]
    return _pack(schema, shell), inputs


def _tiny_model(schema, with_op: bool) -> bytes:
    """A model on one 1-element float tensor: with no op at all, or one ADD of the tensor to
    itself. Invoking them costs the fixed part of an invoke, without and with a delegate
    dispatch (when the delegate takes ADD), and next to no arithmetic."""
    shell = _shell(schema, schema.ModelT())
    shell.version = 3
    names = ["x", "y"] if with_op else ["x"]
    tensors = []
    for name in names:
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, name
        tensors.append(tensor)
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, [0], [len(tensors) - 1], []
    shell.operatorCodes = []
    if with_op:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
        code.version = 1
        add = schema.OperatorT()
        add.opcodeIndex, add.inputs, add.outputs = 0, [0, 0], [1]
        add.builtinOptionsType = schema.BuiltinOptions.AddOptions
        add.builtinOptions = schema.AddOptionsT()
        shell.operatorCodes, sub.operators = [code], [add]
    shell.subgraphs = [sub]
    return _pack(schema, shell)


def undisturbed_loop(invoke: Callable[[], None], min_runs: int, min_secs: float,
                     max_secs: float) -> tuple[list[int], list[int]]:
    """Invoke until `min_runs` undisturbed runs and `min_secs` have passed, or `max_secs`.

    An invoke during which the OS switched the calling thread out for another process (an
    involuntary context switch, counted by getrusage) is left out: on a busy device one such
    switch costs milliseconds, more than a whole op, and would swamp its mean. Returns the
    undisturbed durations and the interrupted ones, in ns.
    """
    clock, usage = time.perf_counter_ns, resource.getrusage
    me = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    min_ns, max_ns = int(min_secs * 1e9), int(max_secs * 1e9)
    samples: list[int] = []
    interrupted: list[int] = []
    start = clock()
    while True:
        switches = usage(me).ru_nivcsw
        t0 = clock()
        invoke()
        t1 = clock()
        (samples if usage(me).ru_nivcsw == switches else interrupted).append(t1 - t0)
        elapsed = t1 - start
        if elapsed >= max_ns or (len(samples) >= min_runs and elapsed >= min_ns):
            return samples, interrupted


class Timing:
    """Times invokes and counts what it left out, over a whole profile."""

    def __init__(self, runs: int):
        self.runs, self.left_out, self.total, self.all_interrupted = runs, 0, 0, 0

    def time(self, interpreter) -> list[int]:
        """Undisturbed invoke times of `interpreter` (all of them when none was undisturbed)."""
        invoke = interpreter.invoke
        invoke()  # first invoke: lazy kernel init (weights packed, constants dequantized)
        undisturbed_loop(invoke, WARMUP_RUNS, 0.0, MAX_SECS_PER_OP)
        samples, interrupted = undisturbed_loop(invoke, self.runs, MIN_SECS_PER_OP, MAX_SECS_PER_OP)
        self.total += len(samples) + len(interrupted)
        if not samples:  # a device too busy to leave any invoke alone: keep them, and say so
            self.all_interrupted += 1
            return interrupted
        self.left_out += len(interrupted)
        return samples


def preserved_tensors(runtime: Runtime, model_path: str, threads: int,
                      inputs: list[np.ndarray]) -> Callable[[int], np.ndarray]:
    """Every tensor of one full run on the given inputs, by index (interpreter kernels,
    so that no delegate keeps intermediates to itself)."""
    module = importlib.import_module(runtime.module)
    interpreter = module.Interpreter(
        model_path=model_path, num_threads=threads, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return interpreter.get_tensor


def _delegated(interpreter) -> bool:
    return any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def _fixed_cost_ns(build: Callable, schema, timing: Timing) -> tuple[float, float]:
    """Median time of an invoke that does nothing: on interpreter kernels, and through the
    delegate (equal to the first when the delegate does not take the tiny ADD)."""
    costs = []
    for with_op in (False, True):
        interpreter = build(_tiny_model(schema, with_op))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.zeros([1], np.float32))
        median = statistics.median(timing.time(interpreter))
        costs.append(median if with_op and _delegated(interpreter) else costs[0] if costs else median)
    return costs[0], costs[1]


def profile(runtime: Runtime, model_path: str, delegate: str, threads: int, inputs: list[np.ndarray],
            runs: int, p50_us: Optional[float], ran_on: Callable[[int], Optional[str]], max_secs: float,
            library: Optional[str] = None, options: Optional[dict[str, str]] = None) -> OpProfile:
    """Time every op of subgraph 0 in isolation with the cell's delegate and threads.

    `ran_on(index)` names where node `index` ran in the full model; the phase stops
    timing ops after `max_secs` (the rest keep null times). Raises
    OpProfileUnavailable when the model cannot be profiled this way; a node that cannot
    run alone keeps null times and a warning.
    """
    if recipe_of(delegate) == "compiled-gpu":
        raise OpProfileUnavailable(f"{delegate} runs whole models through CompiledModel, which "
                                   "offers no per-op timing to Python")
    schema = load_schema()
    with open(model_path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)
    if not model.subgraphs or len(model.subgraphs) > 1:
        raise OpProfileUnavailable("models with several subgraphs (control flow) cannot be cut into ops")
    if any(buffer.offset for buffer in model.buffers or []):
        raise OpProfileUnavailable("models with weights stored after the flatbuffer cannot be cut into ops")
    tensor_of = preserved_tensors(runtime, model_path, threads, inputs)

    def build(content: bytes):
        return make_interpreter(runtime, model_path, delegate, threads, library, options,
                                model_content=content)[0]

    timing = Timing(runs)
    plain_ns, delegated_ns = _fixed_cost_ns(build, schema, timing)
    whole_ns = whole_model_ns(runtime, model_path, delegate, threads, library, options, inputs, timing)
    graph = model.subgraphs[0]
    static = computed_constants(model)
    nodes, failed, moved, unresolved, skipped = [], [], [], [], 0
    deadline = time.monotonic() + max_secs
    for index, op in enumerate(graph.operators):
        output = graph.tensors[op.outputs[0]].name if op.outputs else None
        node = OpNode(index=index, op_type=op_type(schema, model, op),
                      name=output.decode() if isinstance(output, bytes) else output,
                      ran_on=ran_on(index), times_called=1.0, avg_us=None, p50_us=None, share=None)
        if time.monotonic() > deadline:
            skipped += 1
            nodes.append(node)
            continue
        try:
            samples, alone_delegated = _time_alone(build, schema, model, index, tensor_of, static, timing)
        except (RuntimeError, ValueError) as exc:
            failed.append(f"{index} {node.op_type} ({first_line(exc)})")
            nodes.append(node)
            continue
        if alone_delegated != (node.ran_on not in (None, "cpu")) and node.ran_on is not None:
            moved.append(index)
        fixed = delegated_ns if alone_delegated else plain_ns
        net = [s - fixed for s in samples]
        avg_ns, p50_ns = sum(net) / len(net), statistics.median(net)
        if p50_ns <= 0 or avg_ns <= 0:
            unresolved.append(index)  # no slower than an empty invoke: no time to tell
            nodes.append(node)
            continue
        nodes.append(msgspec.structs.replace(node, avg_us=avg_ns / 1e3, p50_us=p50_ns / 1e3))
    warnings = [f"measured after the timed phase: each op timed alone on its real inputs, minus the fixed "
                f"cost of an empty invoke ({plain_ns / 1e3:.1f} us"
                + (f", {delegated_ns / 1e3:.1f} us through {delegate}" if delegated_ns != plain_ns else "")
                + "); the whole model pays that cost once"]
    if timing.left_out:
        warnings.append(f"{timing.left_out} of {timing.total} invokes were interrupted by other processes "
                        "and left out")
    if timing.all_interrupted:
        warnings.append(f"{timing.all_interrupted} timing(s) had every invoke interrupted by other processes: "
                        "their times include time the device spent elsewhere")
    if failed:
        warnings.append(f"{len(failed)} op(s) could not run alone, their times are null: " + "; ".join(failed[:5]))
    if skipped:
        warnings.append(f"the profile phase reached max_secs ({max_secs:g} s): the last {skipped} op(s) "
                        "were not timed")
    if moved:
        warnings.append(f"{len(moved)} op(s) ran elsewhere alone than in the whole model: nodes {moved[:10]}")
    if unresolved:
        warnings.append(f"{len(unresolved)} op(s) took no longer than an empty invoke, their times are null: "
                        f"nodes {unresolved[:10]}")
    found = summarize(nodes, p50_us, METHOD, warnings)
    summed = sum(n.avg_us for n in found.nodes if n.avg_us is not None)
    # The same loop on the whole model tells the method's own error from a busier device.
    found.warnings.append(f"the whole model timed the same way, in this phase: p50 {whole_ns / 1e3:.1f} us; "
                          f"summed ops / that: {summed / (whole_ns / 1e3):.2f}")
    return found


def whole_model_ns(runtime: Runtime, model_path: str, delegate: str, threads: int, library: Optional[str],
                   options: Optional[dict[str, str]], inputs: list[np.ndarray], timing: Timing) -> float:
    """Median undisturbed invoke of the whole model, timed like each op."""
    interpreter = make_interpreter(runtime, model_path, delegate, threads, library, options)[0]
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], value)
    return statistics.median(timing.time(interpreter))


def _time_alone(build: Callable, schema, model, index: int, tensor_of: Callable[[int], np.ndarray],
                static: set[int], timing: Timing) -> tuple[list[int], bool]:
    """Invoke times of node `index` cut out on its real inputs, and whether the delegate took it."""
    op = model.subgraphs[0].operators[index]
    content, feeds = cut(schema, model, index, {t: tensor_of(t) for t in op.inputs if t in static})
    interpreter = build(content)
    values = [tensor_of(t) for t in feeds]
    details = interpreter.get_input_details()
    for detail, value in zip(details, values):
        if tuple(detail["shape"]) != value.shape:
            interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for detail, value in zip(details, values):
        interpreter.set_tensor(detail["index"], value)
    return timing.time(interpreter), _delegated(interpreter)


def summarize(nodes: list[OpNode], p50_us: Optional[float], method: str,
              warnings: list[str]) -> OpProfile:
    """Shares, per-type totals and the reconciliation of measured nodes."""
    timed = [n.avg_us for n in nodes if n.avg_us is not None]
    total = sum(timed) if timed else None
    shared = [OpNode(index=n.index, op_type=n.op_type, name=n.name, ran_on=n.ran_on,
                     times_called=n.times_called, avg_us=n.avg_us, p50_us=n.p50_us,
                     share=n.avg_us / total if total and n.avg_us is not None else None)
              for n in nodes]
    by_type: dict[str, list[OpNode]] = {}
    for node in shared:
        by_type.setdefault(node.op_type, []).append(node)
    totals = []
    for name, members in by_type.items():
        times = [n.avg_us for n in members if n.avg_us is not None]
        type_total = sum(times) if len(times) == len(members) else None
        totals.append(OpTypeTotal(op_type=name, count=len(members), total_us=type_total,
                                  share=type_total / total if total and type_total is not None else None))
    totals.sort(key=lambda t: -(t.total_us or 0.0))
    reconciled = total / p50_us if total is not None and p50_us else None
    return OpProfile(method=method, reconciled=reconciled, nodes=shared, by_type=totals, warnings=warnings)
