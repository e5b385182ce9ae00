#!/usr/bin/env python3
"""Plays TFLite's `benchmark_model` on the emulated phone: the real LiteRT interpreter measures.

It reads the real tool's flags, runs the pushed `.tflite` with LiteRT (XNNPACK on or off as
`--use_xnnpack` says, `--num_threads` threads), times the warmup and the timed phase the
way the tool does (at least N runs and at least S seconds, cut at `--max_secs`) and prints
what it measured in the tool's format: parameters, stats lines, the summary, the memory
line and, with `--enable_op_profiling=true`, the op tables of the newer layout. Per-op
times are measured op by op: each node is cut out into a one-op model (same tensors,
same constant buffers), fed the values its inputs had in a run of the whole model, and
invoked on its own.

Like the real tool it reports flags it does not know as "Unconsumed cmdline flags" and
goes on. This "phone" has no NNAPI driver and no GPU delegate: those fail the way the
real tool fails when a delegate cannot be applied (the NNAPI lines are those of a real
Xiaomi Mi11 log, tests/fixtures/benchmark_logs/mi11_yolov5s_int8_nnapi_failed.log).
`FAKE_BENCHMARK_HANG=1` in the device environment makes it hang after loading the
model, for device-side timeouts.
"""

import contextlib
import math
import os
import resource
import sys
import time

import numpy as np
from ai_edge_litert import interpreter as litert

# The flags the stand-in honours, with the real tool's defaults and parameter labels.
FLAGS = {
    "graph": ("", "Graph"),
    "num_threads": ("-1", "Num threads"),
    "warmup_runs": ("1", "Min warmup runs"),
    "warmup_min_secs": ("0.5", "Min warmup runs duration (seconds)"),
    "num_runs": ("50", "Min num runs"),
    "min_secs": ("1", "Min runs duration (seconds)"),
    "max_secs": ("150", "Max runs duration (seconds)"),
    "run_delay": ("-1", "Inter-run delay (seconds)"),
    "enable_op_profiling": ("false", "Enable op profiling"),
    "use_xnnpack": ("true", "Use xnnpack"),
    "use_gpu": ("false", "Use gpu"),
    "use_nnapi": ("false", "Use NNAPI"),
}
NOTE = ("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
        "the actual memory footprint of the model at runtime. Take the information at your discretion.")


def say(line=""):
    print(f"INFO: {line}" if line else "")


def parse_flags(argv):
    known, unconsumed, duplicates = {}, [], []
    for arg in argv:
        name, equals, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in FLAGS and equals:
            if name in known:
                duplicates.append(name)
            else:
                known[name] = value
        else:
            unconsumed.append(arg)
    return known, unconsumed, duplicates


def on(value):
    return value.lower() in ("1", "true")


def boolean_param(value):
    return "1" if on(value) else "0"


def rss_kb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def g(value):
    """A double the way C++ streams print it by default (6 significant digits)."""
    return f"{value:g}"


def stats_line(samples_us, percentiles=True):
    n = len(samples_us)
    mean = sum(samples_us) / n
    std = int(math.sqrt(max(sum(s * s for s in samples_us) / n - mean * mean, 0.0)))
    line = (f"count={n} first={samples_us[0]} curr={samples_us[-1]} min={min(samples_us)} max={max(samples_us)} "
            f"avg={g(mean)} std={std}")
    if percentiles:
        ordered = sorted(samples_us)
        pick = [ordered[min(n - 1, n * p // 100)] for p in (5, 50, 95)]
        line += f" p5={pick[0]} median={pick[1]} p95={pick[2]}"
    return line


def timed(invoke, runs, min_secs, max_secs, delay):
    """Invoke until at least `runs` runs and `min_secs` seconds, stopping at `max_secs`: times in us."""
    samples = []
    start = time.perf_counter()
    while True:
        began = time.perf_counter_ns()
        invoke()
        samples.append((time.perf_counter_ns() - began) // 1000)
        elapsed = time.perf_counter() - start
        if (len(samples) >= runs and elapsed >= min_secs) or elapsed >= max_secs:
            return samples
        if delay > 0:
            time.sleep(delay)


def interpreter_for(content, threads, xnnpack, keep_tensors=False):
    resolver = (litert.OpResolverType.AUTO if xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = litert.Interpreter(model_content=content, num_threads=threads if threads > 0 else None,
                                     experimental_op_resolver_type=resolver,
                                     experimental_preserve_all_tensors=keep_tensors)
    interpreter.allocate_tensors()
    return interpreter


def fill_inputs(interpreter):
    """Random inputs in the ranges benchmark_model uses: small floats, 8/16-bit integers over their
    whole range, wider integers (often indices) small and non-negative."""
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype, shape = np.dtype(detail["dtype"]), detail["shape"]
        if dtype == np.bool_:
            data = rng.integers(0, 2, size=shape)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = (int(info.min), int(info.max) + 1) if info.bits <= 16 else (0, 100)
            data = rng.integers(low, high, size=shape)
        else:
            data = rng.uniform(-1.0, 1.0, size=shape)
        interpreter.set_tensor(detail["index"], data.astype(dtype))


def op_models(content):
    """Each node of the main subgraph as a one-op model: (index, op type, output name, model bytes)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    operators, inputs, outputs = graph.operators, graph.inputs, graph.outputs

    def constant(tensor):
        buffer = model.buffers[graph.tensors[tensor].buffer]
        return buffer.data is not None and len(buffer.data) > 0
    cut = []
    for index, op in enumerate(operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        op_type = names.get(builtin, "CUSTOM")
        graph.operators = [op]
        graph.inputs = [t for t in op.inputs if t >= 0 and not constant(t)]
        graph.outputs = [t for t in op.outputs if t >= 0]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        tensor = graph.tensors[graph.outputs[0]] if graph.outputs else None
        name = tensor.name.decode() if tensor is not None and isinstance(tensor.name, bytes) else (
            tensor.name if tensor is not None else "")
        cut.append((index, op_type, name, bytes(builder.Output())))
    graph.operators, graph.inputs, graph.outputs = operators, inputs, outputs
    return cut


@contextlib.contextmanager
def quiet_stderr():
    """The runtime's own stderr lines (one per interpreter) stay out of the log while profiling."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_ops(content, threads, xnnpack, runs):
    """Per node: (index, type, name, delegated, times in us) from invoking it on its own."""
    with quiet_stderr():
        whole = interpreter_for(content, threads, False, keep_tensors=True)
        fill_inputs(whole)
        whole.invoke()
        rows = []
        for index, op_type, name, single in op_models(content):
            interpreter = interpreter_for(single, threads, xnnpack)
            delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], whole.get_tensor(detail["index"]))
            samples = timed(interpreter.invoke, max(runs, 1), 0.0, 5.0, 0.0)
            rows.append((index, op_type, name, delegated, samples))
    return rows


def print_op_tables(rows):
    """The newer layout: 40-character node types, no [start] column; times in ms."""
    per_node = [(index, op_type, name, delegated, samples[0] / 1000, sum(samples) / len(samples) / 1000)
                for index, op_type, name, delegated, samples in rows]
    total = sum(avg for *_, avg in per_node) or 1.0
    header = ("\t                             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t"
              "[times called]\t[Name]")

    def node_rows(order):
        cdf = 0.0
        lines = []
        for index, op_type, name, delegated, first, avg in order:
            cdf += avg / total * 100
            label = f"Delegate/{op_type}:{index}" if delegated else f"[{name}]:{index}"
            lines.append(f"\t{op_type:>40}\t{first:9.3f}\t{avg:9.3f}\t{avg / total * 100:7.3f}%\t{cdf:7.3f}%\t"
                         f"{0.0:10.3f}\t{1:9d}\t{label}")
        return lines
    say("Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print(header)
    print("\n".join(node_rows(per_node)))
    print()
    print("============================== Top by Computation Time ==============================")
    print(header)
    print("\n".join(node_rows(sorted(per_node, key=lambda row: -row[5])[:10])))
    print()
    print(f"Number of nodes executed: {len(per_node)}")
    print("============================== Summary by node type ==============================")
    print("\t                             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t"
          "[times called]")
    by_type = {}
    for _, op_type, _, _, _, avg in per_node:
        count, ms = by_type.get(op_type, (0, 0.0))
        by_type[op_type] = (count + 1, ms + avg)
    cdf = 0.0
    for op_type, (count, ms) in sorted(by_type.items(), key=lambda item: -item[1][1]):
        cdf += ms / total * 100
        print(f"\t{op_type:>40}\t{count:9d}\t{ms:10.3f}\t{ms / total * 100:10.3f}%\t{cdf:10.3f}%\t{0.0:10.3f}\t"
              f"{count:9d}")
    print()
    runs = [sum(samples[r] for *_, samples in rows) for r in range(min(len(row[4]) for row in rows))]
    print(f"Timings (microseconds): {stats_line(runs, percentiles=False)}")
    print("Memory (bytes): count=0")
    print(f"{len(per_node)} nodes observed")
    print()


def fail_delegate(name, nodes):
    say(f"Created TensorFlow Lite delegate for {name}.")
    if name == "NNAPI":
        print("ERROR: NN API returned error ANEURALNETWORKS_OP_FAILED at line 3779 while completing NNAPI "
              "compilation.\n")
        print(f"ERROR: Node number {nodes} (TfLiteNnapiDelegate) failed to prepare.\n")
        print("ERROR: Restored original execution plan after delegate application failure.")
    print(f"Failed to apply {name} delegate.")
    print("Benchmarking failed.")
    return 1


def main():
    sys.stdout.reconfigure(line_buffering=True)  # in order with the runtime's own stderr lines
    start_kb = rss_kb()
    flags, unconsumed, duplicates = parse_flags(sys.argv[1:])
    say("STARTING!")
    if duplicates:
        print("Duplicate flags: " + ", ".join(duplicates))
    if unconsumed:
        print("Unconsumed cmdline flags: " + " ".join(unconsumed))
    value = {name: flags.get(name, default) for name, (default, _) in FLAGS.items()}
    say("Log parameter values verbosely: [0]")
    for name, (_, label) in FLAGS.items():
        if name in flags:
            shown = boolean_param(flags[name]) if FLAGS[name][0] in ("true", "false") else flags[name]
            say(f"{label}: [{shown}]")
    threads = int(value["num_threads"])
    if "num_threads" in flags:
        say(f"#threads used for CPU inference: [{threads}]")
    graph = value["graph"]
    if not graph:
        print("ERROR: Please specify the name of your TF Lite input file with --graph")
        print("Benchmarking failed.")
        return 1
    try:
        with open(graph, "rb") as model:
            content = model.read()
    except OSError:
        print(f"ERROR: Could not open '{graph}'.")
        print(f"ERROR: Failed to mmap model {graph}")
        return 1
    if content[4:8] != b"TFL3":
        print(f"ERROR: Model provided has model identifier '{content[4:8].decode('latin-1')}', should be 'TFL3'")
        print(f"ERROR: Failed to mmap model {graph}")
        return 1
    say(f"Loaded model {graph}")
    if os.environ.get("FAKE_BENCHMARK_HANG") == "1":
        sys.stdout.flush()
        time.sleep(3600)

    xnnpack = on(value["use_xnnpack"])
    began = time.perf_counter_ns()
    # LiteRT itself prints "Created TensorFlow Lite XNNPACK delegate for CPU." when it applies it.
    interpreter = interpreter_for(content, threads, xnnpack)
    nodes = sum(op["op_name"] != "DELEGATE" for op in interpreter._get_ops_details())
    if on(value["use_nnapi"]):
        return fail_delegate("NNAPI", nodes)
    if on(value["use_gpu"]):
        return fail_delegate("GPU", nodes)
    fill_inputs(interpreter)
    init_us = (time.perf_counter_ns() - began) // 1000
    init_kb = rss_kb()
    say(f"The input model file size (MB): {g(len(content) / 1e6)}")
    say(f"Initialized session in {g(init_us / 1000)}ms.")

    max_secs, delay = float(value["max_secs"]), float(value["run_delay"])
    say(f"Running benchmark for at least {value['warmup_runs']} iterations and at least "
        f"{value['warmup_min_secs']} seconds but terminate if exceeding {value['max_secs']} seconds.")
    warmup = timed(interpreter.invoke, int(value["warmup_runs"]), float(value["warmup_min_secs"]), max_secs, delay)
    say(stats_line(warmup))
    say()
    say(f"Running benchmark for at least {value['num_runs']} iterations and at least {value['min_secs']} "
        f"seconds but terminate if exceeding {value['max_secs']} seconds.")
    runs = timed(interpreter.invoke, int(value["num_runs"]), float(value["min_secs"]), max_secs, delay)
    say(stats_line(runs))
    say()
    say(f"Inference timings in us: Init: {init_us}, First inference: {warmup[0]}, "
        f"Warmup (avg): {g(sum(warmup) / len(warmup))}, Inference (avg): {g(sum(runs) / len(runs))}")
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_kb())
    say(NOTE)
    say(f"Memory footprint delta from the start of the tool (MB): init={g((init_kb - start_kb) / 1024)} "
        f"overall={g((peak_kb - start_kb) / 1024)}")
    if on(value["enable_op_profiling"]):
        print_op_tables(profile_ops(content, threads, xnnpack, int(value["num_runs"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
