"""Evaluation: benchmark registry, generation backend, records/summary, resume, and the `eval` CLI.

CPU only, no network: the smoke model is ``builtin:tiny`` (random weights, so its answers are
wrong); hand-computed summaries use a scripted generator (lighteval's dummy-model idea).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egrc_lite.evaluation.tasks import (
    BENCHMARKS,
    BenchmarkError,
    load_benchmark,
    parse_benchmarks,
    resolve_name,
)
from egrc_lite.cli.app import app
from egrc_lite.evaluation.efficiency import EFFICIENCY_KEYS
from egrc_lite.evaluation.evaluate import EvalError, EvalSettings, batch_seed, evaluate, read_summary
from egrc_lite.generate import (
    GenerationError,
    Sample,
    get_generator,
    think_token_count,
)

ASSETS = Path(__file__).parent / "assets"
MINI = ASSETS / "mini_bench.jsonl"
runner = CliRunner()

SUMMARY_KEYS = {"acc", "len", "n_problems", "n_samples", "truncation_rate", "len_correct", "len_incorrect",
                "think_len", "answer_len", "steps", *EFFICIENCY_KEYS}
RECORD_KEYS = {"problem_id", "sample", "response", "total_tokens", "think_tokens", "answer_tokens", "truncated",
               "extracted", "correct", "steps"}


# ---------------------------------------------------------------------------------------- registry

def test_registry_names_aliases_and_unknown_names():
    assert resolve_name("amc") == "amc83" and resolve_name("AMC23") == "amc23"
    assert parse_benchmarks("aime24,amc, amc83 ,math500") == ["aime24", "amc83", "math500"]
    with pytest.raises(BenchmarkError) as err:
        parse_benchmarks("aime24,aime25")
    for name in ("aime24", "amc23", "amc83", "math500", "minerva", "olympiadbench", "gsm8k"):
        assert name in str(err.value)
    assert BENCHMARKS["math500"].hf_id == "HuggingFaceH4/MATH-500"
    assert BENCHMARKS["gsm8k"].answer_transform("Add them: 1,000+234\n#### 1,234") == "1234"


def test_local_data_dir_env_and_custom_file(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"id": f"a{i}", "problem": f"{i}+{i}?", "answer": str(2 * i)} for i in range(3)]
    (folder / "aime24.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = load_benchmark("aime24", data_dir=folder, limit=2)
    assert [p.id for p in bench.problems] == ["a0", "a1"] and bench.source.endswith("aime24.jsonl")
    monkeypatch.setenv("EGRC_DATA_DIR", str(folder))
    assert len(load_benchmark("aime24").problems) == 3
    with pytest.raises(BenchmarkError, match="gsm8k.jsonl not found"):
        load_benchmark("gsm8k", data_dir=folder)
    custom = load_benchmark(str(MINI))
    assert custom.name == "mini_bench" and [p.answer for p in custom.problems] == ["7", "7", "12", "\\frac{3}{4}"]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n")
    with pytest.raises(BenchmarkError, match="appears twice"):
        load_benchmark(str(dup))


def test_shared_data_registry_has_every_benchmark(shared, monkeypatch):
    monkeypatch.setenv("EGRC_DATA_DIR", str(shared / "data"))
    for name, spec in BENCHMARKS.items():
        bench = load_benchmark(name)
        assert len(bench.problems) == spec.size, name
        assert all(p.answer for p in bench.problems)
    assert len(load_benchmark("amc").problems) == 83
    assert all(p.answer.lstrip("-").replace(".", "").isdigit() for p in load_benchmark("gsm8k", limit=50).problems)


# ---------------------------------------------------------------------------------------- generation

def test_think_token_count():
    assert think_token_count([1, 2, 3, 4, 5], [3, 4]) == 4  # up to and including </think>
    assert think_token_count([1, 2, 5], [3, 4]) == 3  # no </think>: all thinking
    assert think_token_count([1, 2], []) == 2


@pytest.fixture(scope="module")
def tiny_generator():
    from egrc_lite.config import validate_config

    cfg = validate_config({"model": {"name_or_path": "builtin:tiny", "tiny": {"max_position_embeddings": 128}}})
    return get_generator("hf", cfg, batch_size=3)


def test_hf_generator_batches_samples_and_caps_positions(tiny_generator):
    prompts = [[{"role": "user", "content": "Ava has 3 apples. How many?"}], [{"role": "user", "content": "Hi"}]]
    out = tiny_generator.generate(prompts, n=2, max_tokens=12, temperature=0.6, top_p=0.95, seed=0)
    assert [len(row) for row in out] == [2, 2]
    for sample in (s for row in out for s in row):
        assert 0 < sample.num_tokens <= 12 and sample.think_tokens + sample.answer_tokens == sample.num_tokens
        assert sample.truncated == (sample.num_tokens == 12)
    again = tiny_generator.generate(prompts, n=2, max_tokens=12, temperature=0.6, top_p=0.95, seed=0)
    assert [[s.token_ids for s in row] for row in again] == [[s.token_ids for s in row] for row in out]
    longest = len(tiny_generator.encode_prompt(prompts[0]))
    capped = tiny_generator.generate(prompts[:1], n=1, max_tokens=5000, temperature=0.0, top_p=1.0, seed=0)
    assert capped[0][0].num_tokens <= 128 - longest


def test_unknown_backend_lists_valid_ones():
    from egrc_lite.config import EgrcConfig

    with pytest.raises(GenerationError, match="valid: hf"):
        get_generator("vllm-nope", EgrcConfig())


# ---------------------------------------------------------------------------------------- evaluate()

class ScriptedGenerator:
    """Answers the first mini problem right (10 tokens, 8 of them thinking) and the rest wrong (20, truncated)."""

    name = "scripted"
    model_source = "scripted:test"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.samples = 0
        self.fail_after = fail_after

    def generate(self, prompts, *, n, max_tokens, temperature, top_p, seed):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        out = []
        for messages in prompts:
            if messages[-1]["content"].startswith("Ava has 3 apples"):
                sample = Sample("<think>\nadd 3 and 4\n\nso 7\n</think>\n\\boxed{7}", list(range(10)), False, 8)
            else:
                sample = Sample("I think it is 5", list(range(20)), True, 20)
            out.append([sample] * n)
            self.samples += n
        return out


def test_evaluate_records_and_summary_hand_computed(tmp_path):
    bench = load_benchmark(str(MINI))
    settings = EvalSettings(n=2, max_tokens=20, batch_size=3)
    result = evaluate(ScriptedGenerator(), [bench], tmp_path, settings, model="scripted")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == result.summary and summary["model"] == "scripted" and summary["adapter"] is None
    entry = summary["benchmarks"]["mini_bench"]
    assert set(entry) == SUMMARY_KEYS
    # 4 problems x 2 samples: one problem right (10 tokens, 8 thinking, 2 steps), three wrong (20, truncated, 1 step)
    assert entry["acc"] == 25.0 and entry["len"] == 17.5 and entry["n_problems"] == 4 and entry["n_samples"] == 2
    assert entry["truncation_rate"] == 0.75 and entry["len_correct"] == 10.0 and entry["len_incorrect"] == 20.0
    assert entry["think_len"] == 17.0 and entry["answer_len"] == 0.5 and entry["steps"] == 1.25
    records = [json.loads(line) for line in (tmp_path / "mini_bench.jsonl").read_text().splitlines()]
    assert len(records) == 8 and RECORD_KEYS <= set(records[0])
    right = [r for r in records if r["correct"]]
    assert {(r["problem_id"], r["sample"]) for r in right} == {("mini-1", 0), ("mini-1", 1)}
    assert right[0]["extracted"] == "7" and right[0]["think_tokens"] == 8 and right[0]["answer_tokens"] == 2


def test_crash_keeps_finished_batches_and_resume_reuses_them(tmp_path):
    bench = load_benchmark(str(MINI))
    settings = EvalSettings(n=2, batch_size=2)  # one problem (2 samples) per batch
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(ScriptedGenerator(fail_after=2), [bench], tmp_path, settings, model="scripted")
    assert len((tmp_path / "mini_bench.jsonl").read_text().splitlines()) == 4  # two finished batches kept
    with (tmp_path / "mini_bench.jsonl").open("a") as fh:
        fh.write('{"problem_id": "mini-3", "sample": 0, "resp')  # a torn line from the crash
    gen = ScriptedGenerator()
    result = evaluate(gen, [bench], tmp_path, settings, model="scripted")
    assert result.reused["mini_bench"] == 4 and result.generated["mini_bench"] == 4 and gen.samples == 4
    lines = (tmp_path / "mini_bench.jsonl").read_text().splitlines()
    keys = [(json.loads(line)["problem_id"], json.loads(line)["sample"]) for line in lines]
    assert len(keys) == 8 and len(set(keys)) == 8
    assert result.summary["benchmarks"]["mini_bench"]["acc"] == 25.0
    with pytest.raises(EvalError, match="other settings"):
        evaluate(gen, [bench], tmp_path, EvalSettings(n=2, max_tokens=99), model="scripted")


class EngineGenerator(ScriptedGenerator):
    """Asks for ``request_chunk`` prompts per call, like vllm (which batches them itself); records each call."""

    def __init__(self, request_chunk: int = 512, fail_after: int | None = None) -> None:
        super().__init__(fail_after)
        self.request_chunk = request_chunk
        self.sizes: list[int] = []
        self.seeds: list[int] = []

    def generate(self, prompts, *, seed, **kwargs):
        self.sizes.append(len(prompts))
        self.seeds.append(seed)
        return super().generate(prompts, seed=seed, **kwargs)


def test_a_generator_with_request_chunk_gets_every_pending_sample_per_call(tmp_path):
    bench = load_benchmark(str(MINI))
    settings = EvalSettings(n=2, batch_size=3)  # --batch-size is the hf chunk; an engine sets its own
    gen = EngineGenerator()
    result = evaluate(gen, [bench], tmp_path / "all", settings, model="scripted")
    assert gen.sizes == [8] and gen.seeds == [batch_seed(0, "mini_bench", "mini-1", 0)]
    assert result.summary["benchmarks"]["mini_bench"]["acc"] == 25.0
    # chunks of request_chunk, records written after each: a crash keeps finished calls, a rerun reuses them
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(EngineGenerator(5, fail_after=1), [bench], tmp_path / "crash", settings, model="scripted")
    assert len((tmp_path / "crash" / "mini_bench.jsonl").read_text().splitlines()) == 5
    again = EngineGenerator(5)
    result = evaluate(again, [bench], tmp_path / "crash", settings, model="scripted")
    assert again.sizes == [3] and result.reused["mini_bench"] == 5 and result.generated["mini_bench"] == 3
    assert again.seeds == [batch_seed(0, "mini_bench", "mini-3", 1)]
    assert result.summary["benchmarks"]["mini_bench"]["acc"] == 25.0


def test_base_adds_l_acc_and_missing_base_fails_early(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "summary.json").write_text(json.dumps({"benchmarks": {"mini_bench": {"acc": 20.0, "len": 70.0}}}))
    gen = ScriptedGenerator()
    result = evaluate(gen, [load_benchmark(str(MINI))], tmp_path / "ev", EvalSettings(n=1), model="m", base=base)
    entry = result.summary["benchmarks"]["mini_bench"]
    assert entry["l_acc"] == pytest.approx(25.0 * (1 - 17.5 / 70.0) ** 0.5)
    gen2 = ScriptedGenerator()
    with pytest.raises(EvalError, match="no summary found"):
        evaluate(gen2, [load_benchmark(str(MINI))], tmp_path / "ev2", EvalSettings(n=1), model="m",
                 base=tmp_path / "nowhere")
    assert gen2.calls == 0


# ---------------------------------------------------------------------------------------- CLI

def _eval(*args: str):
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--benchmarks", str(MINI), "--n", "2",
                                 "--max-tokens", "6", "--batch-size", "4", *args])
    return result


def test_eval_cli_end_to_end_then_resume(tmp_path):
    out = tmp_path / "ev"
    first = _eval("--limit", "2", "--out", str(out))
    assert first.exit_code == 0, first.output
    summary = read_summary(out)
    assert summary["model"] == "builtin:tiny" and summary["adapter"] is None
    assert summary["settings"]["n"] == 2 and summary["settings"]["max_tokens"] == 6
    entry = summary["benchmarks"]["mini_bench"]
    assert set(entry) == SUMMARY_KEYS and entry["n_problems"] == 2 and 0 < entry["len"] <= 6
    before = (out / "mini_bench.jsonl").read_text()
    assert len(before.splitlines()) == 4

    second = _eval("--limit", "4", "--out", str(out))  # the same command, more problems: reuses 4
    assert second.exit_code == 0, second.output
    assert "reusing 4 of 8" in second.output and "4 samples generated, 4 reused" in second.output
    after = (out / "mini_bench.jsonl").read_text()
    assert after.startswith(before) and len(after.splitlines()) == 8

    with (out / "mini_bench.jsonl").open("a") as fh:
        fh.write('{"problem_id": "mini-4", "sam')  # interrupted mid-write
    old = json.loads((out / "summary.json").read_text())
    for key in EFFICIENCY_KEYS:  # as written before the efficiency metrics existed
        del old["benchmarks"]["mini_bench"][key]
    (out / "summary.json").write_text(json.dumps(old))
    third = _eval("--limit", "4", "--out", str(out))
    assert third.exit_code == 0, third.output
    assert "0 samples generated, 8 reused" in third.output
    entry = read_summary(out)["benchmarks"]["mini_bench"]  # re-summarised from the records: the metrics are back
    assert set(entry) == SUMMARY_KEYS and list(entry["acc_at_budget"]) == ["1", "2", "4", "6"]
    assert entry["acc_at_budget"]["6"] == entry["acc"] and entry["first_answer_unit"] == "tokens"  # hf: its tokenizer
    keys = [(r["problem_id"], r["sample"]) for r in map(json.loads, (out / "mini_bench.jsonl").read_text().splitlines())]
    assert len(keys) == 8 == len(set(keys))
    assert read_summary(out)["benchmarks"]["mini_bench"]["n_problems"] == 4

    changed = _eval("--limit", "4", "--out", str(out), "--temperature", "1.0")
    assert changed.exit_code == 2 and "other settings" in changed.output


def test_eval_cli_adapter_of_a_run_without_model(tmp_path):
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.config import validate_config
    from egrc_lite.runs import RunDir, write_config

    cfg = validate_config({"model": {"name_or_path": "builtin:tiny"}, "lora": {"r": 2, "alpha": 4}})
    run = RunDir(tmp_path / "run").create()
    write_config(run, cfg)
    policy, tokenizer, _ = load_policy(cfg)
    policy.save_pretrained(run.adapter_dir)
    base = tmp_path / "base"
    (base).mkdir()
    (base / "summary.json").write_text(json.dumps({"benchmarks": {"mini_bench": {"acc": 0.0, "len": 100.0}}}))
    result = runner.invoke(app, ["eval", "--adapter", str(run.path), "--benchmarks", str(MINI), "--limit", "1",
                                 "--n", "1", "--max-tokens", "4", "--base", str(base)])
    assert result.exit_code == 0, result.output
    summary = read_summary(run.path)  # a run directory: RUN/eval/summary.json
    assert summary["model"] == "builtin:tiny" and summary["adapter"] == str(run.adapter_dir.resolve())
    assert summary["benchmarks"]["mini_bench"]["l_acc"] == 0.0

    loose = tmp_path / "loose-adapter"  # no run config beside it: the base comes from adapter_config.json
    shutil.copytree(run.adapter_dir, loose)
    result = runner.invoke(app, ["eval", "--adapter", str(loose), "--benchmarks", str(MINI), "--limit", "1",
                                 "--n", "1", "--max-tokens", "4", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    base_path = json.loads((loose / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert read_summary(tmp_path / "ev")["model"] == base_path


def test_eval_cli_user_mistakes_are_one_line_errors(tmp_path):
    cases = [
        (["eval", "--benchmarks", str(MINI)], "--model is required"),
        (["eval", "--model", "builtin:tiny", "--benchmarks", "aime99"], "unknown benchmark 'aime99'"),
        (["eval", "--model", "builtin:tiny", "--benchmarks", str(MINI), "--adapter", str(tmp_path)],
         "no adapter_config.json"),
        (["eval", "--model", "builtin:tiny", "--benchmarks", str(MINI), "--base", str(tmp_path / "nope")],
         "no summary found"),
        (["eval", "--model", "builtin:tiny", "--benchmarks", str(MINI), "--answer-rule", "first"],
         "--answer-rule must be"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_later_runs_add_benchmarks_to_the_summary(tmp_path):
    other = tmp_path / "other_bench.jsonl"
    other.write_text(MINI.read_text().splitlines()[0] + "\n")
    settings = EvalSettings(n=1)
    evaluate(ScriptedGenerator(), [load_benchmark(str(MINI))], tmp_path / "ev", settings, model="m")
    evaluate(ScriptedGenerator(), [load_benchmark(str(other))], tmp_path / "ev", settings, model="m")
    summary = read_summary(tmp_path / "ev")
    assert set(summary["benchmarks"]) == {"mini_bench", "other_bench"}
    assert summary["benchmarks"]["other_bench"]["acc"] == 100.0 and summary["benchmarks"]["mini_bench"]["acc"] == 25.0
    assert set(summary["settings"]["data"]) == {"mini_bench", "other_bench"}
    twin = tmp_path / "twin" / "mini_bench.jsonl"
    twin.parent.mkdir()
    twin.write_text(MINI.read_text())
    with pytest.raises(EvalError, match="share a name"):
        evaluate(ScriptedGenerator(), [load_benchmark(str(MINI)), load_benchmark(str(twin))], tmp_path / "ev2",
                 settings, model="m")
