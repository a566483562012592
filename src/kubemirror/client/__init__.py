"""kubemirror.client (see DESIGN.md)."""

__all__: list[str] = []
