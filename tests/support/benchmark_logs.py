"""Hand-written `benchmark_model` logs for edge cases; real logs live in tests/fixtures/benchmark_logs."""

# TF 2.14+ on a phone through `adb shell`: INFO prefixes, p5/median/p95, the newer summary,
# the footprint delta and the periodic-monitoring peak, XNNPACK fully applied.
NEW_INFO = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/mobilenet_v2.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/mobilenet_v2.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 3.57776
INFO: Initialized session in 45.123ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=24 first=29380 curr=19862 min=19603 max=29380 avg=20618.5 std=1986

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=19881 curr=19770 min=19492 max=21453 avg=19858.1 std=336 p5=19545 median=19794 p95=20541

INFO: Inference timings in us: Init: 45123, First inference: 29380, Warmup (avg): 20618.5, Inference (avg): 19858.1
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the \
actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=8.42188 overall=12.1289
INFO: Overall peak memory footprint (MB) via periodic monitoring: 15.0273
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 24 MB
"""

# TF 1.x / early 2.x: no prefixes, no percentiles, the old summary, exponent numbers,
# `Peak memory footprint`.
OLD_PLAIN = """\
STARTING!
Min num runs: [50]
Min runs duration (seconds): [1]
Num threads: [1]
Graph: [/data/local/tmp/inception_v3.tflite]
Use gpu : [0]
Loaded model /data/local/tmp/inception_v3.tflite
resolved reporter
Initialized session in 1.234s.
Running benchmark for at least 1 iterations and at least 0.5 seconds
count=1 curr=1240270

Running benchmark for at least 50 iterations and at least 1 seconds
count=50 first=1.21013e+06 curr=1.19452e+06 min=1.18301e+06 max=1.26211e+06 avg=1.20411e+06 std=17354

Average inference timings in us: Warmup: 1.24027e+06, Init: 1234000, no stats: 1.20411e+06
Peak memory footprint (MB): init=3.73438 overall=98.2031
"""

# Captured with `adb logcat`: the threadtime prefix on every line, GPU partially delegated.
LOGCAT_GPU = """\
11-22 14:13:50.101  8123  8123 I tflite  : Num threads: [1]
11-22 14:13:50.101  8123  8123 I tflite  : Graph: [/data/local/tmp/edgebench/models/m.tflite]
11-22 14:13:50.101  8123  8123 I tflite  : Use gpu: [1]
11-22 14:13:50.102  8123  8123 I tflite  : Loaded model /data/local/tmp/edgebench/models/m.tflite
11-22 14:13:50.140  8123  8123 I tflite  : Created TensorFlow Lite delegate for GPU.
11-22 14:13:50.141  8123  8123 I tflite  : GPU delegate created.
11-22 14:13:50.180  8123  8123 I tflite  : Replacing 61 out of 64 node(s) with delegate (TfLiteGpuDelegateV2) \
node, yielding 2 partitions.
11-22 14:13:51.902  8123  8123 I tflite  : Explicitly applied GPU delegate, and the model graph will be \
partially executed by the delegate w/ 2 delegate kernels.
11-22 14:13:51.903  8123  8123 I tflite  : Initialized session in 1800.5ms.
11-22 14:13:51.903  8123  8123 I tflite  : Running benchmark for at least 1 iterations and at least 0.5 \
seconds but terminate if exceeding 150 seconds.
11-22 14:13:52.410  8123  8123 I tflite  : count=60 first=24500 curr=8210 min=8003 max=24500 avg=8450.2 std=2100
11-22 14:13:52.410  8123  8123 I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds \
but terminate if exceeding 150 seconds.
11-22 14:13:53.420  8123  8123 I tflite  : count=120 first=8300 curr=8120 min=7990 max=9100 avg=8210.7 \
std=150 p5=8010 median=8190 p95=8500
11-22 14:13:53.420  8123  8123 I tflite  : Inference timings in us: Init: 1800500, First inference: 24500, \
Warmup (avg): 8450.2, Inference (avg): 8210.7
11-22 14:13:53.421  8123  8123 I tflite  : Memory footprint delta from the start of the tool (MB): init=120.5 \
overall=131.25
"""

# Logcat brief format, op profiling enabled: the profiler's own `count=` lines must be ignored.
BRIEF_PROFILING = """\
I/tflite  ( 4242): Num threads: [2]
I/tflite  ( 4242): Use xnnpack: [0]
I/tflite  ( 4242): Initialized session in 3.5ms.
I/tflite  ( 4242): Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
I/tflite  ( 4242): count=100 first=6000 curr=5000 min=4900 max=6000 avg=5050 std=90
I/tflite  ( 4242): Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
I/tflite  ( 4242): count=200 first=5010 curr=5000 min=4950 max=5400 avg=5020.5 std=40 p5=4960 median=5010 p95=5100
I/tflite  ( 4242): Inference timings in us: Init: 3500, First inference: 6000, Warmup (avg): 5050, \
Inference (avg): 5020.5
I/tflite  ( 4242): Profiling Info for Benchmark Initialization:
I/tflite  ( 4242): ============================== Run Order ==============================
I/tflite  ( 4242): \t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]
I/tflite  ( 4242): \t        AllocateTensors\t    0.210\t    0.210\t 100.000%\t 100.000%\t     0.000\t        1
I/tflite  ( 4242): Timings (microseconds): count=1 curr=210
I/tflite  ( 4242): Memory (bytes): count=0
I/tflite  ( 4242): count=999 first=1 curr=1 min=1 max=1 avg=1 std=0
I/tflite  ( 4242): 1 nodes observed
I/tflite  ( 4242): Peak memory footprint (MB): init=1.5 overall=4.25
"""

# NNAPI refused the model: errors, then no timing lines at all.
NNAPI_FAILED = """\
INFO: STARTING!
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/edgebench/models/m.tflite]
INFO: Use NNAPI: [1]
INFO: Loaded model /data/local/tmp/edgebench/models/m.tflite
INFO: Created TensorFlow Lite delegate for NNAPI.
ERROR: NN API returned error ANEURALNETWORKS_OP_FAILED at line 1146 while completing NNAPI compilation.
ERROR: Node number 31 (TfLiteNnapiDelegate) failed to prepare.
ERROR: Restored original execution plan after delegate application failure.
ERROR: Failed to apply NNAPI delegate.
ERROR: Benchmarking failed.
"""

# The model could not even be read.
MODEL_MISSING = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/missing.tflite]
ERROR: Could not open '/data/local/tmp/missing.tflite'.
ERROR: Failed to mmap model /data/local/tmp/missing.tflite
"""

# GPU delegate created but it took nothing: a measured run with a warning.
GPU_NOT_APPLIED = """\
INFO: Num threads: [1]
INFO: Use gpu: [1]
INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate.
INFO: Initialized session in 12ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=10 first=100 curr=90 min=88 max=100 avg=91 std=3
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=90 curr=90 min=87 max=95 avg=90.5 std=1.5 p5=88 median=90 p95=93
INFO: Inference timings in us: Init: 12000, First inference: 100, Warmup (avg): 91, Inference (avg): 90.5
"""
