"""ONNX export, int8 quantisation, the export's self-check and an ONNX Runtime model class."""
