"""One study of bench/gpu_check.py, run under `accelerate launch`:
`python bench/gpu_study.py RECIPE.yaml OUT`.

What `python -m lab run RECIPE --out OUT --quiet` does, without the CLI's library set-up
(it imports `datasets`, which the GPU machine lacks), then records this process's peak
memory in OUT/peak.json (GPU: torch's max allocated and reserved bytes; CPU: max RSS).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    recipe_path, out = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from lab.core.recipe import load_recipe
    from lab.study.run import run_study

    recipe = load_recipe(recipe_path)
    t0 = time.time()
    progress = os.environ.get("GPU_STUDY_LOG") == "1"  # the lab's log lines (e.g. resuming)
    run_study(recipe, out, progress=progress, cache_dir=os.environ.get("FTLAB_CACHE"))
    wall = time.time() - t0
    from accelerate import PartialState

    state = PartialState()
    peak = {"wall_s": wall, "rank": state.process_index, "world": state.num_processes}
    if torch.cuda.is_available():
        peak["gpu_max_allocated"] = torch.cuda.max_memory_allocated()
        peak["gpu_max_reserved"] = torch.cuda.max_memory_reserved()
        peak["gpu_total"] = torch.cuda.get_device_properties(0).total_memory
    peak["cpu_max_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if state.is_main_process:
        (out / "peak.json").write_text(json.dumps(peak))


if __name__ == "__main__":
    main()
