from __future__ import annotations

import pytest

from thinkgym.errors import RegistryError, ToolError, ToolValidationError
from thinkgym.registry import Registry
from thinkgym.tools import TOOLS, FunctionTool, RetryPolicy, invoke, tool


def test_builtins_are_registered() -> None:
    assert {"calculator", "echo", "python"} <= set(TOOLS.names())
    assert invoke(TOOLS, "echo", {"text": "hi"}).output == "hi"


def test_bare_decorator_and_options() -> None:
    @tool
    def greet(name: str) -> str:
        """Say hello."""
        return f"hello {name}"

    @tool(name="greet2", timeout=1.5, retry=RetryPolicy(max_attempts=2))
    def other(name: str) -> str:
        """Say hi."""
        return f"hi {name}"

    assert isinstance(greet, FunctionTool)
    assert greet(name="Ada") == "hello Ada"
    assert other.name == "greet2"
    assert other.timeout == 1.5
    assert other.retry.max_attempts == 2
    assert "greet" not in TOOLS  # no registry given: nothing registered globally


def test_decorator_registers_and_refuses_duplicates() -> None:
    box: Registry = Registry("tool")

    @tool(registry=box)
    def ping() -> str:
        """Ping."""
        return "pong"

    assert box.get("ping") is ping
    with pytest.raises(RegistryError, match="already registered"):
        @tool(registry=box)
        def ping() -> str:
            """Ping again."""
            return "pong"


def test_invoke_unknown_tool_suggests_names() -> None:
    with pytest.raises(ToolError, match=r"unknown tool 'calculater'.*did you mean 'calculator'"):
        invoke(TOOLS, "calculater", {"expression": "1"})
    with pytest.raises(ToolError, match="unknown tool"):
        invoke(TOOLS, None, {})


@pytest.mark.parametrize("args", [None, "2+2", ["2+2"], 3])
def test_invoke_non_object_arguments(args: object) -> None:
    with pytest.raises(ToolValidationError, match="JSON object"):
        invoke(TOOLS, "calculator", args)


def test_invoke_on_a_plain_mapping_of_tools() -> None:
    tools = {"echo": TOOLS.get("echo")}
    assert invoke(tools, "echo", {"text": "a"}).tool == "echo"


def test_resolve_tool_names_use_the_given_registry_else_tools() -> None:
    from thinkgym.errors import ConfigError
    from thinkgym.tools.resolve import resolve_tool

    box: Registry = Registry("tool")

    @tool(registry=box)
    def ping() -> str:
        """Ping."""
        return "pong"

    assert resolve_tool("ping", registry=box) is ping
    assert resolve_tool("calculator") is TOOLS.get("calculator")  # no registry: TOOLS
    with pytest.raises(ConfigError, match=r"unknown tool 'calculator'.*Known tools: ping"):
        resolve_tool("calculator", registry=box)  # a given registry replaces TOOLS
