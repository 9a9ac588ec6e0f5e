"""Worker processes never run the caller's main script again: a plain script (no main guard) can run
``evaluate`` with several workers."""

import multiprocessing.spawn
import subprocess
import sys

from apfed.spawning import without_main_script


def test_spawned_children_are_not_told_to_import_the_main_module():
    main = sys.modules["__main__"]
    before = (main.__spec__, getattr(main, "__file__", None))
    with without_main_script():
        data = multiprocessing.spawn.get_preparation_data("worker")
        assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert (main.__spec__, getattr(main, "__file__", None)) == before  # restored


PLAIN_SCRIPT = """
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.evaluate import evaluate

report = evaluate(load_bundled("digits", 2), 0, ["local", "apfed-c"], 1, make_config("default", epochs=1), None,
                  "default", quiet=True, jobs=2)
print(sorted(report["summary"]))
"""


def test_a_script_without_a_main_guard_can_evaluate_with_two_workers(tmp_path):
    """With multiprocessing's spawn each worker ran the script again, failed while starting, and the pool replaced
    it forever: the script hung."""
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['apfed-c', 'local']"
