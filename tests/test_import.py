import subprocess
import sys

HEAVY = ["torch", "trl", "transformers", "unsloth", "vllm", "peft", "datasets"]


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_egrc_lite_is_light():
    assert _loaded_after("import egrc_lite") == set()


def test_cli_and_config_modules_stay_light():
    assert _loaded_after("import egrc_lite.cli.app, egrc_lite.config, egrc_lite.presets, egrc_lite.data, "
                         "egrc_lite.runs") == set()
