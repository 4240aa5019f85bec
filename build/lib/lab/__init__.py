"""The FT-vs-ICL lab: fine-tune or prompt the same base model, compared fairly, ID and OOD."""

__version__ = "0.1.0"
