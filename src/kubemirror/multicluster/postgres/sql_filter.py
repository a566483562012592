"""Label and field selectors pushed down to SQL over ``kubemirror_objects`` (multicluster layer).

``where_clause`` turns an ``ObjectFilter`` into a SQL condition and its
parameters, using the columns ``PostgresStorage`` extracts: ``cluster``,
``namespace``, ``name`` and the ``labels`` JSONB (GIN-indexed: equalities become
one ``@>`` containment, ``exists``/``!`` become ``?``). Every label operator but
``gt``/``lt`` and the ``metadata.name``/``metadata.namespace`` field selectors are
translated exactly; the rest (numeric comparisons, other fields such as
``status.phase``) is left to ``ObjectFilter.matches_object`` on the fetched rows,
which the storage applies to every row anyway. Pure functions, safe from any
thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from kubemirror import selectors
from kubemirror.multicluster.filters import ObjectFilter

__all__ = ["SqlCondition", "where_clause"]


@dataclass(slots=True)
class SqlCondition:
    """A SQL boolean expression (``%s`` placeholders) and its parameters, in order."""

    terms: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    exact: bool = True
    """False when some selector terms are left to ``ObjectFilter.matches_object``."""

    def add(self, term: str, *params: object) -> None:
        """AND ``term`` in."""
        self.terms.append(term)
        self.params.extend(params)

    @property
    def sql(self) -> str:
        """The conjunction (``TRUE`` when empty)."""
        return " AND ".join(self.terms) if self.terms else "TRUE"


def where_clause(flt: ObjectFilter, *, namespaced: bool, alias: str = "o") -> SqlCondition:
    """The SQL condition selecting ``flt``'s scope and the selector terms SQL can
    decide, over the objects table aliased ``alias``."""
    cond = SqlCondition()
    if flt.clusters:
        cond.add(f"{alias}.cluster = ANY(%s)", sorted(flt.clusters))
    if flt.namespace and namespaced:
        cond.add(f"{alias}.namespace = %s", flt.namespace)
    label = flt.label_selector
    if label is not None:
        _labels(cond, label, alias)
    fields = flt.field_selector
    if fields is not None:
        for req in fields.requirements:
            column = {"metadata.name": "name", "metadata.namespace": "namespace"}.get(req.field)
            if column is None:
                cond.exact = False
                continue
            op = "=" if req.operator is selectors.Operator.EQUALS else "<>"
            cond.add(f"{alias}.{column} {op} %s", req.value)
    return cond


def _labels(cond: SqlCondition, label: selectors.LabelSelector, alias: str) -> None:
    if label.selects_nothing:
        cond.add("FALSE")
        return
    Op = selectors.Operator
    contained: dict[str, str] = {}
    for req in label.requirements:
        op, key, values = req.operator, req.key, req.values
        if op in (Op.EQUALS, Op.DOUBLE_EQUALS) or (op is Op.IN and len(values) == 1):
            if key in contained and contained[key] != values[0]:
                cond.add("FALSE")
                return
            contained[key] = values[0]
        elif op is Op.IN:
            cond.add(f"{alias}.labels ->> %s = ANY(%s)", key, list(values))
        elif op is Op.NOT_EQUALS:
            cond.add(f"NOT {alias}.labels @> %s", Jsonb({key: values[0]}))
        elif op is Op.NOT_IN:
            cond.add(f"NOT coalesce({alias}.labels ->> %s = ANY(%s), FALSE)", key, list(values))
        elif op is Op.EXISTS:
            cond.add(f"{alias}.labels ? %s", key)
        elif op is Op.DOES_NOT_EXIST:
            cond.add(f"NOT {alias}.labels ? %s", key)
        else:  # gt / lt: numeric comparisons stay with ObjectFilter.matches_object
            cond.exact = False
    if contained:
        cond.add(f"{alias}.labels @> %s", Jsonb(contained))
