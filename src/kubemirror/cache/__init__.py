"""kubemirror.cache (see DESIGN.md)."""

__all__: list[str] = []
