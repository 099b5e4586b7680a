from egrc_lite.evaluation.tasks import load_benchmark, parse_benchmarks
from egrc_lite.config import DataConfig
from egrc_lite.data import load_problems


def test_heldout_arithmetic_is_fixed_and_disjoint_from_the_default_training_set():
    bench = load_benchmark("arithmetic")
    assert len(bench.problems) == 200 and bench.problems == load_benchmark("arithmetic").problems
    train = {p.problem for p in load_problems(DataConfig())}  # the default preset's training problems
    assert train and not train & {p.problem for p in bench.problems}
    assert load_benchmark("arithmetic", limit=3).problems == bench.problems[:3]
    assert parse_benchmarks("arithmetic, math500") == ["arithmetic", "math500"]
