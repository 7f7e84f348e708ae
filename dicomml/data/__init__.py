"""dicomml.data (see DESIGN.md)."""
