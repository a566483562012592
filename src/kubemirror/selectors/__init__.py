"""Kubernetes label and field selectors with the API server's exact parsing and matching rules.

Bottom layer of kubemirror (beside ``keys`` and ``paths``): ``labels`` holds
``LabelSelector`` and its ``Requirement``/``Operator``, ``fields`` holds
``FieldSelector``. Selectors are immutable, hashable and thread-safe; a
malformed one raises ``errors.SelectorError`` quoting the text and position.
"""

from kubemirror.selectors.fields import (
    FieldRequirement,
    FieldSelector,
    escape_field_value,
    parse_field_selector,
)
from kubemirror.selectors.labels import (
    LabelSelector,
    Operator,
    Requirement,
    label_selector_as_selector,
    label_selector_from_dict,
    parse_label_selector,
)

__all__ = [
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
