"""dicomml.models (see DESIGN.md)."""
