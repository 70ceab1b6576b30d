"""The TRL trainer (trainer.kind trl): hermes parsing, the multi-turn rollout hook and its masks, GRPO end
to end on a tiny random model on CPU (full and LoRA), resume, the CLI, and a SmolLM2 step on a GPU."""

from __future__ import annotations

import asyncio
import doctest
import json
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the TRL trainer needs trl; install simrl[trl]")

import torch  # noqa: E402
import yaml  # noqa: E402

from simrl.envs.base import Environment, make  # noqa: E402
from simrl.errors import SimrlError  # noqa: E402
from simrl.experiment import runs  # noqa: E402
from simrl.experiment.recipe import parse_recipe  # noqa: E402
from simrl.policies import hf_policy  # noqa: E402
from simrl.policies.hf_policy import Generation, HFPolicy, parse_tool_calls  # noqa: E402
from simrl.trainers.trl import latest_trl_checkpoint, train_arm_trl  # noqa: E402
from simrl.trainers.trl_rollout import EpisodeRecorder, TrlRollout, env_suffix_ids, trl_output  # noqa: E402
from simrl.types import Action, Step  # noqa: E402
from simrl.world.io import load_tasks  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from simrl.testing.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _recipe(world: Path, model: str, **patch) -> object:
    data = {"name": "trl-test", "world": {"spec": str(world)}, "env": {"id": "mcp-world"},
            "real": {"transport": "inprocess"},
            "arms": {"sim": {"environment": "world_model", "backend": "oracle", "schedule": "mcpmark"}},
            "policy": {"kind": "llm", "model": model, "max_tokens_per_turn": 12, "max_response_tokens": 96,
                       "temperature": 1.0},
            "trainer": {"kind": "trl", "checkpoint_every": 1, "lr": 0.05, "trajectories_per_step": 8},
            "budget": {"steps": 2, "group_size": 2, "batch": 2, "max_turns": 6},
            "evaluation": {"max_tasks": 1}}
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_recipe(data)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


class _Graded(Environment):
    """The arm's environment with a graded final reward: 1 when the answer has an even length, else 0.

    The tiny random model writes gibberish that the real task reward scores 0 throughout; this keeps every
    observation of the wrapped environment and only makes rewards differ inside a group, so GRPO has a signal.
    """

    def __init__(self, env: Environment) -> None:
        self.env, self.env_id = env, env.env_id
        self.backend_name = getattr(env, "backend_name", "real")

    async def reset(self, task, seed=0):
        return await self.env.reset(task, seed=seed)

    async def step(self, action):
        step = await self.env.step(action)
        if step.terminated:
            return Step(observation=step.observation, reward=float(len(action.answer or "") % 2 == 0),
                        terminated=True, info=step.info)
        return step

    async def close(self):
        await self.env.close()


def test_parse_tool_calls():
    assert doctest.testmod(hf_policy).failed == 0
    text = ('thinking <tool_call>\n{"name": "get_record", "arguments": "{\\"id\\": \\"p1\\"}"}\n</tool_call>'
            '<tool_call>{"name": "search_records", "arguments": {"type": "person"}}</tool_call>')
    action = parse_tool_calls(text, turn=3)
    assert [(c.name, c.arguments, c.call_id) for c in action.tool_calls] == [
        ("get_record", {"id": "p1"}, "call_3_0"), ("search_records", {"type": "person"}, "call_3_1")]
    assert action.text == text and not action.is_final
    assert parse_tool_calls("  <tool_call>{unclosed").answer == "<tool_call>{unclosed"  # no complete block: final


def test_env_suffix_is_the_chat_template_of_the_tool_results(tiny_model):
    policy = HFPolicy.load(str(tiny_model))
    tok = policy.tokenizer
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "get_record", "arguments": "{}"}}]}
    suffix = env_suffix_ids(tok, assistant, [{"role": "tool", "tool_call_id": "c0", "content": "RESULT 42"}])
    assert tok.decode(suffix) == ("\n<|im_start|>user\n<tool_response>\nRESULT 42\n</tool_response><|im_end|>\n"
                                  "<|im_start|>assistant\n")


def test_rollout_records_real_observations_and_masks_environment_tokens(tiny_model, tiny_world):
    """A scripted model: a tool call, then a final answer. The episode's observations are the real
    environment's, and exactly the environment's tokens are masked out."""
    policy = HFPolicy.load(str(tiny_model), max_tokens_per_turn=64)
    tok = policy.tokenizer
    task = next(t for t in load_tasks(tiny_world, split="train") if t.type == "records")
    call = '<tool_call>\n{"name": "search_records", "arguments": {"type": "person", "limit": 2}}\n</tool_call>'
    replies = [tok.encode(call, add_special_tokens=False) + [tok.eos_token_id],
               tok.encode("<answer>done</answer>", add_special_tokens=False) + [tok.eos_token_id]]
    seen: list[list[int]] = []

    def scripted(ids: list[int], max_new: int) -> Generation:
        seen.append(list(ids))
        return Generation(ids=replies[len(seen) - 1])

    rollout = TrlRollout(policy, {task.task_id: task},
                         lambda step: (lambda: make("mcp-world", world=tiny_world, transport="inprocess")),
                         max_turns=4, max_prompt_tokens=4096, max_response_tokens=1024, seed=0)
    (episode,) = rollout.run([task.task_id], 1, scripted)
    traj, rec = episode.trajectory, episode.tokens
    assert [t.action.tool_calls[0].name for t in traj.turns[:1]] == ["search_records"] and traj.turns[1].action.is_final

    async def direct():  # the same action in a fresh real environment gives the same observation
        env = make("mcp-world", world=tiny_world, transport="inprocess")
        try:
            await env.reset(task, seed=traj.seed)
            return await env.step(Action.call("search_records", type="person", limit=2))
        finally:
            await env.close()

    real = asyncio.run(direct())
    got = traj.turns[0].step.observation
    assert [r.content for r in got.results] == [r.content for r in real.observation.results]
    assert '"records"' in got.results[0].content

    gen1, gen2 = replies
    n_env = len(rec.completion_ids) - len(gen1) - len(gen2)
    assert rec.completion_ids[:len(gen1)] == gen1 and rec.completion_ids[-len(gen2):] == gen2
    assert rec.env_mask == [1] * len(gen1) + [0] * n_env + [1] * len(gen2)
    env_text = tok.decode(rec.completion_ids[len(gen1):len(gen1) + n_env])
    assert env_text.startswith("\n<|im_start|>user\n<tool_response>\n") and env_text.endswith("<|im_start|>assistant\n")
    assert got.results[0].content in env_text
    assert seen[0] == rec.prompt_ids and seen[1] == rec.prompt_ids + rec.completion_ids[:len(gen1) + n_env]
    out = trl_output([episode], policy)
    assert out["env_mask"] == [rec.env_mask] and out["logprobs"] is None
    assert out["env_reward"] == [traj.reward] and out["env_status"] == [traj.status]


def test_response_budget_and_cut_replies(tiny_model, tiny_world):
    policy = HFPolicy.load(str(tiny_model), max_tokens_per_turn=64)
    tok = policy.tokenizer
    call = tok.encode('<tool_call>{"name": "search_records", "arguments": {"type": "person"}}</tool_call>',
                      add_special_tokens=False) + [tok.eos_token_id]
    task = next(t for t in load_tasks(tiny_world, split="train") if t.type == "records")

    def episode(max_tokens_per_turn: int, max_response_tokens: int):
        from simrl.rollout import run_episode

        policy.max_tokens_per_turn = max_tokens_per_turn
        recorder = EpisodeRecorder(policy, lambda ids, n: Generation(ids=call[:n]), max_prompt_tokens=4096,
                                   max_response_tokens=max_response_tokens)
        env = make("mcp-world", world=tiny_world, transport="inprocess")

        async def go():
            try:
                return await run_episode(env, recorder, task, max_turns=5)
            finally:
                await env.close()

        return asyncio.run(go()), recorder.tokens

    # the tool results do not fit in the response budget: the episode ends with an empty answer, nothing appended
    traj, rec = episode(64, len(call) + 10)
    assert rec.out_of_budget and rec.completion_ids == call and rec.env_mask == [1] * len(call)
    assert len(traj.turns) == 2 and traj.turns[1].action.answer == ""
    # a reply cut at max_tokens_per_turn holds no complete tool call: a final answer
    traj, rec = episode(8, 4096)
    assert rec.completion_ids == call[:8] and traj.turns[0].action.is_final and len(traj.turns) == 1
    with pytest.raises(SimrlError, match="max_prompt_tokens"):
        EpisodeRecorder(policy, None, max_prompt_tokens=10, max_response_tokens=40).prompt(
            asyncio.run(_reset(tiny_world, task)))


async def _reset(world, task):
    env = make("mcp-world", world=world, transport="inprocess")
    try:
        return await env.reset(task)
    finally:
        await env.close()


def test_train_arm_trl_end_to_end_and_resume(tiny_model, tiny_world, tmp_path, monkeypatch):
    real_factory = runs.arm_env_factory
    monkeypatch.setattr(runs, "arm_env_factory", lambda *a, **k: (lambda make_env: lambda: _Graded(make_env()))(
        real_factory(*a, **k)))
    recipe = _recipe(tiny_world, str(tiny_model))
    out = tmp_path / "sim" / "seed-0"
    seen: list[tuple[int, str]] = []
    summary = train_arm_trl(recipe, "sim", 0, out, worlds=tmp_path / "worlds",
                            progress=lambda done, total, line: seen.append((done, line)))
    run = runs.RunFiles(out)
    rows, trajs = _rows(run.metrics), _rows(run.trajectories)
    assert [r["step"] for r in rows] == [1, 2] and all(r["episodes"] == 4 for r in rows)
    assert [r["progress"] for r in rows] == [0.0, 0.5]
    for r in rows:  # the logged rewards are the environment's, episode by episode
        mine = [t for t in trajs if t["info"]["train_step"] == r["step"]]
        assert len(mine) == 4
        for t in mine:
            assert t["reward"] == float(len(t["turns"][-1]["action"]["answer"] or "") % 2 == 0)
            assert t["backend"] == "oracle"
        assert r["reward"] == pytest.approx(sum(t["reward"] for t in mine) / 4)
    assert any(r["loss"] != 0 or r["grad_norm"] > 0 for r in rows)
    assert sorted(p.name for p in run.checkpoints.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (run.checkpoints / "latest").read_text().strip() == "checkpoint-2"
    before, after = _weights(tiny_model), _weights(out / "final")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the weights moved
    loaded = HFPolicy.load(str(out / "final"))
    assert loaded.render(loaded.messages(_obs(trajs[0]), []), None)
    assert (out / "eval" / "test" / "eval.json").is_file() and summary.evaluation["all"]["success"] == 0.0
    assert summary.steps == 2 and summary.episodes == 8 and summary.resumed_from is None
    assert seen[-1][0] == 2 and any("reward" in line for _, line in seen)
    with pytest.raises(SimrlError, match="already holds a run; pass --resume"):
        train_arm_trl(recipe, "sim", 0, out, worlds=tmp_path / "worlds")

    # a run killed after step 2 was logged but before its checkpoint finished: resume redoes step 2 once
    (run.checkpoints / "checkpoint-2" / "trainer_state.json").unlink(missing_ok=True)
    run.summary.unlink()
    assert latest_trl_checkpoint(run) == run.checkpoints / "checkpoint-1"
    resumed = train_arm_trl(recipe, "sim", 0, out, worlds=tmp_path / "worlds", resume=True, run_eval=False)
    assert [r["step"] for r in _rows(run.metrics)] == [1, 2] and resumed.resumed_from == 1
    assert sorted({t["info"]["train_step"] for t in _rows(run.trajectories)}) == [1, 2]
    assert len(_rows(run.trajectories)) == 8
    assert train_arm_trl(recipe, "sim", 0, out, worlds=tmp_path / "worlds", resume=True) == resumed  # finished


def _obs(traj: dict):
    from simrl.types import Observation

    return Observation.model_validate(traj["initial"])


def test_lora_step_saves_an_adapter(tiny_model, tiny_world, tmp_path):
    recipe = _recipe(tiny_world, str(tiny_model), trainer={"trl": {"lora_rank": 4, "lora_alpha": 8}},
                     budget={"steps": 1, "group_size": 2, "batch": 1, "max_turns": 2})
    out = tmp_path / "lora"
    summary = train_arm_trl(recipe, "sim", 0, out, worlds=tmp_path / "worlds", run_eval=False)
    assert summary.steps == 1 and [r["step"] for r in _rows(out / "metrics.jsonl")] == [1]
    assert (out / "final" / "adapter_config.json").is_file()
    assert json.loads((out / "final" / "adapter_config.json").read_text())["r"] == 4
    assert (out / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").is_file()
    policy = HFPolicy.load(str(out / "final"))  # base model + adapter
    assert type(policy.model).__name__.startswith("Peft")


def test_bad_settings_are_user_errors(tiny_model, tiny_world, tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(SimrlError, match="use_vllm needs a CUDA GPU"):
            train_arm_trl(_recipe(tiny_world, str(tiny_model), trainer={"trl": {"use_vllm": True}}), "sim", 0,
                          tmp_path / "a")
    with pytest.raises(SimrlError, match="trainer.trl.options"):
        train_arm_trl(_recipe(tiny_world, str(tiny_model), trainer={"trl": {"options": {"no_such_field": 1}}}),
                      "sim", 0, tmp_path / "b")
    with pytest.raises(SimrlError, match="warm_start"):
        train_arm_trl(_recipe(tiny_world, str(tiny_model), warm_start={"demos": 2}), "sim", 0, tmp_path / "c")
    with pytest.raises(SimrlError, match="cannot load the policy model"):
        train_arm_trl(_recipe(tiny_world, str(tmp_path / "missing-model")), "sim", 0, tmp_path / "d")


def test_cli_trains_a_trl_recipe(tiny_model, tiny_world, tmp_path):
    from simrl.cli.main import app
    from typer.testing import CliRunner

    recipe = tmp_path / "r.yaml"
    data = _recipe(tiny_world, str(tiny_model), budget={"steps": 1, "group_size": 2, "batch": 1, "max_turns": 2})
    recipe.write_text(yaml.safe_dump(data.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "out"), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "sim" / "seed-0" / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["episodes"] == 2
    assert (tmp_path / "out" / "sim" / "seed-0" / "final" / "model.safetensors").is_file()
    # the plan sees the TRL run as finished; a run with only a TRL checkpoint as resumable at its step
    wide = {"COLUMNS": "400"}  # one table row per line
    plan = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "out"), "--dry-run"], env=wide)
    assert plan.exit_code == 0 and "finished" in plan.output, plan.output
    (tmp_path / "out" / "sim" / "seed-0" / "summary.json").unlink()
    plan = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "out"), "--dry-run"], env=wide)
    words = " ".join(plan.output.replace("│", " ").split())  # the table may wrap the state cell
    assert "resumable at" in words and "step 1" in words and "finished" not in words, plan.output
    # the trained model folder evaluates like a scorer checkpoint, on held-out real tasks
    ev = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "out" / "sim" / "seed-0" / "final"),
                                  "--env", "mcp-world", "--world", str(tiny_world), "-n", "1", "--max-turns", "2",
                                  "--transport", "inprocess", "--out", str(tmp_path / "ev")])
    assert ev.exit_code == 0, ev.output
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["tasks"] == 1
    bad = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path), "--env", "mcp-world",
                                   "--world", str(tiny_world)])
    assert bad.exit_code == 2 and "not a Hugging Face model" in bad.output
    # the run's final/ evaluated as simrl ablate and simrl eval evaluate a run: the model loaded by the trl trainer's
    # load_policy hook (turns enough for the scripted expert to solve an evaluation task)
    from simrl.experiment.heldout import evaluate_run

    longer = data.model_copy(update={"budget": data.budget.model_copy(update={"max_turns": 8})})
    result = evaluate_run(tmp_path / "out" / "sim" / "seed-0", longer, out=tmp_path / "own")
    assert result.tasks >= 1 and result.episodes == result.tasks and list((tmp_path / "own" / "eval").glob("*/eval.json"))


@pytest.mark.slow
def test_a_trl_recipe_is_ablated_like_an_embedded_one(tiny_model, tiny_world, tmp_path):
    """simrl ablate trains the run in its own `simrl train` process, collects its held-out evaluation, and evaluates
    the recipe's baselines through the trl trainer's load_policy hook (untrained: the base model)."""
    from simrl.experiment.ablate import run_ablation

    rec = _recipe(tiny_world, str(tiny_model), budget={"steps": 1, "group_size": 2, "batch": 1, "max_turns": 8},
                  seeds=[0], baselines=["candidates", "untrained"])
    report = run_ablation(rec, tmp_path / "out", jobs=2)
    assert report["arms"]["sim"]["failed"] == {} and list(report["arms"]["sim"]["seeds"]) == ["0"]
    assert list(report["baselines"]) == ["candidates", "untrained"]
    assert (report["primary"]["a"], report["primary"]["b"]) == ("sim", "candidates")  # one arm: the first baseline
    assert (tmp_path / "out" / "sim" / "seed-0" / "final" / "config.json").is_file()
    assert (tmp_path / "out" / "baselines" / "untrained" / "seed-0" / "eval").is_dir()


@pytest.mark.gpu
def test_smollm2_step_on_gpu(tiny_world, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("gguf", reason="SmolLM2 is loaded from its GGUF file, which needs the gguf package")
    recipe = _recipe(tiny_world, "smollm2", policy={"max_tokens_per_turn": 48, "max_response_tokens": 256},
                     trainer={"trl": {"device": "cuda"}}, budget={"steps": 1, "group_size": 2, "batch": 2})
    summary = train_arm_trl(recipe, "sim", 0, tmp_path / "run", worlds=tmp_path / "worlds")
    assert summary.steps == 1 and summary.episodes == 4 and summary.evaluation is not None
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_hf_generate_ignores_the_models_generation_defaults(tiny_model):
    """GRPO's loss scores softmax(logits / T): a model's generation_config.json (repetition penalty,
    n-gram blocking, top-k ...) must not change what is sampled; greedy is the plain argmax."""
    from peft import LoraConfig, get_peft_model

    policy = HFPolicy.load(str(tiny_model))
    model, tok = policy.model, policy.tokenizer
    prompt = tok.encode("the record of the city was", add_special_tokens=False)
    ids, argmax = list(prompt), []
    with torch.no_grad():
        for _ in range(10):
            argmax.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
            ids.append(argmax[-1])
    assert len(set(argmax)) < len(argmax)  # the random model repeats itself: a repetition penalty would show
    argmax = argmax[:next((i + 1 for i, t in enumerate(argmax) if t in policy.stop_ids), len(argmax))]
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 50.0, 1
    model.generation_config.top_k = 1
    assert hf_policy.hf_generate(model, tok, greedy=True)(prompt, 10).ids == argmax
    assert model.generation_config.repetition_penalty == 50.0  # the model's own config is back afterwards
    sampled = {tuple(hf_policy.hf_generate(model, tok, greedy=False, temperature=5.0)(prompt, 4).ids) for _ in range(4)}
    assert len(sampled) > 1  # top_k 1 from the model's config would make every sample the argmax
    peft = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    peft.generation_config = model.generation_config
    assert hf_policy.hf_generate(peft, tok, greedy=True)(prompt, 10).ids == argmax  # fresh LoRA: same model


def test_vllm_generate_stops_at_the_end_of_turn(monkeypatch):
    """The colocated vLLM engine samples with the policy's temperature and stops where hf_generate does."""
    import sys
    import types

    from simrl.trainers.trl_rollout import vllm_generate

    seen = {}

    class SamplingParams:
        def __init__(self, **kw):
            seen.update(kw)

    class LLM:
        def generate(self, prompts, sampling_params, use_tqdm):
            assert prompts == [{"prompt_token_ids": [5, 6]}]
            ids = [11, 12, 99, 13]  # an engine that ignored the stop ids would go on past 99
            step = [{t: types.SimpleNamespace(logprob=-0.1 * k)} for k, t in enumerate(ids)]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids, logprobs=step)])]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))
    gen = vllm_generate(LLM(), temperature=0.7, stop_ids=[99, 100])([5, 6], 8)
    assert seen["temperature"] == 0.7 and seen["max_tokens"] == 8 and seen["stop_token_ids"] == [99, 100]
    assert gen.ids == [11, 12, 99] and gen.logprobs == pytest.approx([0.0, -0.1, -0.2])


def test_vllm_options_the_hook_cannot_use_are_refused(tiny_world, tmp_path):
    from simrl.trainers.trl import grpo_config

    files = runs.RunFiles(tmp_path)
    for options in ({"vllm_mode": "server"}, {"vllm_enable_sleep_mode": True}):
        rec = _recipe(tiny_world, "m", trainer={"trl": {"use_vllm": True, "options": options}})
        with pytest.raises(SimrlError, match="colocated vLLM engine"):
            grpo_config(rec, files, 0, "cuda")


def test_num_iterations_logs_each_episode_once(tiny_model, tiny_world, tmp_path):
    """num_iterations 2: TRL updates twice per generation batch; the batch is logged once."""
    recipe = _recipe(tiny_world, str(tiny_model), trainer={"trl": {"options": {"num_iterations": 2}}},
                     budget={"steps": 2, "group_size": 2, "batch": 1, "max_turns": 2})
    summary = train_arm_trl(recipe, "sim", 0, tmp_path / "run", worlds=tmp_path / "worlds", run_eval=False)
    rows = _rows(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], r["episodes"], r["progress"]) for r in rows] == [(1, 2, 0.0), (2, 0, 0.0)]
    assert rows[1]["reward"] == rows[0]["reward"]
    assert summary.episodes == 2 and len(_rows(tmp_path / "run" / "trajectories.jsonl")) == 2


def test_sampling_inside_an_episode_is_keyed_by_its_seed_not_the_global_generator(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simrl.rollout import EPISODE_SEED

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)
    sample = hf_policy.hf_generate(model, tok, greedy=False, temperature=1.0)
    prompt = tok.encode("the record of the city was", add_special_tokens=False)

    def draw(episode: int, global_seed: int) -> list[int]:
        torch.manual_seed(global_seed)  # other episodes' turns moved the global generator in between
        token = EPISODE_SEED.set(episode)
        try:
            return sample(prompt, 12).ids
        finally:
            EPISODE_SEED.reset(token)

    assert draw(7, 1) == draw(7, 2)  # the same episode and turn: the same reply, whatever ran before
    assert len({tuple(draw(e, 0)) for e in range(6)}) > 1  # other episodes draw differently
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    token = EPISODE_SEED.set(9)
    sample(prompt, 4)
    EPISODE_SEED.reset(token)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left as it was
