"""dicomml.report (see DESIGN.md)."""
