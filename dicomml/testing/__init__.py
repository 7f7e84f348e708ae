"""dicomml.testing (see DESIGN.md)."""
