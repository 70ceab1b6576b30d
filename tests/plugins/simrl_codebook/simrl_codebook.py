"""A codebook tool environment: simrl's worked example of an environment plugin (docs/plugins.md).

One module and its registration are all it takes: the environment (:class:`CodebookEnv`), its task
type ``codebook`` with its own reward (:func:`score`), its tasks (:func:`load_tasks`) and scripted
expert (:func:`expert`), registered with :func:`simrl.envs.base.register`. simrl derives the rest: the
world-model version (the generic one, from the static tool schemas; its oracle is this environment
itself), perturbation schedules, rollouts, evaluation and ablations.

The codebook of a world is drawn from the world's seed (``manifest.json``), so held-out worlds hold
other words and codes. Tools: ``list_words(cursor)`` (pages of 4 words) and ``lookup(word)``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from simrl.envs.base import Environment, EnvSpec, register, render_contents
from simrl.types import Action, Observation, Step, ToolResult, Turn
from simrl.world.schema import Evidence, QAGold, Task

ENV_ID = "codebook"
WORDS = ("amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "jasper",
         "kelp", "lagoon")
PAGE = 4
TOOLS = (
    {"type": "function", "function": {
        "name": "lookup", "description": "The secret code of a word of the codebook.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}},
    {"type": "function", "function": {
        "name": "list_words", "description": f"The codebook's words, {PAGE} per page; pass next_cursor for more.",
        "parameters": {"type": "object", "properties": {"cursor": {"type": "string"}}}}},
)


def codebook(world: Path | None) -> dict[str, str]:
    """word -> code for a world (drawn from its seed; seed 0 without a world)."""
    seed = json.loads((Path(world) / "manifest.json").read_text())["seed"] if world is not None else 0
    rng = random.Random(f"codebook-{seed}")
    return {w: f"{rng.choice('KLMNPQRSTV')}{rng.randrange(100, 1000)}" for w in WORDS}


def load_tasks(world: Path | None, split: str, n: int | None) -> list[Task]:
    """The world's codebook tasks of ``split`` (every word's code; held-out worlds: all ``test``)."""
    codes = codebook(world)
    heldout = world is not None and json.loads((Path(world) / "manifest.json").read_text()).get("heldout", False)
    tasks = []
    for i, (word, code) in enumerate(codes.items()):
        task_split = "test" if heldout else ("train", "train", "dev", "test")[i % 4] if i < 8 else "train"
        if task_split == split:
            tasks.append(Task(task_id=f"codebook-{word}", type="codebook", split=split,
                              prompt=f"What is the secret code of the word '{word}'? Answer with the code only.",
                              gold=QAGold(answer=code), evidence=Evidence(), hops=1, difficulty="easy",
                              template="code-of-word"))
    return tasks[:n]


def score(task: Task, answer: str, read=None) -> tuple[float, dict]:
    """1.0 when ``answer`` contains the gold code (case-insensitive), else 0.0."""
    assert isinstance(task.gold, QAGold)
    hit = task.gold.answer.lower() in answer.lower()
    return float(hit), {"success": hit, "metrics": {"em": float(hit)}}


class CodebookEnv(Environment):
    """The codebook service: ``lookup`` and paged ``list_words`` over a world's codebook."""

    env_id = ENV_ID

    def __init__(self, world: str | Path | None = None) -> None:
        self.world = Path(world) if world is not None else None
        self.codes = codebook(self.world)
        self._task: Task | None = None

    async def reset(self, task: Task, seed: int = 0) -> Observation:
        self._task = task
        self.tools = list(TOOLS)
        return Observation(text=task.policy_view()["prompt"], tools=self.tools)

    def _call(self, name: str, args: dict) -> ToolResult:
        if name == "lookup":
            word = str(args.get("word", "")).strip().lower()
            if word not in self.codes:
                return ToolResult(name=name, content=f"Error: unknown word {word!r}", is_error=True)
            return ToolResult(name=name, content=json.dumps({"word": word, "code": self.codes[word]}))
        if name == "list_words":
            start = int(args.get("cursor") or 0) if str(args.get("cursor") or "0").isdigit() else -1
            if start < 0:
                return ToolResult(name=name, content="Error: bad cursor", is_error=True)
            words = list(self.codes)[start:start + PAGE]
            more = start + PAGE < len(self.codes)
            return ToolResult(name=name, content=json.dumps({"words": words,
                                                             "next_cursor": str(start + PAGE) if more else None}))
        return ToolResult(name=name, content=f"Error: unknown tool {name!r}", is_error=True)

    async def step(self, action: Action) -> Step:  # make() enforces reset-before-step and the turn limit
        if action.is_final:
            reward, info = score(self._task, action.answer or "")
            return Step(observation=Observation(text="Answer received."), reward=reward, terminated=True, info=info)
        results = [self._call(c.name, dict(c.arguments)).model_copy(update={"call_id": c.call_id})
                   for c in action.tool_calls]
        text = render_contents(results) or "Error: the action has neither tool calls nor an answer"
        return Step(observation=Observation(text=text, results=results))

    def score_final(self, answer: str) -> tuple[float, dict]:
        return score(self._task, answer)

    async def close(self) -> None:
        self._task = None


class CodebookExpert:
    """Scripted expert: look the word up, retry a failed call, answer with the code."""

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        word = task_view["prompt"].split("'")[1]
        from simrl.types import ToolCall

        for turn in reversed(turns):
            for result in turn.step.observation.results:
                if result.name == "lookup" and not result.is_error:
                    try:
                        return Action.final(json.loads(result.content)["code"])
                    except (ValueError, KeyError, TypeError):
                        break
        return Action(tool_calls=[ToolCall(name="lookup", arguments={"word": word})])


def expert(world: Path | None, tasks: list[Task]) -> CodebookExpert:
    """The scripted expert of ``codebook`` (the spec's ``expert`` hook)."""
    return CodebookExpert()


register(EnvSpec(
    id=ENV_ID, factory=CodebookEnv, needs_world=True,
    description="a world's secret codebook (plugin example): lookup(word), list_words(cursor)",
    task_types=("codebook",), tools=TOOLS, render=render_contents, score_final=score, load_tasks=load_tasks,
    expert="simrl_codebook:expert"))
