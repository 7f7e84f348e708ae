"""dicomml.parallel (see DESIGN.md)."""
