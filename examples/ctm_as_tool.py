"""The CTM as an LLM agent's inner reasoning engine: ctm_think as a tool in ToolUse-v0.

Cumulative parity of a 16-bit string is hard to do "in your head" but is what the bundled
parity16 CTM was trained on. A scripted agent that calls ``ctm_think`` (and pays for the
ticks it uses) is compared with one that answers without thinking. The agent asks the
CTM to stop once its certainty reaches 0.99; all 16 bits must be right to count.

Run: python examples/ctm_as_tool.py
"""

import json
import re

import gymnasium as gym
import numpy as np

import thinkgym  # noqa: F401  (registers the envs)

rng = np.random.default_rng(0)
tasks = []
for _ in range(20):
    bits = "".join(rng.choice(["0", "1"], size=16))
    answer = "".join(str(int(c)) for c in np.cumsum([b == "0" for b in bits]) % 2)
    tasks.append({"prompt": f"Give the cumulative parity of the zeros in {bits} as 16 bits.",
                  "answer": answer})
env = gym.make("ToolUse-v0", tools=["ctm_think"], tasks=tasks, verifier="exact_match")


def play(think: bool, index: int) -> tuple[float, int]:
    prompt, _ = env.reset(seed=index, options={"index": index})
    bits = re.search(r"zeros in ([01]{16})", prompt)[1]  # type: ignore[index]
    guess, ticks = "0" * 16, 0
    if think:
        call = {"name": "ctm_think",
                "arguments": {"task": "parity", "input": bits, "certainty": 0.99}}
        obs = env.step(f"<tool_call>{json.dumps(call)}</tool_call>")[0]
        content = json.loads(obs.split("<tool_response>")[1].split("</tool_response>")[0])
        guess = re.search(r"answer: ([01]+)", content["content"])[1]  # type: ignore[index]
        ticks = int(re.search(r"ticks: (\d+)", content["content"])[1])  # type: ignore[index]
    info = env.step(f"<answer>{guess}</answer>")[4]
    return float(info["correct"]), ticks


for think in (False, True):
    results = [play(think, i) for i in range(len(tasks))]
    accuracy = np.mean([r[0] for r in results])
    print(f"{'calls ctm_think' if think else 'answers directly':<16} accuracy {accuracy:.2f}  "
          f"mean CTM ticks {np.mean([r[1] for r in results]):.1f}")
