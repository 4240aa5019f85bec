"""Jinja templates of declarative tasks: one row of a dataset in, one field of an example
out, and a one-line `LabError` naming the field, the row and the fix when that fails.

A template sees the row's columns by name, and what the lab adds under `lab`:
``lab.row`` (the row's index in its source), ``lab.split``, ``lab.seed``, ``lab.task`` and
``lab.params`` (the task's parameters). Text fields render to strings; a `meta` value, a `choices` or
an `options` template that is one expression gives that expression's Python value
(``{{ lab.row }}`` is an int, ``{{ choices.text }}`` a list, as lm-evaluation-harness
renders doc_to_choice).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

from lab.core.errors import LabError, suggest
from lab.tasks.mbpp import clean_code

_OPTS: dict[str, Any] = {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True}
TEXT = jinja2.Environment(autoescape=False, **_OPTS)
TEXT.filters["clean_code"] = clean_code  # MBPP / HumanEval reference programs
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")
_ONE_EXPRESSION = re.compile(r"\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*", re.DOTALL)


@cache
def _compile(source: str) -> jinja2.Template:
    return TEXT.from_string(source)


@cache
def _expression(source: str) -> jinja2.Template:
    """A template that sets `__value` to expression `source` (read from its context)."""
    return TEXT.from_string(f"{{% set __value = ({source}) %}}")


def context(row: Mapping[str, Any], lab: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: Jinja's globals (range, dict...), the row's columns, `lab`."""
    return {**TEXT.globals, **row, "lab": lab}


def _run(t: jinja2.Template, ctx: dict[str, Any]) -> tuple[Any, str]:
    # The context is shared, not copied: one dict per row serves all its templates (Jinja's
    # render() copies it and the globals per call, most of the time of a large task).
    c = t.new_context(ctx, shared=True)
    return c, "".join(t.root_render_func(c))


def compile_check(field: str, source: str, where: str, expression: bool = False) -> None:
    """A template that is not valid Jinja fails here, before any data is read."""
    try:
        _expression(source) if expression else _compile(source)
    except jinja2.TemplateSyntaxError as e:
        raise LabError(
            f"{where}: `{field}` is not a valid Jinja "
            f"{'expression' if expression else 'template'} ({e.message}); fix it"
        ) from None


def _fail(e: Exception, field: str, ctx: Mapping[str, Any], where: str) -> LabError:
    row = ctx["lab"]["row"]
    if isinstance(e, jinja2.UndefinedError):
        m = _UNDEFINED.search(str(e))
        name = (m.group(1) or m.group(2)) if m else str(e)
        columns = sorted(k for k in ctx if k != "lab" and k not in TEXT.globals)
        return LabError(
            f"{where}: `{field}` uses '{name}', which row {row} of the data lacks"
            f"{suggest(name, columns)}; its columns are {columns}: fix the template or the "
            "data"
        )
    why = f"{type(e).__name__}: {e}".splitlines()[0]
    return LabError(f"{where}: `{field}` fails on row {row} ({why}); fix the template or the data")


def render(field: str, source: str, ctx: Mapping[str, Any], where: str) -> str:
    """The text of template `source` on one row."""
    if "{" not in source:
        return source
    try:
        return _run(_compile(source), ctx)[1]
    except Exception as e:
        raise _fail(e, field, ctx, where) from None


def render_value(field: str, source: str, ctx: Mapping[str, Any], where: str) -> Any:
    """The Python value of a template that is one expression (``{{ lab.row }}`` is an int,
    ``{{ label | string }}`` a string), else the template's text."""
    m = _ONE_EXPRESSION.fullmatch(source)
    if not m:
        return render(field, source, ctx, where)
    try:
        return _run(_expression(m["expr"]), ctx)[0].vars["__value"]
    except Exception as e:
        raise _fail(e, field, ctx, where) from None


def render_list(
    field: str, source: list[str] | str, ctx: Mapping[str, Any], where: str
) -> list[str]:
    """A list of strings: each template of a list, or one template that renders a list
    (or the text of a Python list literal)."""
    if isinstance(source, list):
        return [render(f"{field}[{i}]", s, ctx, where) for i, s in enumerate(source)]
    value = render_value(field, source, ctx, where)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = None
    if not isinstance(value, list | tuple) or not value:
        raise LabError(
            f"{where}: `{field}` must give a non-empty list on row {ctx['lab']['row']} "
            f"(got {value!r}); write a list of templates or a template of a list column"
        )
    return [str(v) for v in value]


def test(field: str, source: str, ctx: Mapping[str, Any], where: str) -> bool:
    """The truth of Jinja expression `source` (a `where` filter) on one row."""
    try:
        return bool(_run(_expression(source), ctx)[0].vars["__value"])
    except Exception as e:
        raise _fail(e, field, ctx, where) from None
