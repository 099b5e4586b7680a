"""Entropy-conflict analysis: entropy, gradient proxy and exact LoRA gradient norms, correlations,
connector statistics, the ``analyze`` command end to end on builtin:tiny, and run comparison (CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from egrc_lite.analysis.entropy import (
    ConnectorMatcher, connector_stats, exact_token_grad_norms, get_connector_matcher,
    gradient_proxy, token_entropy,
)
from egrc_lite.analysis.run import OBJECTIVE_KEYS, AnalysisError, compare_runs
from egrc_lite.cli.analyze import analyze
from egrc_lite.analysis.correlation import correlation, pearson, rankdata, spearman

ASSETS = Path(__file__).resolve().parent / "assets"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices run far faster on one thread when the machine is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_policy():
    """builtin:tiny wrapped with LoRA (smoke preset), with a random non-zero B so A gets gradients too."""
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.presets import resolve

    model, tokenizer, _ = load_policy(resolve("smoke"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model, tokenizer


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(analyze)

    @app.callback()
    def main() -> None:  # a group, so the command is invoked by name as under egrc-lite
        pass

    return app


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


# ------------------------------------------------------------------------------------- entropy
def test_entropy_matches_hand_computed_distribution():
    p = torch.tensor([0.5, 0.25, 0.25])
    h = token_entropy(p.log().view(1, 1, 3))  # [1, 1]
    assert h.shape == (1, 1)
    assert float(h) == pytest.approx(1.5 * math.log(2), abs=1e-6)  # -(.5 ln .5 + 2 * .25 ln .25)
    # at temperature T the distribution is softmax(z / T): logits T * log p give back p
    assert float(token_entropy((3.0 * p.log()).view(1, 1, 3), temperature=3.0)) == pytest.approx(1.5 * math.log(2), abs=1e-6)
    uniform = token_entropy(torch.zeros(2, 5, 4))  # [2, 5]
    assert torch.allclose(uniform, torch.full((2, 5), math.log(4)))
    masked = token_entropy(torch.tensor([[[0.0, 0.0, -math.inf]]]))  # an impossible token adds nothing
    assert float(masked) == pytest.approx(math.log(2), abs=1e-6)
    huge = token_entropy(torch.tensor([[[1e4, 0.0, 0.0]]]))  # stable for large logits
    assert math.isfinite(float(huge)) and float(huge) < 1e-6


# ------------------------------------------------------------------------------------- proxy
def test_proxy_matches_hand_computed_case():
    logits = torch.tensor([0.5, 0.25, 0.25]).log().view(1, 1, 3).expand(1, 2, 3)  # [1, 2, 3]
    tokens = torch.tensor([[0, 1]])  # [1, 2]
    got = gradient_proxy(logits, tokens)
    # onehot(0) - p = (.5, -.25, -.25); onehot(1) - p = (-.5, .75, -.25)
    assert got[0].tolist() == pytest.approx([math.sqrt(0.375), math.sqrt(0.875)], abs=1e-6)


def test_proxy_is_temperature_times_logit_gradient_norm():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64) * 3  # [2, 3, 7]
    tokens = torch.randint(0, 7, (2, 3), generator=gen)  # [2, 3]
    temp = 0.6
    z = logits.clone().requires_grad_(True)
    torch.log_softmax(z / temp, dim=-1).gather(-1, tokens.unsqueeze(-1)).sum().backward()
    expected = z.grad.norm(dim=-1) * temp  # [2, 3]
    assert torch.allclose(gradient_proxy(logits, tokens, temp).double(), expected, atol=1e-5)
    confident = torch.tensor([[[20.0, 0.0, 0.0]]])  # p(o) ~ 1 - 4e-9: no cancellation to 0 or noise
    small = float(gradient_proxy(confident, torch.tensor([[0]])))
    exact = math.sqrt((2 * math.exp(-20)) ** 2 + 2 * math.exp(-40))
    assert small == pytest.approx(exact, rel=1e-3)


# ------------------------------------------------------------------------------------- exact gradient
def _direct_norm(model, row: torch.Tensor, t: int, temperature: float) -> float:
    """||grad log pi(row[t])|| over trainable parameters, by a plain forward and .backward()."""
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=row.unsqueeze(0)).logits  # [1, T, V]
    logp = torch.log_softmax(logits[0, t - 1] / temperature, dim=-1)[row[t]]
    logp.backward()
    total = sum(float(p.grad.double().square().sum()) for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return math.sqrt(total)


def test_exact_grad_norm_matches_direct_autograd(tiny_policy):
    model, _ = tiny_policy
    model.eval()
    gen = torch.Generator().manual_seed(2)
    a = torch.randint(10, 300, (12,), generator=gen)  # [12]
    b = torch.randint(10, 300, (9,), generator=gen)  # [9] left-padded to 12 below
    pad = 0
    input_ids = torch.stack([a, torch.cat([torch.full((3,), pad), b])])  # [2, 12]
    mask = torch.stack([torch.ones(12, dtype=torch.long), torch.cat([torch.zeros(3), torch.ones(9)]).long()])  # [2, 12]
    positions = [(0, 5), (1, 11), (0, 11), (1, 4)]
    got = exact_token_grad_norms(model, input_ids, mask, positions, temperature=0.7)
    expected = [_direct_norm(model, a, 5, 0.7), _direct_norm(model, b, 8, 0.7), _direct_norm(model, a, 11, 0.7),
                _direct_norm(model, b, 1, 0.7)]
    assert got.tolist() == pytest.approx(expected, rel=1e-4)
    assert min(expected) > 0
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind
    with pytest.raises(ValueError, match="not a scored token"):
        exact_token_grad_norms(model, input_ids, mask, [(1, 3)])  # the first real token has no context


# ------------------------------------------------------------------------------------- correlation
def test_pearson_and_spearman_with_ties():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) is None and pearson([1], [2]) is None
    assert rankdata([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 2, 3, 4): r = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)  # monotone, not linear
    c = correlation([1, 2, float("nan"), 3, 4], [1, 3, 5, None, 2])
    assert c["n"] == 3 and c["pearson"] == pytest.approx(pearson([1, 2, 4], [1, 3, 2]))


# ------------------------------------------------------------------------------------- connectors
def test_connector_stats_on_hand_written_completion():
    # "<think>\nWait, 3 + 4 = 7.\n\nTherefore the answer is 7. Alternatively count on: so 7." (byte-level BPE style)
    tokens = ["<think>", "\n", "Wait", ",", "Ġ3", "Ġ+", "Ġ4", "Ġ=", "Ġ7", ".", "\n\n", "Therefore", "Ġthe", "Ġanswer",
              "Ġis", "Ġ7", ".", "ĠAlternatively", "Ġcount", "Ġon", ":", "Ġso", "Ġ7", "."]
    ents = [0.1, 0.2, 2.5, 0.1, 0.9, 0.3, 0.2, 0.1, 0.4, 0.2, 1.6, 2.1, 0.3, 0.2, 0.1, 0.2, 0.3, 2.9, 1.2, 0.4, 0.2,
            1.0, 0.3, 0.1]
    s = connector_stats(tokens, ents, ["Wait", "therefore", "alternatively", "so"])
    conn = [2.5, 2.1, 2.9, 1.0]
    assert s["n_tokens"] == 24 and s["n_connector"] == 4
    assert s["connector_share"] == pytest.approx(4 / 24)
    assert s["entropy_connector"] == pytest.approx(sum(conn) / 4)
    assert s["entropy_other"] == pytest.approx((sum(ents) - sum(conn)) / 20)
    high = s["high_entropy"]  # top 20% of 24 tokens: ceil(4.8) = 5 tokens
    assert high["n_tokens"] == 5 and high["threshold"] == pytest.approx(1.2)
    rows = {r["token"]: r for r in high["top_tokens"]}
    assert set(rows) == {"alternatively", "wait", "therefore", "\\n\\n", "count"}
    assert rows["wait"]["connector"] and not rows["count"]["connector"] and not rows["\\n\\n"]["connector"]
    assert high["connector_share"] == pytest.approx(3 / 5)
    assert high["top_tokens"][0]["token"] == "alternatively"  # equal counts: higher entropy first
    empty = connector_stats([], [])
    assert empty["connector_share"] is None and empty["high_entropy"]["top_tokens"] == []


def test_connector_step_metrics_from_token_ids(tiny_policy):
    """What the trainer logs per step: sums per micro-batch (``[B, T]``, masked), metrics from their total."""
    _, tok = tiny_policy
    now = tok.convert_tokens_to_ids("Ġnow")  # "now" is a default connector and a token of builtin:tiny
    the = tok.convert_tokens_to_ids("Ġthe")
    pad = tok.pad_token_id
    matcher = get_connector_matcher(tok, ["now", "then"])
    assert matcher is get_connector_matcher(tok, ["then", "NOW"])  # cached per tokenizer and word set
    assert now in matcher.ids and the not in matcher.ids
    ids = torch.tensor([[now, the, the, pad], [the, now, now, the]])  # [2, 4]
    ents = torch.tensor([[2.0, 1.0, 0.0, 9.0], [0.5, 3.0, 1.0, 0.5]])  # [2, 4]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])  # [2, 4]: the pad is not a completion token
    stats = ConnectorMatcher.stats_from_sums(matcher.sums(ids, ents, mask))
    assert stats == pytest.approx({"train/connector/share": 3 / 7, "train/entropy/connector": 2.0,
                                   "train/entropy/other": 2.0 / 4})
    assert ConnectorMatcher.stats_from_sums(matcher.sums(ids, ents, mask), prefix="") == pytest.approx(
        {k[len("train/"):]: v for k, v in stats.items()})
    sums = matcher.sums(ids, ents, mask) + matcher.sums(ids[:1], ents[:1], mask[:1])  # accumulate micro-batches
    assert ConnectorMatcher.stats_from_sums(sums)["train/connector/share"] == pytest.approx(4 / 10)
    only = get_connector_matcher(tok, ["now"])
    none = ConnectorMatcher.stats_from_sums(only.sums(torch.tensor([[the]]), torch.tensor([[1.0]])))
    assert math.isnan(none["train/entropy/connector"]) and none["train/connector/share"] == 0.0


# ------------------------------------------------------------------------------------- analyze end to end
def test_analyze_cli_end_to_end_on_smoke_model(tmp_path):
    out = tmp_path / "analysis"
    args = ["analyze", "--model", "builtin:tiny", "--data", str(ASSETS / "analysis_problems.jsonl"), "--limit", "2",
            "--samples", "2", "--max-tokens", "12", "--exact-tokens", "5", "--answer-rule", "last_number",
            "--out", str(out)]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "Entropy conflict" in result.output and "top 20% by entropy" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["problems"] == 2 and report["responses"] == 4
    assert report["tokens"] == sum(json.loads(line)["num_tokens"] for line in (out / "responses.jsonl").open())
    assert report["tokens"] > 0
    corr = report["correlation"]
    assert corr["entropy_vs_proxy"]["n"] == report["tokens"]
    assert corr["entropy_vs_exact"]["n"] == corr["proxy_vs_exact"]["n"] == min(5, report["tokens"])
    assert corr["entropy_vs_proxy"]["pearson"] is not None
    for r in map(json.loads, (out / "responses.jsonl").open()):
        assert len(r["entropy"]) == len(r["proxy"]) == len(r["tokens"]) == r["num_tokens"]
        assert all(0 <= h <= math.log(384) + 1e-4 for h in r["entropy"])  # builtin:tiny's vocabulary
        assert all(0 <= g <= math.sqrt(2) for g in r["proxy"])
    assert sum(len(json.loads(line)["exact"]) for line in (out / "responses.jsonl").open()) == min(5, report["tokens"])
    conn = report["connectors"]
    assert conn["high_entropy"]["n_tokens"] == math.ceil(0.2 * report["tokens"])
    byc = report["entropy_by_correctness"]
    assert byc["correct"]["responses"] + byc["incorrect"]["responses"] == 4
    assert _is_png(out / "entropy_vs_gradient.png") and _is_png(out / "high_entropy_tokens.png")


def test_analyze_cli_user_mistakes_are_one_line(tmp_path):
    app, runner = _cli(), CliRunner()
    cases = [
        (["analyze"], "--model"),
        (["analyze", "--model", "builtin:tiny", "--data", "x.jsonl", "--benchmark", "gsm8k"], "not both"),
        (["analyze", "--model", "builtin:tiny", "--temperature", "0", "--out", str(tmp_path / "o")], "--temperature"),
        (["analyze", "--runs", str(tmp_path / "missing")], "no metrics.jsonl"),
        (["analyze", "--model", "builtin:tiny", "--runs", str(tmp_path)], "does not take --model"),
        (["analyze", str(tmp_path)], "follow --runs"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        text = " ".join(result.output.split())
        assert needle in text and "Traceback" not in text, (args, result.output)
    with pytest.raises(AnalysisError, match="at least one"):
        compare_runs([], tmp_path)


# ------------------------------------------------------------------------------------- compare runs
def _write_metrics(run: Path, rows: list[dict]) -> Path:
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_compare_runs_on_hand_written_metrics(tmp_path):
    guided = _write_metrics(tmp_path / "guided", [
        {"step": s, "stage": "compress" if s <= 3 else "explore", "mode": "compress" if s <= 3 else "explore",
         "train/len/mean": 100.0 - 10 * s, "train/acc": 0.5, "train/entropy/mean": 1.0 - 0.1 * s,
         "train/connector/share": 0.05, "train/entropy/connector": 2.0, "train/entropy/other": 0.8}
        for s in range(1, 6)])
    ent_rows = [{"step": s, "stage": "entangled", "mode": "entangled", "train/len/mean": 100.0 - s,
                 "train/acc": 0.4 + 0.01 * s, "train/entropy/mean": 0.9, "train/adv/compress_samples": 2.0 * s,
                 "train/adv/accuracy_samples": 16.0 - 2.0 * s, "train/loss": 0.1} for s in range(1, 5)]
    ent_rows.append(dict(ent_rows[-1], **{"train/len/mean": 42.0}))  # a resumed run repeats step 4: last row wins
    entangled = _write_metrics(tmp_path / "entangled", ent_rows)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(_cli(), ["analyze", "--runs", str(guided), str(entangled), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "guided" in result.output and "entangled" in result.output
    report = json.loads((out / "runs_report.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert runs["guided"]["stages"] == ["compress", "explore"] and runs["guided"]["stage_changes"] == [[4, "explore"]]
    assert not runs["guided"]["entangled"] and runs["entangled"]["entangled"]
    assert runs["entangled"]["steps"] == 4 and runs["entangled"]["last"]["train/len/mean"] == 42.0
    assert runs["entangled"]["series"][OBJECTIVE_KEYS[0]] == [[s, 2.0 * s] for s in range(1, 5)]
    assert runs["guided"]["first"]["train/len/mean"] == 90.0 and runs["guided"]["last"]["train/len/mean"] == 50.0
    panel_keys = [k for panel in report["panels"] for k in panel["keys"]]
    assert "train/connector/share" in panel_keys and "train/entropy/other" in panel_keys  # logged by one run
    assert _is_png(out / "run_curves.png") and _is_png(out / "objective_counts.png")
    again = compare_runs([guided / "metrics.jsonl"], tmp_path / "one", smooth=3)  # a metrics file works too
    assert again["runs"][0]["name"] == "guided" and _is_png(tmp_path / "one" / "objective_counts.png")
