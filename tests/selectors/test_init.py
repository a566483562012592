"""selectors/__init__.py re-exports exactly the public names of ``labels`` and ``fields``."""

from __future__ import annotations

from kubemirror import selectors


def test_all_lists_the_public_names() -> None:
    public = {
        name
        for name, value in vars(selectors).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith(selectors.__name__ + ".")
        and callable(value)
    }
    assert set(selectors.__all__) == public
    assert selectors.__all__ == [
        "FieldRequirement",
        "FieldSelector",
        "LabelSelector",
        "Operator",
        "Requirement",
        "escape_field_value",
        "label_selector_as_selector",
        "label_selector_from_dict",
        "parse_field_selector",
        "parse_label_selector",
    ]
