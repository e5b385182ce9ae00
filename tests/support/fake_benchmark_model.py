#!/usr/bin/env python3
"""Plays TFLite's `benchmark_model` on the emulated phone: real flags in, its console output out.

Timings are synthetic but follow the flags (more threads, less time; the run counts
asked for). NNAPI fails the way it does on a device that rejects the model; the GPU
takes part of the graph. `FAKE_BENCHMARK_HANG=1` in the device environment makes it
hang after loading the model, for device-side timeouts.
"""

import os
import sys
import time


def flags(argv):
    parsed = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            print(f"ERROR: Unknown flag or missing value: {arg}")
            sys.exit(2)
        key, _, value = arg[2:].partition("=")
        parsed[key] = value
    return parsed


def on(value):
    return value.lower() in ("1", "true")


def stats(count, base, first):
    return (f"count={count} first={first:.0f} curr={base:.0f} min={base * 0.97:.0f} max={first:.0f} "
            f"avg={base:.1f} std={base * 0.02:.0f}")


def main():
    f = flags(sys.argv[1:])
    graph = f.get("graph", "")
    threads = int(f.get("num_threads", "1"))
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    for key, label in (("use_xnnpack", "Use xnnpack"), ("use_gpu", "Use gpu"), ("use_nnapi", "Use NNAPI")):
        if key in f:
            print(f"INFO: {label}: [{1 if on(f[key]) else 0}]")
    try:
        with open(graph, "rb") as model:
            head = model.read(8)
    except OSError:
        print(f"ERROR: Could not open '{graph}'.")
        print(f"ERROR: Failed to mmap model {graph}")
        return 1
    if head[4:8] != b"TFL3":
        print(f"ERROR: Model provided has model identifier '{head[4:8].decode('latin-1')}', should be 'TFL3'")
        print(f"ERROR: Failed to mmap model {graph}")
        return 1
    print(f"INFO: Loaded model {graph}")
    if os.environ.get("FAKE_BENCHMARK_HANG") == "1":
        sys.stdout.flush()
        time.sleep(3600)
    init_ms = 4.5
    if on(f.get("use_nnapi", "false")):
        print("INFO: Created TensorFlow Lite delegate for NNAPI.")
        print("ERROR: NN API returned error ANEURALNETWORKS_OP_FAILED at line 1146 while completing NNAPI "
              "compilation.")
        print("ERROR: Node number 7 (TfLiteNnapiDelegate) failed to prepare.")
        print("ERROR: Restored original execution plan after delegate application failure.")
        print("ERROR: Failed to apply NNAPI delegate.")
        print("ERROR: Benchmarking failed.")
        return 1
    if on(f.get("use_gpu", "false")):
        init_ms = 950.0
        print("INFO: Created TensorFlow Lite delegate for GPU.")
        print("INFO: GPU delegate created.")
        print("INFO: Replacing 5 out of 7 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.")
        print("INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the "
              "delegate w/ 2 delegate kernels.")
    elif on(f.get("use_xnnpack", "true")):
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
        print("INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by "
              "the delegate.")
    size_mb = os.path.getsize(graph) / 1e6
    print(f"INFO: The input model file size (MB): {size_mb:g}")
    print(f"INFO: Initialized session in {init_ms}ms.")
    base = 2000.0 / threads * (0.5 if on(f.get("use_xnnpack", "true")) else 1.0)
    warmup_runs = max(int(f.get("warmup_runs", "1")), 1)
    num_runs = max(int(f.get("num_runs", "50")), 1)
    print(f"INFO: Running benchmark for at least {warmup_runs} iterations and at least "
          f"{f.get('warmup_min_secs', '0.5')} seconds but terminate if exceeding {f.get('max_secs', '150')} seconds.")
    print("INFO: " + stats(warmup_runs, base * 1.1, base * 3))
    print()
    print(f"INFO: Running benchmark for at least {num_runs} iterations and at least {f.get('min_secs', '1')} "
          f"seconds but terminate if exceeding {f.get('max_secs', '150')} seconds.")
    print("INFO: " + stats(num_runs, base, base * 1.05)
          + f" p5={base * 0.98:.0f} median={base:.0f} p95={base * 1.03:.0f}")
    print()
    print(f"INFO: Inference timings in us: Init: {init_ms * 1000:.0f}, First inference: {base * 3:.0f}, "
          f"Warmup (avg): {base * 1.1:.1f}, Inference (avg): {base:.1f}")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=2.5 overall=6.75")
    print("INFO: Overall peak memory footprint (MB) via periodic monitoring: 9.125")
    return 0


if __name__ == "__main__":
    sys.exit(main())
