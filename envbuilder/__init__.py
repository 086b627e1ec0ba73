"""envbuilder: known-good GPU environments for QLoRA and quantized inference."""

__version__ = "0.1.0"
