"""kubemirror.kvstore (see DESIGN.md)."""

__all__: list[str] = []
