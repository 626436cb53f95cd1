"""``thinkgym demo``: a short end-to-end tour on CPU with the bundled defaults.

It grows with the project: every capability that lands adds a stage here. Each
stage prints what it does and how long it took, so CI logs read as a report.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

__all__ = ["STAGES", "configure", "run_demo"]


def _stage_envs(args: argparse.Namespace) -> None:
    """Make every registered env, reset it with a seed and step it with sampled actions."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.envs import ENVS

    for entry in ENVS:
        env = gym.make(entry.id)
        env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        total, steps, done = 0.0, 0, False
        while not done and steps < args.max_steps:
            action = env.action_space.sample()
            _, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = terminated or truncated
        env.close()
        print(f"  {entry.id:<16} {steps:3d} steps  return {total:+.3f}  "
              f"ended={'yes' if done else 'no (step cap)'}")


def _stage_ctm_parity(args: argparse.Namespace) -> None:
    """Load the bundled parity16 CTM and measure it at a few tick counts on fresh items."""
    from thinkgym.ctm_core.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint("parity16", samples=256, start_index=args.seed * 256,
                                 progress=False)
    picks = sorted({1, result.ticks // 4, result.ticks // 2, result.ticks})
    cells = "  ".join(f"t{t}: {result.accuracy_per_tick[t - 1]:.3f} "
                      f"(cert {result.certainty_per_tick[t - 1]:.2f})" for t in picks)
    print(f"  parity16, {result.samples} held-out items  {cells}")
    print(f"  at each item's most certain tick: accuracy {result.accuracy_most_certain:.3f}")
    low = evaluate_checkpoint("parity16", samples=256, start_index=args.seed * 256,
                              progress=False, dtype="bfloat16")
    print(f"  the same with bfloat16 ticks (set_inference_dtype): accuracy "
          f"{low.accuracy_most_certain:.3f}")


def _stage_ctm_think(args: argparse.Namespace) -> None:
    """CTMThink-v0: halting baselines on the same seeded episodes, and the ctm_think tool."""
    from thinkgym.agents.ctm_think import CertaintyThresholdPolicy, FixedBudgetPolicy
    from thinkgym.tools import TOOLS
    from thinkgym.training.ctm_halting import evaluate_halting

    for name, policy in (("fixed budget", FixedBudgetPolicy()),
                         ("certainty >= 0.95", CertaintyThresholdPolicy(0.95))):
        r = evaluate_halting(policy, episodes=100, seed=args.seed)
        print(f"  {name:<18} accuracy {r.accuracy:.3f}  mean ticks {r.mean_ticks:5.1f}  "
              f"mean return {r.mean_return:+.3f}")
    answer = TOOLS.get("ctm_think")(task="parity", input="0110100111010010")
    print("  ctm_think tool: " + answer.replace("\n", ", "))


def _stage_ctm_selfplay(args: argparse.Namespace) -> None:
    """One self-play cycle from parity16: generate pairs, train challengers, tournament."""
    import tempfile

    from thinkgym.ctm_core.selfplay.generator import GeneratorConfig
    from thinkgym.ctm_core.selfplay.master import MasterTrainer, SelfPlayConfig

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SelfPlayConfig(root=tmp, cycles=1, seed=args.seed, progress=False,
                             generator=GeneratorConfig(batches=2, batch_size=32, ticks=60,
                                                       weight_noise=0.02),
                             unit_steps=10, val_samples=128, eval_samples=128)
        start, row = MasterTrainer(cfg, overwrite=True).run()
    print(f"  generated {row.pairs_written} improving (State_t, State_t+2) pairs of "
          f"{row.pairs_evaluated} compared (yield {row.yield_rate:.3f}, strict filter)")
    print(f"  tournament (validation score): {row.challenger_scores} -> "
          f"{'promoted ' + row.winner if row.promoted else 'best kept'}")
    print(f"  best: score {start.score:.3f} -> {row.score:.3f}, test accuracy "
          f"{start.accuracy:.3f} -> {row.accuracy:.3f}")


def _stage_tool_and_reasoning(args: argparse.Namespace) -> None:
    """Scripted oracle vs random on ToolCall-v0 (default faults) and Reasoning-v0 (mixed)."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.agents.reasoning import OracleReasoningPolicy, RandomReasoningPolicy
    from thinkgym.agents.tool_call import OracleToolCallPolicy, RandomToolCallPolicy

    episodes = 20
    for env_id, kwargs, make_oracle, make_random, key in (
            ("ToolCall-v0", {}, OracleToolCallPolicy, RandomToolCallPolicy, "task_completed"),
            ("Reasoning-v0", {"difficulty": None}, OracleReasoningPolicy,
             RandomReasoningPolicy, "correct")):
        env = gym.make(env_id, **kwargs)
        for label, policy in (("oracle", make_oracle(env)), ("random", make_random(args.seed))):
            solved, faults, recovered = 0.0, 0, 0
            for i in range(episodes):
                obs, _ = env.reset(seed=args.seed * episodes + i)
                policy.reset()
                done = False
                while not done:
                    obs, _, terminated, truncated, info = env.step(policy.act(obs))
                    done = terminated or truncated
                metrics = info.get("metrics", info)
                solved += float(metrics[key])
                faults += metrics.get("injected_faults", 0)
                recovered += metrics.get("faults_recovered", 0)
            extra = f"  injected faults {faults}, recovered {recovered}" if faults else ""
            print(f"  {env_id:<13} {label:<7} solved {solved / episodes:.2f} of {episodes}{extra}")
        env.close()


def _stage_user_tools(args: argparse.Namespace) -> None:
    """A plain typed function plugged into ToolUse-v0, called by a scripted agent."""
    import json

    import gymnasium as gym

    def city_temperature(city: str) -> float:
        """Today's temperature of a city, in Fahrenheit.

        Args:
            city: The city name, e.g. "Oslo".
        """
        return {"Oslo": 41.0, "Lisbon": 68.0}[city]

    env = gym.make("ToolUse-v0", tools=[city_temperature, "calculator"], verifier="numeric",
                   tasks=[{"prompt": "How warm is Oslo today, in Celsius?", "answer": "5"}])
    env.reset(seed=args.seed)
    steps = [("city_temperature", {"city": "Paris"}), ("city_temperature", {"city": "Oslo"}),
             ("calculator", {"expression": "(41 - 32) * 5 / 9"})]
    for name, arguments in steps:
        obs = env.step(f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}"
                       "</tool_call>")[0]
        response = obs.split("<tool_response>")[1].split("</tool_response>")[0]
        print(f"  {name}({arguments}) -> {response[:90]}")
    _, reward, _, _, info = env.step("<answer>5</answer>")
    print(f"  answer 5: correct {info['correct']}, reward {reward:+.2f} (the KeyError for "
          "Paris came back as an observation, not a crash)")
    env.close()


def _stage_search_qa(args: argparse.Namespace) -> None:
    """SearchQA-v0: the multi-hop oracle vs answering without retrieval, 20 held-out questions."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.agents.search_qa import NoRetrievalAgent, OracleAgent, run_episode

    env = gym.make("SearchQA-v0", split="test")
    first = args.seed * 20
    for name, agent in (("oracle", OracleAgent()), ("no retrieval", NoRetrievalAgent(args.seed))):
        results = [run_episode(env, agent, index=i) for i in range(first, first + 20)]
        em = sum(r.exact_match for r in results) / len(results)
        searches = sum(r.searches for r in results) / len(results)
        print(f"  {name:<13} EM {em:.2f}  searches/episode {searches:.1f}")
    env.close()


def _stage_mag(args: argparse.Namespace) -> None:
    """MAG stage 1 on the tiny model (mechanics), then one live SearchQA-v0 episode."""
    import gymnasium as gym
    import torch

    from thinkgym.agents.mag import MAGConfig, MAGPolicy, MAGPolicyConfig
    from thinkgym.agents.mag.search_qa import MAGSearchAgent
    from thinkgym.agents.search_qa import run_episode
    from thinkgym.agents.tiny import load_tiny_model
    from thinkgym.training.mag import (
        MAGTrainConfig,
        encode_episodes,
        log_episodes,
        train_detection,
    )

    torch.manual_seed(args.seed)
    lm, tokenizer = load_tiny_model()
    policy = MAGPolicy(lm, tokenizer, MAGPolicyConfig(block=MAGConfig(d_model=32, num_heads=2)))
    before = [p.clone() for p in lm.parameters()]
    episodes = log_episodes(range(args.seed * 16, args.seed * 16 + 16), budget=6,
                            env_kwargs={"top_k": 1})
    log = train_detection(policy, encode_episodes(episodes, tokenizer, 6),
                          MAGTrainConfig(stage=1, max_steps=20, batch_size=8, seed=args.seed))
    frozen = all(torch.equal(a, b) for a, b in zip(before, lm.parameters(), strict=True))
    print(f"  stage 1, 20 steps on 16 logged episodes: TD loss "
          f"{log[0]['loss/value'] + log[0]['loss/stop_value']:.3f} -> "
          f"{log[-1]['loss/value'] + log[-1]['loss/stop_value']:.3f}; LM unchanged: {frozen}")
    env = gym.make("SearchQA-v0", split="test", top_k=1)
    agent = MAGSearchAgent(policy, budget=6)
    result = run_episode(env, agent, seed=args.seed)
    state = policy.block.state
    assert state is not None  # the episode's first act() fed the prompt through the block
    writes = state.memory.w1.sub(policy.block.memory.w1_0).norm().detach()
    print(f"  live episode: {result.searches} searches, EM {result.exact_match:.0f}; per step "
          "V-U vs tau: " + ", ".join(f"{d.value - d.stop_value:+.2f}/{d.threshold:.2f}"
                                     for d in agent.decisions))
    print(f"  test-time memory writes moved M by {float(writes):.3f} (reset between episodes)."
          " SmolLM2 halting figures: benchmarks/results/mag_halting.json")
    env.close()


def _stage_llm_training(args: argparse.Namespace) -> None:
    """Cold start (4 SFT steps on oracle episodes), then one GRPO step: tiny model, ToolCall-v0."""
    import json
    import tempfile
    from pathlib import Path

    from thinkgym.agents.tiny import tiny_model_path
    from thinkgym.training.grpo import GRPOTrainConfig, train_grpo
    from thinkgym.training.sft import SFTTrainConfig, train_sft

    with tempfile.TemporaryDirectory() as tmp:
        sft = train_sft(SFTTrainConfig(env_id="ToolCall-v0", num_episodes=8, max_steps=4,
                                       learning_rate=3e-3, per_device_batch_size=4,
                                       max_completion_tokens=512, seed=args.seed,
                                       output_dir=str(Path(tmp) / "sft")),
                        tiny_model_path(), progress=False)
        loss = json.loads((sft / "trainer_state.json").read_text())["log_history"][-1]
        print(f"  SFT   4 steps, env tokens masked: train loss {loss.get('train_loss', 0):.3f}")
        out = train_grpo(GRPOTrainConfig(
            env_id="ToolCall-v0", num_prompts=2, num_generations=2, prompts_per_step=1,
            max_steps=1, learning_rate=1e-3, max_new_tokens=16, max_completion_tokens=256,
            seed=args.seed, output_dir=str(Path(tmp) / "grpo"), curves_every=0),
            str(sft), progress=False)
        log = json.loads((out / "trainer_state.json").read_text())["log_history"][0]
        print(f"  GRPO  1 step, 2 episodes per group: mean return {log['reward']:+.3f}, "
              f"completion length {log['completions/mean_length']:.0f} tokens")


def _stage_real_model(args: argparse.Namespace) -> None:
    """SmolLM2-135M-Instruct on Reasoning-v0: format before, after a cold start, after GRPO."""
    import json
    import tempfile
    from pathlib import Path

    import gymnasium as gym

    from thinkgym.agents.llm import load_model_and_tokenizer, resolve_model_dir
    from thinkgym.training.evaluate import evaluate_policy
    from thinkgym.training.grpo import GRPOTrainConfig, train_grpo
    from thinkgym.training.sft import SFTTrainConfig, train_sft

    model = str(resolve_model_dir("smollm2-135m-instruct"))  # converted once, then cached
    env = gym.make("Reasoning-v0", difficulty=1)
    seeds = list(range(1_000_000, 1_000_008))

    def score(path: str, label: str) -> None:
        lm, tok = load_model_and_tokenizer(path)
        r = evaluate_policy(lm, tok, env, seeds, temperature=0.0, max_new_tokens=200,
                            max_completion_tokens=220, batch_size=8, progress=True)
        print(f"  {label:<28} boxed (format) {r.format_rate:.2f}  correct {r.success:.2f}  "
              f"last number right {r.lenient:.2f}  ({len(seeds)} held-out problems)",
              flush=True)

    score(model, "SmolLM2 as is:")
    with tempfile.TemporaryDirectory() as tmp:
        sft = train_sft(SFTTrainConfig(
            env_id="Reasoning-v0", env_kwargs={"difficulty": 1}, num_episodes=96,
            max_steps=12, learning_rate=3e-5, per_device_batch_size=8, min_reward=0.5,
            max_completion_tokens=300, bf16=True, seed=args.seed,
            output_dir=str(Path(tmp) / "sft")), model, progress=True)
        score(str(sft), "after 12 SFT steps:")
        out = train_grpo(GRPOTrainConfig(
            env_id="Reasoning-v0", env_kwargs={"difficulty": 1}, num_prompts=8,
            num_generations=4, prompts_per_step=1, max_steps=2, learning_rate=3e-6,
            temperature=0.9, max_new_tokens=200, max_completion_tokens=200, bf16=True,
            seed=args.seed, output_dir=str(Path(tmp) / "grpo"), curves_every=0),
            str(sft), progress=True)
        log = json.loads((out / "trainer_state.json").read_text())["log_history"]
        steps = [h for h in log if "rewards/format/mean" in h]
        print("  GRPO steps: format reward " + ", ".join(
            f"{h['rewards/format/mean']:.2f}" for h in steps) + ", return " + ", ".join(
            f"{h['reward']:+.2f}" for h in steps))


STAGES: list[tuple[str, Callable[[argparse.Namespace], None]]] = [
    ("environments: make, reset(seed), step", _stage_envs),
    ("ctm: bundled parity16 accuracy and certainty vs ticks (fp32, then bf16 ticks)",
     _stage_ctm_parity),
    ("CTMThink-v0: when to stop thinking (100 episodes per policy), ctm_think tool",
     _stage_ctm_think),
    ("CTM self-play: one cycle from parity16 (generate, challengers, tournament)",
     _stage_ctm_selfplay),
    ("tool use and reasoning: oracle vs random, 20 episodes each", _stage_tool_and_reasoning),
    ("plug in your own tool: a typed function in ToolUse-v0", _stage_user_tools),
    ("search QA: multi-hop oracle vs no retrieval, 20 held-out questions", _stage_search_qa),
    ("MAG memory-gated halting: detection channel, LM frozen (tiny model: mechanics)",
     _stage_mag),
    ("LLM training: cold-start SFT then one GRPO step (tiny model, ToolCall-v0)",
     _stage_llm_training),
]


REAL_STAGE = ("real model: SmolLM2-135M-Instruct on Reasoning-v0, as is -> cold start -> GRPO "
              "(a few minutes)", _stage_real_model)
"""Run with ``thinkgym demo --real`` (needs the ``smollm2`` extra, which ``make`` installs)."""


def run_demo(args: argparse.Namespace) -> int:
    """Run every stage in order, with timings."""
    start = time.perf_counter()
    stages = [*STAGES, REAL_STAGE] if getattr(args, "real", False) else STAGES
    for i, (title, stage) in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {title}", flush=True)
        t0 = time.perf_counter()
        stage(args)
        print(f"      done in {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"demo finished in {time.perf_counter() - start:.1f}s")
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``thinkgym demo``."""
    parser.add_argument("--seed", type=int, default=0, help="seed for every stage")
    parser.add_argument("--max-steps", type=int, default=50, help="step cap per env episode")
    parser.add_argument("--real", action="store_true",
                        help="add the real-model stage (SmolLM2-135M-Instruct; a few minutes)")
    parser.set_defaults(func=run_demo)
