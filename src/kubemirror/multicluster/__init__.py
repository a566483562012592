"""kubemirror.multicluster (see DESIGN.md)."""

__all__: list[str] = []
