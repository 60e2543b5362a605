"""Deployment formats: ONNX export in the standard operator set, AdderNet layers and integer AdderNets included."""

from .onnx import ExportError, export_onnx, register_onnx_symbolics, relative_error
from .onnx_integer import compare_with_onnxruntime, export_integer_onnx

__all__ = ["ExportError", "compare_with_onnxruntime", "export_integer_onnx", "export_onnx", "register_onnx_symbolics",
           "relative_error"]
