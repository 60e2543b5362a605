"""Deployment formats: ONNX export in the standard operator set, AdderNet layers included."""

from .onnx import ExportError, export_onnx, register_onnx_symbolics, relative_error

__all__ = ["ExportError", "export_onnx", "register_onnx_symbolics", "relative_error"]
