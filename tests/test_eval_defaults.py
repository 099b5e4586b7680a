"""`eval` defaults that fit the run: its answer rule, prompt suffix and model; the held-out arithmetic sets
(problems and wordings held out) with quick CPU settings for a run trained on builtin:arithmetic;
trust_remote_code never inherited.

The choice is a pure function (:func:`choose_eval_settings`), checked without a model; one CLI run on
``builtin:tiny`` checks that the command uses it, prints the one line and records what it used.
"""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.config import DEFAULT_PROMPT_SUFFIX, PAPER_BENCHMARKS
from egrc_lite.evaluation.defaults import (
    ARITHMETIC_LIMIT,
    ARITHMETIC_MAX_TOKENS,
    ARITHMETIC_N,
    RunEvalDefaults,
    choose_eval_settings,
    run_eval_defaults,
)
from egrc_lite.presets import resolve
from egrc_lite.runs import RunDir, RunError, run_config, write_config
from bad_input import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()
PAPER_SIX = ",".join(PAPER_BENCHMARKS)


def _saved(preset: str = "default", *overrides: str) -> dict:
    """A run's config.yaml as training writes it (the resolved config), as a dict."""
    return resolve(preset, list(overrides)).model_dump(mode="json")


# ---------------------------------------------------------------------------------------- the pure choice

def test_the_cpu_demo_run_is_evaluated_on_held_out_arithmetic_with_quick_settings_and_its_answer_rule():
    run = run_eval_defaults(_saved("default"))
    assert run.arithmetic and run.answer_rule == "last_number" and run.max_completion_length == 160
    choice = choose_eval_settings(run)
    assert choice.benchmarks == "arithmetic,arithmetic-wording"
    assert (choice.limit, choice.n, choice.max_tokens) == (ARITHMETIC_LIMIT, ARITHMETIC_N, ARITHMETIC_MAX_TOKENS)
    assert choice.answer_rule == "last_number" and choice.prompt_suffix == DEFAULT_PROMPT_SUFFIX
    note = choice.note
    assert "\n" not in note and note.startswith("eval chose:")
    for word in ("--benchmarks arithmetic,arithmetic-wording (the held-out sets", "--limit 100 (of 200 each)",
                 "--n 1", "--max-tokens 256", "generated up to 160",
                 "--answer-rule last_number (the run's)", "to override"):
        assert word in note, (word, note)


def test_a_run_that_generated_longer_gets_its_own_generation_cap():
    run = run_eval_defaults(_saved("default", "schedule.stages.0.length_clip=400"))
    assert choose_eval_settings(run).max_tokens == 400
    smoke = run_eval_defaults(_saved("smoke"))  # generates at most 24 tokens: the floor of 256 holds
    assert choose_eval_settings(smoke).max_tokens == ARITHMETIC_MAX_TOKENS


def test_options_given_always_win():
    run = run_eval_defaults(_saved("default"))
    choice = choose_eval_settings(run, benchmarks="arithmetic", n=3, max_tokens=50, limit=7, answer_rule="boxed",
                                  prompt_suffix="Answer:")
    assert (choice.benchmarks, choice.n, choice.max_tokens, choice.limit) == ("arithmetic", 3, 50, 7)
    assert choice.answer_rule == "boxed" and choice.prompt_suffix == "Answer:" and choice.note is None
    paper = choose_eval_settings(run, benchmarks="math500,gsm8k")  # other benchmarks: the paper's n and cap
    assert (paper.n, paper.max_tokens, paper.limit) == (4, 32768, None)
    assert paper.answer_rule == "last_number" and "--answer-rule last_number (the run's)" in paper.note
    assert "--benchmarks" not in paper.note


def test_hub_models_and_other_runs_keep_the_paper_defaults():
    for run in (None, run_eval_defaults(_saved("r1-1.5b"))):
        choice = choose_eval_settings(run)
        assert (choice.benchmarks, choice.n, choice.max_tokens, choice.limit) == (PAPER_SIX, 4, 32768, None)
        assert choice.answer_rule == "boxed" and choice.prompt_suffix == DEFAULT_PROMPT_SUFFIX and choice.note is None
    assert run_eval_defaults({}).arithmetic  # a config without data: section trained on the default source
    hub_arith = choose_eval_settings(None, benchmarks="arithmetic")  # named by hand: the quick settings too
    assert (hub_arith.n, hub_arith.limit, hub_arith.max_tokens, hub_arith.answer_rule) == (1, 100, 256, "boxed")
    assert "--limit 100 (of 200)" in hub_arith.note and "--benchmarks" not in hub_arith.note
    wording = choose_eval_settings(None, benchmarks="arithmetic-wording")  # the held-out wordings alone: quick too
    assert (wording.n, wording.limit, wording.max_tokens) == (1, 100, 256)


def test_the_run_prompt_suffix_and_system_prompt_are_used():
    run = run_eval_defaults(_saved("r1-1.5b", "data.prompt_suffix=Answer briefly.", "data.system_prompt=Be terse."))
    choice = choose_eval_settings(run)
    assert choice.prompt_suffix == "Answer briefly." and choice.system_prompt == "Be terse."
    assert "--prompt-suffix 'Answer briefly.' (the run's)" in choice.note and "'Be terse.'" in choice.note
    assert choose_eval_settings(run, prompt_suffix="").prompt_suffix == ""  # an empty suffix given is kept


def test_a_section_of_another_version_falls_back_to_the_paper_defaults():
    run = run_eval_defaults({"data": {"source": "x.jsonl", "old_key": 1}, "reward": {"answer_rule": "first"}})
    assert run == RunEvalDefaults(max_completion_length=run.max_completion_length)
    assert choose_eval_settings(run).benchmarks == PAPER_SIX


def test_run_config_reads_the_run_and_refuses_a_config_that_is_not_a_mapping(tmp_path):
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    assert run_config(adapter) is None
    (adapter.parent / "config.yaml").write_text("reward:\n  answer_rule: last_number\n")
    assert run_config(adapter) == {"reward": {"answer_rule": "last_number"}}
    (adapter.parent / "config.yaml").write_text("- a list\n")
    with pytest.raises(RunError, match="not a mapping"):
        run_config(adapter)


def test_a_stage_checkpoint_reads_its_run_config(tmp_path):
    run = tmp_path / "run"
    checkpoint = run / "stages" / "0-compress" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    assert run_config(checkpoint) is None
    (run / "config.yaml").write_text("reward:\n  answer_rule: last_number\n")
    assert run_config(checkpoint) == {"reward": {"answer_rule": "last_number"}}
    elsewhere = tmp_path / "other" / "0-compress" / "checkpoint-5"
    elsewhere.mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("reward:\n  answer_rule: first\n")
    assert run_config(elsewhere) is None


# ---------------------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def arith_run(tmp_path_factory):
    """A run trained on builtin:arithmetic (builtin:tiny, graded by last_number, trust_remote_code set)."""
    from egrc_lite.backends.hf import load_policy

    cfg = resolve("smoke", ["lora.r=2", "lora.alpha=4", "model.trust_remote_code=true"])
    run = RunDir(tmp_path_factory.mktemp("evaldefaults") / "run").create()
    write_config(run, cfg)
    untrusted = cfg.model_copy(update={"model": cfg.model.model_copy(update={"trust_remote_code": False})})
    policy, _, _ = load_policy(untrusted)
    policy.save_pretrained(run.adapter_dir)
    return run


def test_eval_of_an_arithmetic_run_chooses_the_held_out_set_and_says_so(arith_run, tmp_path):
    from egrc_lite.evaluation.evaluate import read_summary

    out = tmp_path / "ev"
    result = runner.invoke(app, ["eval", "--adapter", str(arith_run.path), "--limit", "2", "--max-tokens", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    chose = [line for line in result.stdout.splitlines() if line.startswith("eval chose:")]
    assert len(chose) == 1, result.stdout
    assert "--benchmarks arithmetic,arithmetic-wording" in chose[0]
    assert "--n 1" in chose[0] and "last_number" in chose[0]
    assert "--limit 100" not in chose[0] and "--max-tokens" not in chose[0]  # given: not chosen
    notes = [line for line in result.stdout.splitlines() if "trust_remote_code" in line]
    assert len(notes) == 1 and "--trust-remote-code" in notes[0] and "not inherited" in notes[0]
    summary = read_summary(out)
    settings = summary["settings"]
    assert list(summary["benchmarks"]) == ["arithmetic", "arithmetic-wording"]
    assert all(entry["n_problems"] == 2 for entry in summary["benchmarks"].values())
    assert (settings["n"], settings["max_tokens"], settings["limit"]) == (1, 4, 2)
    assert settings["answer_rule"] == "last_number" and settings["trust_remote_code"] is False


def test_eval_model_never_inherits_trust_remote_code(arith_run, capsys):
    from egrc_lite.cli.evaluate import eval_model

    section, adapter = eval_model(None, arith_run.path)
    assert section["name_or_path"] == "builtin:tiny" and section["trust_remote_code"] is False
    assert "pass --trust-remote-code" in capsys.readouterr().out
    section, _ = eval_model(None, arith_run.path, trust_remote_code=True)
    assert section["trust_remote_code"] is True and "trust_remote_code" not in capsys.readouterr().out
    assert eval_model("builtin:tiny", adapter, trust_remote_code=True)[0]["trust_remote_code"] is True
    assert eval_model("other/model", None)[0] == {"name_or_path": "other/model", "trust_remote_code": False}
    saved = yaml.safe_load(arith_run.config_path.read_text())
    assert saved["model"]["trust_remote_code"] is True  # the run's config itself is left alone


def test_a_run_config_that_is_not_a_mapping_is_one_line(arith_run, tmp_path):
    import shutil

    run = tmp_path / "broken"
    shutil.copytree(arith_run.path, run)
    (run / "config.yaml").write_text("- not\n- a mapping\n")
    result = runner.invoke(app, ["eval", "--adapter", str(run), "--model", "builtin:tiny"])
    one_error_line(result, 2, "config.yaml", "unreadable run config")
