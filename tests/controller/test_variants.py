"""The recommendation: fastest variant and setting within the accuracy tolerance."""

from agent.wire.records import Accuracy, Cell, LatencyStats, OutputDiff
from controller import families, models
from controller.analysis import variants
from tests.support import EXAMPLE_MODELS


def cell(model, variant, p50, top1=None, agreement=None, delegate="xnnpack", threads=1, status="ok"):
    latency = LatencyStats(count=5, min=p50, max=p50, mean=p50, std=0, p50=p50, p90=p50, p99=p50)
    return Cell(device="pi", model=model, model_sha256="0" * 64, model_size_bytes=1000, variant=variant,
                delegate=delegate, threads=threads, status=status,
                latency_us=latency if status == "ok" else None,
                accuracy=Accuracy(samples=100, top1=top1, top5=1.0) if top1 is not None else None,
                output_diff=OutputDiff(reference="digits_cnn_fp32.tflite", mean_abs=0, max_abs=0,
                                       top1_agreement=agreement) if agreement is not None else None)


def digits_family():
    sources, _ = models.resolve([str(EXAMPLE_MODELS / "digits_cnn_*.tflite")])
    (family,), _ = families.group(sources)
    return family


def test_fastest_variant_within_tolerance_is_recommended():
    cells = [cell("digits_cnn_fp32.tflite", "fp32", 100, top1=0.90),
             cell("digits_cnn_fp16.tflite", "fp16", 90, top1=0.90),
             cell("digits_cnn_dynamic.tflite", "dynamic", 60, top1=0.895),
             cell("digits_cnn_int8.tflite", "int8", 40, top1=0.85)]  # fastest, but loses 5 points
    comparison = variants.compare_family("pi", digits_family(), cells, tolerance=0.01)
    assert comparison.recommendation.model == "digits_cnn_dynamic.tflite"
    assert comparison.recommendation.speedup == 100 / 60
    rows = {r.model: r for r in comparison.rows}
    assert round(rows["digits_cnn_int8.tflite"].top1_delta, 3) == -0.05
    assert rows["digits_cnn_fp32.tflite"].speedup == 1.0
    assert "top-1 accuracy" in comparison.statement


def test_without_a_dataset_agreement_with_the_reference_decides():
    cells = [cell("digits_cnn_fp32.tflite", "fp32", 100),
             cell("digits_cnn_int8.tflite", "int8", 40, agreement=0.5),
             cell("digits_cnn_fp16.tflite", "fp16", 80, agreement=1.0)]
    comparison = variants.compare_family("pi", digits_family(), cells)
    assert comparison.recommendation.model == "digits_cnn_fp16.tflite"
    assert comparison.recommendation.basis == "top1_agreement"


def test_no_qualifying_variant_is_said_plainly():
    cells = [cell("digits_cnn_fp32.tflite", "fp32", 100, status="failed"),
             cell("digits_cnn_int8.tflite", "int8", 40, top1=0.5)]
    comparison = variants.compare_family("pi", digits_family(), cells)
    assert comparison.recommendation is None
    assert comparison.statement.startswith("no variant qualifies")


def test_rounds_are_summarised_by_their_median():
    cells = [cell("digits_cnn_fp32.tflite", "fp32", p) for p in (100, 300, 110)]
    (row,) = variants.rows_for(cells)
    assert row.p50_us == 110
