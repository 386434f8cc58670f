"""Settings defined once: every field of a settings dataclass carries its default, its check and
its help text, and everything else is derived from that one definition.

    @dataclasses.dataclass(frozen=True)
    class Grid:
        dt: float = setting(0.2, "Time step h in tau (> 0).", check=check_positive)
        method: str = setting("sweep", "How to solve.", choices=("sweep", "iterate"))

        def __post_init__(self):
            validate(self)

* :func:`validate` runs each field's check (and choice list) and stores the normalised value;
* :func:`split` routes keyword arguments to several settings classes and refuses unknown names;
* :func:`signature` builds the Python signature of a function that takes those keywords, so
  ``help(solve)`` and editors show every default;
* :func:`click_options` turns the fields into command-line options (``--t-max`` for ``t_max``),
  with the same defaults and help texts.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Iterable, Mapping

from .validation import ParameterError, Range, check_choice

__all__ = ["Spec", "setting", "validate", "fields", "split", "signature", "click_options", "defaults", "help_text",
           "options_doc"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a setting is: ``help`` (one or two sentences, the allowed range included), ``check``
    (``check(name, value) -> normalised value``, raising :class:`ParameterError`), ``choices``,
    and whether the command line offers it (``cli``) and under which name (``flag``)."""

    help: str
    check: Callable[[str, Any], Any] | None = None
    choices: tuple | None = None
    cli: bool = True
    flag: str | None = None
    metavar: str | None = None
    click_type: Any = None


_TYPES = {"float": float, "int": int, "str": str, "bool": bool, float: float, int: int, str: str, bool: bool}


def setting(default: Any = dataclasses.MISSING, help: str = "", *, check=None, choices=None, cli: bool = True,
            flag: str | None = None, metavar: str | None = None, click_type: Any = None):
    """A dataclass field with its :class:`Spec` (see the module docstring)."""
    spec = Spec(help=help, check=check, choices=tuple(choices) if choices else None, cli=cli, flag=flag,
                metavar=metavar, click_type=click_type)
    return dataclasses.field(default=default, metadata={"spec": spec})


def fields(cls) -> dict[str, tuple[dataclasses.Field, Spec]]:
    """``{name: (field, spec)}`` of the settings fields of ``cls`` (fields without a spec are left out)."""
    return {f.name: (f, f.metadata["spec"]) for f in dataclasses.fields(cls) if "spec" in f.metadata}


def defaults(cls) -> dict[str, Any]:
    """``{name: default}`` of the fields of ``cls`` that have one."""
    return {name: f.default for name, (f, _) in fields(cls).items() if f.default is not dataclasses.MISSING}


def validate(obj) -> None:
    """Check every field of a (frozen) settings object and store the normalised values."""
    for name, (_, spec) in fields(type(obj)).items():
        value = getattr(obj, name)
        if spec.choices is not None:
            check_choice(name, value, spec.choices)
        if spec.check is not None:
            object.__setattr__(obj, name, spec.check(name, value))


def split(kwargs: Mapping[str, Any], *classes, extra: Iterable[str] = ()) -> list[dict]:
    """Route ``kwargs`` to ``classes`` (each name to the first class that has it); names in
    ``extra`` come back in a last dict.  An unknown name is a :class:`ParameterError` that lists
    the allowed ones."""
    extra = tuple(extra)
    out: list[dict] = [{} for _ in classes] + [{}]
    names = [set(fields(c)) for c in classes]
    for key, value in kwargs.items():
        for i, known in enumerate(names):
            if key in known:
                out[i][key] = value
                break
        else:
            if key not in extra:
                allowed = sorted(set().union(*names) | set(extra))
                raise ParameterError(f"unknown setting {key!r}: allowed are {', '.join(allowed)}")
            out[-1][key] = value
    return out


def signature(*classes, leading: Iterable[str] = (), extra: Mapping[str, Any] | None = None) -> inspect.Signature:
    """The signature of ``f(<leading>, *, <every field of classes>, <extra>)``: ``leading`` names
    (required fields) come first as positional-or-keyword parameters; ``extra`` maps further
    keyword-only names to their defaults."""
    leading = tuple(leading)
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in (extra or {}).items()]
    params, seen = [], set()
    for cls in classes:
        for name, (f, _) in fields(cls).items():
            if name in seen:
                continue
            seen.add(name)
            default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if name in leading
                    else inspect.Parameter.KEYWORD_ONLY)
            params.append(inspect.Parameter(name, kind, default=default))
    params.sort(key=lambda p: (p.kind, leading.index(p.name) if p.name in leading else len(leading)))
    return inspect.Signature(params + extra)


def options_doc(*classes, extra: Mapping[str, str] | None = None) -> str:
    """A docstring section listing every field of ``classes`` (first class wins for a repeated
    name) with its default, range and help, then the ``extra`` names with their help."""
    lines, seen = ["", "", "    Options (keyword arguments; defaults and ranges from the settings classes)", "",], set()
    for cls in classes:
        for name, (f, spec) in fields(cls).items():
            if name in seen:
                continue
            seen.add(name)
            default = "required" if f.default is dataclasses.MISSING else f"default {f.default!r}"
            choices = f"; one of {', '.join(map(repr, spec.choices))}" if spec.choices else ""
            lines.append(f"    * ``{name}`` ({default}{choices}; :class:`{cls.__name__}`): {help_text(name, spec)}")
    for name, text in (extra or {}).items():
        lines.append(f"    * ``{name}``: {text}")
    return "\n".join(lines) + "\n"


def help_text(name: str, spec: Spec) -> str:
    """The help of a setting, with its allowed range (from a :class:`Range` check) appended."""
    if isinstance(spec.check, Range):
        shown = spec.flag.lstrip("-").replace("-", "_") if spec.flag else name
        return f"{spec.help} Range: {spec.check.describe(shown)}."
    return spec.help


def click_options(*classes, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                  required: Iterable[str] = (), override: Mapping[str, Mapping] | None = None):
    """A decorator adding one click option per settings field of ``classes`` (``--t-max`` for
    ``t_max``; a bool field becomes a flag), with the field's default and help text.  ``only`` /
    ``exclude`` select fields, ``required`` marks options as required, ``override`` replaces click
    keywords of single options (e.g. a default that differs for one command, with its reason in
    the help)."""
    import click

    only = None if only is None else tuple(only)
    exclude, required, override = set(exclude), set(required), dict(override or {})
    chosen = []
    for cls in classes:
        for name, (f, spec) in fields(cls).items():
            if not spec.cli or name in exclude or (only is not None and name not in only):
                continue
            if name in {c[0] for c in chosen}:
                continue
            chosen.append((name, f, spec))
    if only is not None:
        chosen.sort(key=lambda c: only.index(c[0]))

    def decorate(func):
        for name, f, spec in reversed(chosen):
            flag = spec.flag or "--" + name.replace("_", "-")
            default = None if f.default is dataclasses.MISSING else f.default
            kw: dict[str, Any] = {"help": help_text(name, spec), "show_default": default is not None}
            if isinstance(default, bool):
                kw.update(is_flag=True, default=default, show_default=False)
            else:
                if f.default is not dataclasses.MISSING:
                    # a sequence default is shown and typed as its comma-separated text (the check parses it)
                    kw["default"] = ",".join(f"{v:g}" for v in default) if isinstance(default, tuple) else default
                if spec.choices is not None:
                    kw["type"] = click.Choice(list(spec.choices))
                elif spec.click_type is not None:
                    kw["type"] = spec.click_type
                else:
                    kw["type"] = _TYPES.get(str(f.type).replace(" | None", ""),
                                            type(default) if default is not None else None)
                if spec.metavar:
                    kw["metavar"] = spec.metavar
            if name in required:
                kw.update(required=True, show_default=False)
            kw.update(override.get(name, {}))
            func = click.option(flag, name, **kw)(func)
        return func

    return decorate
