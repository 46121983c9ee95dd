"""scheduler: comes with a later issue (see DESIGN.md)."""
