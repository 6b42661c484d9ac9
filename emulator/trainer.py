"""Child process that trains one job: `python -m emulator.trainer JOB_DIR`.

Reads JOB_DIR/request.json, prints one `METRIC {json}` line per metric point on stdout,
saves the model to JOB_DIR/model and exits 0. Runs apart from the API server so training
never blocks it, a cancel is a signal, and a crash cannot take the server down.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRIC_PREFIX = "METRIC "


def main(job_dir: Path) -> int:
    from emulator.settings import TrainingSettings
    from emulator.training import MetricPoint, train

    request = json.loads((job_dir / "request.json").read_text())

    def emit(point: MetricPoint) -> None:
        print(METRIC_PREFIX + json.dumps({"step": point.step, "metrics": point.metrics}), flush=True)

    model = train(
        [tuple(pair) for pair in request["train"]],
        [tuple(pair) for pair in request["validation"]] if request.get("validation") else None,
        TrainingSettings(**request["settings"]),
        epochs=request.get("epochs", 1),
        learning_rate_multiplier=request.get("learningRateMultiplier", 1.0),
        on_metrics=emit,
    )
    model.save(job_dir / "model")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
