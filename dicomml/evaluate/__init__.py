"""dicomml.evaluate (see DESIGN.md)."""
