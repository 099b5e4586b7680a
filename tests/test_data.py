import json

import pytest

from egrc_lite.config import DataConfig
from egrc_lite.data import (DataError, arithmetic_problems, build_messages, data_fingerprint, load_problems,
                            to_prompt_dataset)


def test_builtin_arithmetic_is_seeded_and_answers_are_right():
    a = arithmetic_problems(50, seed=3)
    assert a == arithmetic_problems(50, seed=3) and a != arithmetic_problems(50, seed=4)
    for p in a:
        nums = [int(t) for t in p.problem.replace("?", " ").replace(".", " ").split() if t.isdigit()]
        x, y = nums[0], nums[1]
        assert int(p.answer) in {x + y, x - y, x * y}


def test_jsonl_with_field_mapping_limit_and_shuffle(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"q": f"problem {i}", "a": str(i), "uid": f"u{i}"} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    cfg = DataConfig(source=str(path), problem_field="q", answer_field="a", id_field="uid", limit=4, shuffle=False)
    probs = load_problems(cfg)
    assert [p.id for p in probs] == ["u0", "u1", "u2", "u3"] and probs[2].answer == "2"
    shuffled = load_problems(cfg.model_copy(update={"shuffle": True, "limit": None}))
    assert sorted(p.id for p in shuffled) == sorted(r["uid"] for r in rows)


def test_missing_file_missing_field_with_line_number_and_empty_set(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_problems(DataConfig(source=str(tmp_path / "nope.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x", "answer": "1"}\n{"problem": "y"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing field 'answer'.*data.answer_field"):
        load_problems(DataConfig(source=str(bad)))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "x", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match="broken.jsonl:2: not valid JSON"):
        load_problems(DataConfig(source=str(broken)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no problems"):
        load_problems(DataConfig(source=str(empty)))
    with pytest.raises(DataError, match="valid: builtin:arithmetic"):
        load_problems(DataConfig(source="builtin:nope"))


def test_shared_benchmark_files_load(shared):
    probs = load_problems(DataConfig(source=str(shared / "data" / "aime24.jsonl"), shuffle=False))
    assert len(probs) == 30 and all(p.answer for p in probs)


def test_prompt_follows_method_md_and_dataset_is_conversational():
    cfg = DataConfig(system_prompt="sys")
    msgs = build_messages("What is 2+2?", cfg)
    assert msgs[0] == {"role": "system", "content": "sys"}
    assert msgs[1]["content"].endswith("Please reason step by step, and put your final answer within \\boxed{}.")
    probs = arithmetic_problems(3, seed=0)
    ds = to_prompt_dataset(probs, DataConfig())
    assert ds.column_names == ["prompt", "answer", "id"] and ds[0]["prompt"][0]["role"] == "user"
    assert len(data_fingerprint(probs)) == 64 and data_fingerprint(probs) != data_fingerprint(probs[:2])


def test_prompt_through_the_real_r1_chat_template(shared):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(shared / "tokenizers" / "deepseek-r1-distill-qwen"))
    text = tok.apply_chat_template(build_messages("1+1?", DataConfig()), tokenize=False, add_generation_prompt=True)
    assert "1+1?\nPlease reason step by step" in text
    # the GGUF-era R1 template stops at the assistant tag; the later HF one adds "<think>\n"
    assert text.rstrip().endswith(("<｜Assistant｜>", "<think>"))
