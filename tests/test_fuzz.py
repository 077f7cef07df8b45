"""Mutated image files through `denoise batch`: each ends as one record, ok or failed with a reason, and none
crashes the run. The cases come from benchmarks/fuzz_inputs.py, which runs many more of them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.fuzz_inputs import FORMATS, fuzz_cases, make_seeds
from denoiser.cli import main

CASES = 300  # about 12 per seed; `python benchmarks/fuzz_inputs.py --cases 20000` runs the long version


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's about the malformed tags it skips
def test_mutated_files_each_end_as_one_record(tmp_path, tiny_models):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    cases = {case.name: case for case in fuzz_cases(CASES, seed=34)}
    for case in cases.values():
        (folder / case.name).write_bytes(case.data)
    result = CliRunner().invoke(
        main, ["batch", str(folder), str(out), "-m", str(tiny_models["gray"]), "--max-pixels", "2000000", "-q"]
    )
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 1  # some cases fail, and the run goes on past them
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert sorted(Path(r["input"]).name for r in records) == sorted(cases)
    for r in records:
        assert r["status"] in ("ok", "failed")
        assert bool(r["error"]) == (r["status"] == "failed")
        assert (r["status"] == "ok") == Path(r["output"] or "").is_file()
    status = {Path(r["input"]).name: r["status"] for r in records}
    seeds = [name for name in cases if "-seed." in name]
    assert len(seeds) == len(make_seeds(np.random.default_rng(0))) and all(status[n] == "ok" for n in seeds)
    assert sum(name.startswith("found-") for name in cases) == 6  # what crashed read_image before its fixes
    outcomes = Counter((cases[name].fmt, outcome) for name, outcome in status.items())
    assert all(outcomes[fmt, "ok"] and outcomes[fmt, "failed"] for fmt in FORMATS), outcomes
