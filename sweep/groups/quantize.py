"""The `quantize` group: post-training conversion to a TFLite flatbuffer.

All options share ``convert(model, x_train) -> bytes``; they differ only in the
converter settings, so each is a few lines over one base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sweep.backend import keras, tf
from sweep.quiet import silenced_stderr
from sweep.settings import at_least, setting


class Quantizer(ABC):
    """Interface of the ``quantize`` group: a Keras model in, ``.tflite`` bytes out."""

    name: str

    @abstractmethod
    def convert(self, model: keras.Model, x_train: np.ndarray) -> bytes:
        """The TFLite flatbuffer; ``x_train`` is there for calibration."""


class ConverterQuantizer(Quantizer):
    """A quantizer that is a set of ``TFLiteConverter`` options."""

    @abstractmethod
    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        """Set this quantizer's converter options."""

    def convert(self, model: keras.Model, x_train: np.ndarray) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        self.configure(converter, x_train)
        with silenced_stderr():  # the MLIR converter prints pages of C++ logging
            return bytes(converter.convert())


@dataclass
class Float32(ConverterQuantizer):
    """No quantization: the float32 TFLite baseline every ratio is measured against."""

    name: str = "none"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        """float32 needs no option."""


@dataclass
class DynamicRange(ConverterQuantizer):
    """int8 weights, float activations (float fallback): the study's smallest file."""

    name: str = "dynamic_range"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]


@dataclass
class Float16(ConverterQuantizer):
    """float16 weights, dequantized to float32 at run time."""

    name: str = "float16"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]


@dataclass
class Calibrated(ConverterQuantizer):
    """Integer kernels whose activation ranges are calibrated on training images."""

    name: str = "calibrated"
    calibration_samples: int = setting(200, at_least(1))

    def calibrate(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        """Representative data: the first ``calibration_samples`` training images."""
        samples = x_train[: self.calibration_samples].astype(np.float32)

        def representative_data():
            for image in samples:
                yield [image[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_data


@dataclass
class FullInteger(Calibrated):
    """Integer only, int8 input and output: what a microcontroller runs natively."""

    name: str = "int8"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        self.calibrate(converter, x_train)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


@dataclass
class IntegerWithFloatFallback(Calibrated):
    """The study's "integer with float fallback": int8 kernels calibrated on data, float32
    input and output, and float kernels kept where an operator has no integer one."""

    name: str = "int8_fallback"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        self.calibrate(converter, x_train)


@dataclass
class Int16x8(Calibrated):
    """16-bit activations with 8-bit weights (TFLite's int16x8 mode): closer to float
    accuracy than int8 for twice the activation memory; int16 input and output."""

    name: str = "int16x8"

    def configure(self, converter: tf.lite.TFLiteConverter, x_train: np.ndarray) -> None:
        self.calibrate(converter, x_train)
        ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        converter.target_spec.supported_ops = [ops]
        converter.inference_input_type = tf.int16
        converter.inference_output_type = tf.int16
