"""Preprocessing follows the spec step by step, on real images."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.formats.preprocess import (
    InputTensor,
    PreprocessError,
    decode,
    parse_spec,
    preprocess_image,
    summarize,
    summary_difference,
    to_tensor,
)

ROOT = Path(__file__).resolve().parents[2]
COLOR_IMAGE = next((ROOT / "tests" / "fixtures" / "datasets" / "colors" / "red").glob("*.png"))
GRAY_IMAGE = next((ROOT / "examples" / "datasets" / "digits" / "3").glob("*.png"))
FLOAT_RGB = InputTensor(32, 32, 3, np.dtype(np.float32))


def test_channel_order_mean_and_std_are_applied_as_written():
    spec = parse_spec({"size": [32, 32], "resize": "direct", "interpolation": "area", "color": "RGB",
                       "mean": [10.0, 20.0, 30.0], "std": [2.0, 4.0, 8.0], "scale": 0.5})
    bgr = cv2.imread(str(COLOR_IMAGE), cv2.IMREAD_COLOR)
    tensor = preprocess_image(COLOR_IMAGE.read_bytes(), spec, FLOAT_RGB)
    expected = cv2.resize(bgr, (32, 32), interpolation=cv2.INTER_AREA)[..., ::-1].astype(np.float32)
    expected = (expected * 0.5 - np.array([10, 20, 30], np.float32)) / np.array([2, 4, 8], np.float32)
    assert tensor.shape == (1, 32, 32, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], expected, rtol=1e-6)


def test_bgr_keeps_opencv_order_and_rgb_swaps_it():
    target = InputTensor(40, 40, 3, np.dtype("float32"))
    rgb = preprocess_image(COLOR_IMAGE.read_bytes(), parse_spec({"color": "RGB"}), target)
    bgr = preprocess_image(COLOR_IMAGE.read_bytes(), parse_spec({"color": "BGR"}), target)
    np.testing.assert_array_equal(rgb[..., ::-1], bgr)
    assert not np.array_equal(rgb, bgr)


def test_shorter_side_center_crop_resizes_then_crops_the_middle():
    spec = parse_spec({"size": [20, 20], "resize": "shorter_side_center_crop", "resize_to": 30,
                       "interpolation": "nearest", "color": "BGR"})
    image = np.arange(60 * 40 * 3, dtype=np.uint32).reshape(60, 40, 3) % 251
    image = image.astype(np.uint8)
    tensor = to_tensor(image, spec, InputTensor(20, 20, 3, np.dtype(np.float32)))
    resized = cv2.resize(image, (30, 45), interpolation=cv2.INTER_NEAREST)  # shorter side 40 -> 30
    np.testing.assert_array_equal(tensor[0], resized[12:32, 5:25].astype(np.float32))


def test_grayscale_models_get_one_channel():
    spec = parse_spec({"scale": 1 / 255})
    tensor = preprocess_image(GRAY_IMAGE.read_bytes(), spec, InputTensor(8, 8, 1, np.dtype(np.float32)))
    raw = cv2.imread(str(GRAY_IMAGE), cv2.IMREAD_GRAYSCALE)
    assert tensor.shape == (1, 8, 8, 1)
    np.testing.assert_allclose(tensor[0, ..., 0], raw / 255, rtol=1e-6)


@pytest.mark.parametrize("dtype, zero_point", [(np.int8, -128), (np.uint8, 0)])
def test_integer_inputs_are_quantized_with_their_own_scale_and_zero_point(dtype, zero_point):
    spec = parse_spec({"scale": 1 / 255})
    target = InputTensor(8, 8, 1, np.dtype(dtype), scale=1 / 255, zero_point=zero_point)
    tensor = preprocess_image(GRAY_IMAGE.read_bytes(), spec, target)
    raw = cv2.imread(str(GRAY_IMAGE), cv2.IMREAD_GRAYSCALE).astype(np.int32)
    assert tensor.dtype == dtype
    np.testing.assert_array_equal(tensor[0, ..., 0].astype(np.int32), raw + zero_point)


@pytest.mark.parametrize("data, message", [
    ({"size": [224, 224], "colour": "RGB"}, "unknown field `colour`"),
    ({"size": [0, 224]}, "must be positive"),
    ({"resize": "shorter_side_center_crop"}, "needs resize_to"),
    ({"size": [224, 224], "resize": "shorter_side_center_crop", "resize_to": 200}, "smaller than size"),
    ({"resize_to": 256}, "applies only to"),
    ({"std": [1.0, 0.0, 1.0]}, "std must not be 0"),
    ({"interpolation": "lanczos"}, "interpolation"),
])
def test_bad_specs_are_one_clear_line(data, message):
    with pytest.raises(PreprocessError, match=message) as info:
        parse_spec(data)
    assert "\n" not in str(info.value)


def test_spec_channels_must_match_the_model_input():
    spec = parse_spec({"mean": [1.0, 2.0, 3.0]})
    with pytest.raises(PreprocessError, match="3 mean values but the model input has 1 channel"):
        preprocess_image(GRAY_IMAGE.read_bytes(), spec, InputTensor(8, 8, 1, np.dtype(np.float32)))


def test_undecodable_image_is_a_preprocess_error():
    with pytest.raises(PreprocessError, match="cannot be decoded"):
        decode(b"\x89PNG not really", 3)


def test_summaries_compare_identical_and_different_tensors():
    spec = parse_spec({})
    a = preprocess_image(COLOR_IMAGE.read_bytes(), spec, FLOAT_RGB)
    assert summary_difference(summarize(0, a), summarize(0, a.copy())) == 0.0
    # A uniform shift moves the mean, extremes and every pooled block by the shift.
    assert summary_difference(summarize(0, a), summarize(0, a + 3.0)) == pytest.approx(3.0, rel=1e-6)
    assert len(summarize(0, a).thumbnail) == 8 * 8 * 3
