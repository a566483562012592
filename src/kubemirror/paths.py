"""Compiled field paths: the ``IndexBy``/``IgnoreFields`` expressions of a watcher config.

Bottom layer of kubemirror (beside ``keys`` and ``selectors``), after the
haproxy-template-ic ``WatcherConfig`` seed. An expression such as
``metadata.labels['kubernetes.io/service-name']``, ``spec.rules[0].host`` or
kubectl's ``{.metadata.name}`` is parsed once into a ``FieldPath`` whose getter
and remover are tight loops over pre-parsed segments. Everything here is
immutable and thread-safe; ``remove``/``remove_fields`` never mutate their input
and copy only the containers on the removed path (structural sharing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from kubemirror import errors, jsontext

__all__ = [
    "FieldPath",
    "Segment",
    "compile_all",
    "fields_remover",
    "remove_fields",
]

Segment = str | int
"""A mapping key (``str``) or a list index (``int``, negative counts from the end)."""

_MISSING: Final = object()
_FORBIDDEN_IN_NAMES: Final = {
    "*": "wildcards are not supported",
    "?": "filter expressions are not supported",
    "@": "filter expressions are not supported",
    "(": "filter expressions are not supported",
    ")": "filter expressions are not supported",
    ",": "unions are not supported",
    "]": "unbalanced ']'",
    "{": "braces may only wrap the whole path, as in '{.metadata.name}'",
    "}": "braces may only wrap the whole path, as in '{.metadata.name}'",
    "'": "quoted keys must be in brackets, as in \"['app.kubernetes.io/name']\"",
    '"': "quoted keys must be in brackets, as in \"['app.kubernetes.io/name']\"",
    "$": "'$' may only start the path",
}
_ESCAPABLE: Final = frozenset(".[]\\")
_DIGITS: Final = frozenset("0123456789")
_PLAIN_NAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/:+~%"
)


def _fail(message: str, expression: str, position: int | None) -> errors.FieldPathError:
    return errors.FieldPathError(message, expression=expression, position=position)


class _PathParser:
    """Parses one expression into segments; positions refer to the original text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)

    def parse(self) -> tuple[Segment, ...]:
        text = self.text
        if not text:
            raise _fail("a field path must not be empty", text, 0)
        if text[0] == "{":
            close = text.find("}")
            if close < 0:
                raise _fail("unbalanced '{': missing the closing '}'", text, 0)
            if close != len(text) - 1:
                raise _fail("unexpected text after the closing '}'", text, close + 1)
            self.pos, self.end = 1, close
            if self.pos == self.end:
                raise _fail("'{}' holds no field path", text, 1)
        if text[self.pos] == "$":
            self.pos += 1
            if self.pos == self.end:
                raise _fail("expected a field after '$'", text, self.pos)
            if text[self.pos] not in ".[":
                raise _fail("expected '.' or '[' after '$'", text, self.pos)
        segments: list[Segment] = []
        if text[self.pos] == "[":
            segments.append(self.bracket())
        else:
            if text[self.pos] == ".":
                self.pos += 1
            segments.append(self.name())
        while self.pos < self.end:
            char = text[self.pos]
            if char == "[":
                segments.append(self.bracket())
            elif char == ".":
                self.pos += 1
                segments.append(self.name())
            else:
                raise _fail(f"expected '.' or '[' before {char!r}", text, self.pos)
        return tuple(segments)

    def name(self) -> str:
        text, start = self.text, self.pos
        if start >= self.end:
            raise _fail("expected a field name after '.' (trailing dot)", text, start - 1)
        if text[start] == ".":
            raise _fail("recursive descent '..' is not supported", text, start - 1)
        if text[start] == "[":
            raise _fail("expected a field name after '.', not '['", text, start)
        chars: list[str] = []
        pos = start
        while pos < self.end:
            char = text[pos]
            if char in ".[":
                break
            if char == "\\":
                if pos + 1 >= self.end or text[pos + 1] not in _ESCAPABLE:
                    raise _fail("'\\' may only escape '.', '[', ']' or '\\'", text, pos)
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char.isspace():
                raise _fail("unexpected whitespace", text, pos)
            problem = _FORBIDDEN_IN_NAMES.get(char)
            if problem:
                raise _fail(problem, text, pos)
            chars.append(char)
            pos += 1
        self.pos = pos
        return "".join(chars)

    def bracket(self) -> Segment:
        text, open_pos = self.text, self.pos
        pos = open_pos + 1
        if pos >= self.end:
            raise _fail("unbalanced '[': missing ']'", text, open_pos)
        char = text[pos]
        if char in "'\"":
            key, pos = self.quoted(pos)
            segment: Segment = key
        elif char in _DIGITS or char == "-":
            digits_start = pos
            pos += 1
            while pos < self.end and text[pos] in _DIGITS:
                pos += 1
            literal = text[digits_start:pos]
            if literal == "-":
                raise _fail("expected digits after '-'", text, digits_start + 1)
            segment = int(literal)
        elif char == "]":
            raise _fail("empty brackets: expected an integer index or a quoted key", text, pos)
        elif char == "*":
            raise _fail("wildcards are not supported", text, pos)
        elif char in "?@(":
            raise _fail("filter expressions are not supported", text, pos)
        else:
            raise _fail(
                "expected an integer index or a quoted key inside '[...]', "
                "as in [0] or ['app.kubernetes.io/name']",
                text,
                pos,
            )
        if pos >= self.end:
            raise _fail("unbalanced '[': missing ']'", text, open_pos)
        if text[pos] != "]":
            problem = {":": "slices are not supported", ",": "unions are not supported"}
            raise _fail(problem.get(text[pos], "expected ']'"), text, pos)
        self.pos = pos + 1
        return segment

    def quoted(self, quote_pos: int) -> tuple[str, int]:
        text, quote = self.text, self.text[quote_pos]
        chars: list[str] = []
        pos = quote_pos + 1
        while pos < self.end:
            char = text[pos]
            if char == "\\" and pos + 1 < self.end:
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char == quote:
                return "".join(chars), pos + 1
            chars.append(char)
            pos += 1
        raise _fail(f"unterminated quoted key: missing the closing {quote}", text, quote_pos)


def _render(segments: Sequence[Segment]) -> str:
    """A canonical expression for ``segments`` that compiles back to them."""
    parts: list[str] = []
    for segment in segments:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif segment and all(c in _PLAIN_NAME_CHARS for c in segment):
            parts.append(f".{segment}" if parts else segment)
        else:
            escaped = segment.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A compiled field path: ``segments`` are mapping keys (``str``) and list indexes (``int``).

    Build with ``FieldPath.compile(expr)`` (cached). Accepted syntax: dotted
    names (``metadata.namespace``), quoted keys in brackets
    (``metadata.labels['kubernetes.io/service-name']`` or ``["..."]``, backslash
    escapes the quote), integer indexes (``spec.rules[0]``; negative indexes count
    from the end, ``[-1]`` is the last item), ``\\.`` for a literal dot in a name,
    and the kubectl forms ``{.metadata.name}``, ``.metadata.name``,
    ``$.metadata.name``. Wildcards, filters, slices, unions and ``..`` raise
    ``FieldPathError`` with the position of the offending character.

    ``get(obj)`` returns the value at the path (the object's own, shared value),
    or ``None`` when a step is absent, ``null`` or of the wrong type; it never
    raises on decoded JSON. ``remove(obj)`` returns a copy of ``obj`` without the
    field, copying only the containers along the path (every other subtree is the
    very same object), or ``obj`` itself when the field is absent; it never
    mutates ``obj``; a removed list item shifts the following items down. Both
    are closures specialised for the path when it is compiled (short key-only
    paths become straight-line code), so calling them costs about as much as
    hand-written dict access.

    Equality and hashing use ``segments`` only, so ``{.a.b}`` equals ``a.b``.
    Immutable and thread-safe.
    """

    expression: str = field(compare=False)
    segments: tuple[Segment, ...]
    get: Callable[[Any], Any] = field(init=False, repr=False, compare=False, hash=False)
    remove: Callable[[Mapping[str, Any]], Mapping[str, Any]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not self.segments or not all(
            isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool))
            for s in self.segments
        ):
            raise _fail(f"invalid segments {self.segments!r}", str(self.expression), None)
        segments = tuple(self.segments)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "get", _make_getter(segments))
        object.__setattr__(self, "remove", _make_remover(segments))

    @classmethod
    def compile(cls, expr: str) -> FieldPath:
        """Compile (or fetch from the cache) the path for ``expr``; raises ``FieldPathError``."""
        if not isinstance(expr, str):
            raise errors.FieldPathError(
                f"a field path must be a string, got {type(expr).__name__}", expression=repr(expr)
            )
        return _compile(expr)

    @classmethod
    def from_segments(cls, *segments: Segment) -> FieldPath:
        """A path from explicit segments, with a canonical ``expression``."""
        return cls(_render(segments), tuple(segments))

    def index_value(self, obj: Any) -> str | None:
        """The value as an index key: strings as they are, ``true``/``false``, numbers as
        Go's JSON writes them (``3``, ``2.5``, ``1e-7``), mappings and lists as compact
        JSON with sorted keys; ``None`` when absent or ``null``.
        """
        return _index_text(self.get(obj))

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"FieldPath.compile({self.expression!r})"

    def __reduce__(self) -> tuple[type[FieldPath], tuple[str, tuple[Segment, ...]]]:
        # Pickle the expression and segments, not the compiled closures.
        return FieldPath, (self.expression, self.segments)


@functools.lru_cache(maxsize=1024)
def _compile(expr: str) -> FieldPath:
    return FieldPath(expr, _PathParser(expr).parse())


# --------------------------------------------------------------------------- getters

# The specialised closures below lean on one fact of decoded JSON: only mappings
# have a ``.get`` method, so ``x.get(k)`` either steps into a mapping or raises
# AttributeError (``None``, lists, strings, numbers), which means "absent".


def _make_getter(segments: tuple[Segment, ...]) -> Callable[[Any], Any]:
    if not all(type(s) is str for s in segments):
        return functools.partial(_get_any, segments)
    if len(segments) == 1:
        (a,) = segments

        def get1(obj: Any) -> Any:
            try:
                return obj.get(a)
            except AttributeError:
                return None

        return get1
    if len(segments) == 2:
        a, b = segments

        def get2(obj: Any) -> Any:
            try:
                return obj.get(a).get(b)
            except AttributeError:
                return None

        return get2
    if len(segments) == 3:
        a, b, c = segments

        def get3(obj: Any) -> Any:
            try:
                return obj.get(a).get(b).get(c)
            except AttributeError:
                return None

        return get3
    return functools.partial(_get_keys, segments)


def _get_keys(keys: tuple[Any, ...], obj: Any) -> Any:
    try:
        for key in keys:
            obj = obj.get(key)
    except AttributeError:
        return None
    return obj


def _get_any(segments: tuple[Segment, ...], obj: Any) -> Any:
    for segment in segments:
        if isinstance(segment, str):
            try:
                obj = obj.get(segment)
            except AttributeError:
                return None
        elif obj.__class__ is list or isinstance(obj, tuple):
            try:
                obj = obj[segment]
            except IndexError:
                return None
        else:
            return None
    return obj


# --------------------------------------------------------------------------- removers


def _is_map(value: Any) -> bool:
    return value.__class__ is dict or isinstance(value, Mapping)


def _copy_map(value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = value.copy() if value.__class__ is dict else dict(value)
    return copy


def _make_remover(segments: tuple[Segment, ...]) -> Callable[[Any], Any]:
    if not all(type(s) is str for s in segments) or len(segments) > 3:
        return functools.partial(_remove_any, segments)
    keys = cast(tuple[str, ...], segments)
    if len(keys) == 1:
        (a,) = keys

        def remove1(obj: Any) -> Any:
            if not _is_map(obj) or a not in obj:
                return obj
            out = _copy_map(obj)
            del out[a]
            return out

        return remove1
    if len(keys) == 2:
        a, b = keys

        def remove2(obj: Any) -> Any:
            if not _is_map(obj):
                return obj
            mid = obj.get(a)
            if mid is None or not _is_map(mid) or b not in mid:
                return obj
            new_mid = _copy_map(mid)
            del new_mid[b]
            out = _copy_map(obj)
            out[a] = new_mid
            return out

        return remove2
    a, b, c = keys

    def remove3(obj: Any) -> Any:
        if not _is_map(obj):
            return obj
        mid = obj.get(a)
        if mid is None or not _is_map(mid):
            return obj
        low = mid.get(b)
        if low is None or not _is_map(low) or c not in low:
            return obj
        new_low = _copy_map(low)
        del new_low[c]
        new_mid = _copy_map(mid)
        new_mid[b] = new_low
        out = _copy_map(obj)
        out[a] = new_mid
        return out

    return remove3


def _remove_any(segments: tuple[Segment, ...], obj: Any) -> Any:
    parents: list[tuple[Any, Segment]] = []
    current: Any = obj
    for segment in segments[:-1]:
        child = _child(current, segment)
        if child is _MISSING:
            return obj
        parents.append((current, segment))
        current = child
    replacement = _without(current, segments[-1])
    if replacement is _MISSING:
        return obj
    for container, segment in reversed(parents):
        replacement = _with(container, segment, replacement)
    return replacement


def _child(container: Any, segment: Segment) -> Any:
    if isinstance(segment, str):
        if _is_map(container) and segment in container:
            return container[segment]
        return _MISSING
    if isinstance(container, list | tuple):
        index = _normalize(segment, len(container))
        return _MISSING if index is None else container[index]
    return _MISSING


def _normalize(segment: int, length: int) -> int | None:
    index = segment + length if segment < 0 else segment
    return index if 0 <= index < length else None


def _without(container: Any, segment: Segment) -> Any:
    if isinstance(segment, str):
        if _is_map(container) and segment in container:
            copy = _copy_map(container)
            del copy[segment]
            return copy
        return _MISSING
    if isinstance(container, list | tuple):
        index = _normalize(segment, len(container))
        if index is None:
            return _MISSING
        items = list(container)
        del items[index]
        return tuple(items) if isinstance(container, tuple) else items
    return _MISSING


def _with(container: Any, segment: Segment, value: Any) -> Any:
    if isinstance(segment, str):
        copy = _copy_map(container)
        copy[segment] = value
        return copy
    items = list(container)
    index = _normalize(segment, len(items))
    assert index is not None  # resolved on the way down
    items[index] = value
    return tuple(items) if isinstance(container, tuple) else items


# --------------------------------------------------------------------------- several paths

_Trie = dict[Segment, "_Trie | None"]  # None marks a field to delete
# A compiled trie node: (key branches, index branches); a branch's node is None
# when the field itself is removed.
_Node = tuple[tuple[tuple[str, "_Node | None"], ...], tuple[tuple[int, "_Node | None"], ...]]


@functools.lru_cache(maxsize=256)
def _plan(paths: tuple[FieldPath, ...]) -> _Node:
    root: _Trie = {}
    for path in paths:
        node = root
        *inner, last = path.segments
        for segment in inner:
            if segment in node and node[segment] is None:
                break  # an ancestor is removed already
            child = node.get(segment)
            if child is None:
                child = node[segment] = {}
            node = child
        else:
            node[last] = None
    return _freeze(root)


def _freeze(trie: _Trie) -> _Node:
    keys = tuple(
        (k, None if sub is None else _freeze(sub)) for k, sub in trie.items() if isinstance(k, str)
    )
    indexes = tuple(
        (k, None if sub is None else _freeze(sub))
        for k, sub in trie.items()
        if not isinstance(k, str)
    )
    return keys, indexes


def _prune(container: Any, node: _Node) -> Any:
    if container.__class__ is dict or isinstance(container, Mapping):
        copy: dict[str, Any] | None = None
        for key, sub in node[0]:
            if sub is None:
                if key in container:
                    if copy is None:
                        copy = _copy_map(container)
                    del copy[key]
            else:
                child = container.get(key)
                if child is not None:
                    pruned = _prune(child, sub)
                    if pruned is not child:
                        if copy is None:
                            copy = _copy_map(container)
                        copy[key] = pruned
        return container if copy is None else copy
    if isinstance(container, list | tuple) and node[1]:
        length = len(container)
        removed: set[int] = set()
        replaced: dict[int, Any] = {}
        for segment, sub in node[1]:
            index = _normalize(segment, length)
            if index is None:
                continue
            if sub is None:
                removed.add(index)
            else:
                # [0] and [-n] may name the same item: prune the already pruned copy.
                child = replaced.get(index, container[index])
                pruned = _prune(child, sub)
                if pruned is not container[index]:
                    replaced[index] = pruned
        if not removed and not replaced:
            return container
        items = list(container)
        for index, value in replaced.items():
            items[index] = value
        for index in sorted(removed, reverse=True):
            del items[index]
        return tuple(items) if isinstance(container, tuple) else items
    return container


def remove_fields(obj: Mapping[str, Any], paths: Sequence[FieldPath]) -> Mapping[str, Any]:
    """``obj`` without any of ``paths``: one copy per container on the removed paths.

    All paths are resolved against ``obj`` as given (list indexes do not shift
    between paths). Returns ``obj`` itself when none of the fields is present;
    never mutates ``obj``; untouched subtrees are shared with it. The removal
    plan is cached per tuple of paths; hot loops can skip even that lookup with
    ``fields_remover(paths)``.
    """
    if not paths:
        return obj
    if len(paths) == 1:
        return paths[0].remove(obj)
    result: Mapping[str, Any] = _prune(obj, _plan(tuple(paths)))
    return result


def fields_remover(paths: Sequence[FieldPath]) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """A function doing ``remove_fields(obj, paths)`` with the plan compiled once.

    The identity function when ``paths`` is empty. Thread-safe, like the paths.
    """
    if not paths:
        return _identity
    if len(paths) == 1:
        return paths[0].remove
    return functools.partial(_prune, node=_plan(tuple(paths)))


def _identity(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj


def compile_all(exprs: Sequence[str], field: str) -> tuple[FieldPath, ...]:
    """Compile every expression of a config list; errors name the item as ``field[i]``."""
    if isinstance(exprs, str):
        raise errors.FieldPathError(
            "expected a list of field paths, got a single string", field=field, expression=exprs
        )
    compiled: list[FieldPath] = []
    for index, expr in enumerate(exprs):
        try:
            compiled.append(FieldPath.compile(expr))
        except errors.FieldPathError as exc:
            raise errors.FieldPathError(
                exc.message,
                field=f"{field}[{index}]",
                expression=exc.expression,
                position=exc.position,
            ) from None
    return tuple(compiled)


# --------------------------------------------------------------------------- index values


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(type(value).__name__)


def _index_text(value: Any) -> str | None:
    if value.__class__ is str:
        result: str = value
        return result
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    return jsontext.value_text(value, default=_jsonable)
