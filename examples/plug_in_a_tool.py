"""Plug your own tools into ToolUse-v0: a LangChain @tool and a plain typed function.

Run: python examples/plug_in_a_tool.py
"""

import json

import gymnasium as gym
from langchain_core.tools import tool as lc_tool

import thinkgym  # noqa: F401  (registers the envs)


@lc_tool
def to_celsius(fahrenheit: float) -> float:
    """Convert a temperature from Fahrenheit to Celsius."""
    return round((fahrenheit - 32) * 5 / 9, 1)


def city_temperature(city: str) -> float:
    """Today's temperature of a city, in Fahrenheit.

    Args:
        city: The city name, e.g. "Oslo".
    """
    return {"Oslo": 41.0, "Lisbon": 68.0}[city]  # a KeyError becomes an error observation


tasks = [{"prompt": "How warm is it in Lisbon today, in Celsius?", "answer": "20"}]
env = gym.make("ToolUse-v0", tools=[to_celsius, city_temperature, "calculator"],
               tasks=tasks, verifier="numeric")
prompt, info = env.reset(seed=0)
print(prompt)


def call(name: str, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def result(observation: str) -> object:  # the scripted agent reads the tool's answer
    return json.loads(observation.split("<tool_response>")[1].split("</tool_response>")[0])


fahrenheit = result(env.step(call("city_temperature", city="Lisbon"))[0])["content"]
print("city_temperature ->", fahrenheit)
celsius = result(env.step(call("to_celsius", fahrenheit=fahrenheit))[0])["content"]
print("to_celsius ->", celsius)
_, reward, terminated, _, info = env.step(f"<think>done</think><answer>{celsius}</answer>")
print(f"terminated={terminated} correct={info['correct']} reward={reward:.2f}")
