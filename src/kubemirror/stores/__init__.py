"""kubemirror.stores (see DESIGN.md)."""

__all__: list[str] = []
