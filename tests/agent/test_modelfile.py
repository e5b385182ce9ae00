import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.formats.modelfile import ModelFormatError, read_model, read_model_file
from tests.support import EXAMPLE_MODELS, FIXTURE_MODELS


@pytest.mark.parametrize("variant", ["fp32", "fp16", "dynamic", "int8"])
def test_variants_are_read_from_tensor_types_not_names(tmp_path, family, variant):
    disguised = tmp_path / "model.tflite"
    disguised.write_bytes(family[variant].read_bytes())
    assert read_model_file(disguised).variant == variant


def test_interface_of_the_example_family(family):
    fp32, int8 = read_model_file(family["fp32"]), read_model_file(family["int8"])
    assert [t.dtype for t in fp32.inputs] == ["float32"]
    assert [t.dtype for t in int8.inputs] == ["int8"] and int8.inputs[0].quantized
    assert fp32.inputs[0].shape == int8.inputs[0].shape
    assert fp32.outputs[0].shape[-1] == 10
    assert fp32.operator_count > 3


def test_larger_float_model_is_fp32():
    (mobilenet,) = [p for p in EXAMPLE_MODELS.glob("mobilenet*.tflite")]
    assert read_model_file(mobilenet).variant == "fp32"


def test_multi_input_fixture_lists_every_input():
    info = read_model_file(FIXTURE_MODELS / "multi_input.tflite")
    assert {"float32", "int32", "bool"} <= {t.dtype for t in info.inputs}


def test_custom_ops_are_named():
    info = read_model_file(FIXTURE_MODELS / "unsupported_op.tflite")
    assert info.custom_ops


@pytest.mark.parametrize("data, message", [
    (b"", "not a TFLite flatbuffer"),
    (b"\x00" * 64, "not a TFLite flatbuffer"),
    (b"\x18\x00\x00\x00TFL3", "truncated or corrupt"),
])
def test_unreadable_bytes_raise_one_clear_error(data, message):
    with pytest.raises(ModelFormatError, match=message):
        read_model(data)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4000), flips=st.lists(
    st.tuples(st.integers(min_value=8, max_value=3999), st.integers(min_value=0, max_value=255)),
    max_size=8))
def test_truncated_or_mutated_models_only_raise_model_format_error(cut, flips):
    data = bytearray((EXAMPLE_MODELS / "digits_cnn_int8.tflite").read_bytes()[:4000])
    for position, value in flips:
        data[position] = value
    with contextlib.suppress(ModelFormatError):
        read_model(bytes(data[:cut]))
