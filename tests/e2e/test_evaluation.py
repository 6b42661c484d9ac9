"""End to end: the TranslationEvaluation scores the tuned endpoint against the base model and gates on minChrf."""

from __future__ import annotations

import re
import shutil

import pytest

from emulator.server import serve_in_thread
from emulator.settings import EmulatorSettings, TrainingSettings
from tests.e2e.cli import make_project

GATE = re.compile(r"translation quality gate: tuned chrF (?P<chrf>[\d.]+) is below minChrf (?P<min>[\d.]+) on "
                  r"(?P<examples>\d+) evaluation examples \(base model: [\d.]+\)")


@pytest.fixture
def learning_emulator(tmp_path):
    """The emulator with its default training: a model that learns the sample data (a job of about 40 s)."""
    settings = EmulatorSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "emulator", training=TrainingSettings())
    with serve_in_thread(settings) as running:
        yield running


def test_evaluation_output_reevaluates_only_on_new_data_and_gates_on_min_chrf(tmp_path, learning_emulator):
    project = make_project(tmp_path, learning_emulator.url)
    evaluation_file = project.dir / "data" / "evaluation.jsonl"
    shutil.copy(project.dir / "data" / "validation.jsonl", evaluation_file)
    project.set_config("translation-tuning:evaluationDataset", "data/evaluation.jsonl")

    project.run("up", "--yes")
    evaluation = project.outputs()["evaluation"]
    examples = len(evaluation_file.read_text().splitlines())
    assert evaluation["examples"] == examples
    for model in ("tuned", "base"):
        assert set(evaluation[model]) == {"bleu", "chrf"}
        assert 0 <= evaluation[model]["bleu"] <= 100 and 0 <= evaluation[model]["chrf"] <= 100, evaluation
    assert evaluation["tuned"]["chrf"] > evaluation["base"]["chrf"], evaluation  # tuning helped
    assert len(evaluation["samples"]) == 3
    assert set(evaluation["samples"][0]) == {"source", "reference", "tuned", "base"}
    assert evaluation["samples"][0]["source"] == evaluation_file.read_text().split('"text":"')[1].split('"')[0]

    # Nothing changed: nothing is evaluated again.
    project.run("up", "--yes")
    assert set(project.last_changes()) == {"same"}

    # One changed evaluation example: only the evaluation is redone, on the new data.
    lines = evaluation_file.read_text().splitlines()
    evaluation_file.write_text("\n".join(lines[1:]) + "\n")
    project.run("up", "--yes")
    assert project.last_changes() == {"replace": 1, "same": project.last_changes()["same"]}
    again = project.outputs()["evaluation"]
    assert again["examples"] == examples - 1

    # The gate: a threshold above the tuned score fails `up` with one line naming score, threshold and count;
    # the recorded scores are judged again, no model is called (an update, not a replacement).
    tuned = again["tuned"]["chrf"]
    project.set_config("translation-tuning:minChrf", str(round(tuned + 5, 1)))
    failed = project.run("up", "--yes", check=False)
    assert failed.returncode != 0
    match = GATE.search(failed.stdout)
    assert match, failed.stdout[-1500:]
    assert (float(match["chrf"]), float(match["min"]), int(match["examples"])) == \
        (round(tuned, 1), round(tuned + 5, 1), examples - 1)
    assert "Traceback" not in failed.stdout + failed.stderr

    project.set_config("translation-tuning:minChrf", str(max(0.1, round(tuned - 5, 1))))
    project.run("up", "--yes")
    assert project.last_changes().get("update") == 1


def test_a_new_stack_below_min_chrf_fails_its_first_up(tmp_path, emulator):
    project = make_project(tmp_path, emulator.url, minChrf="99.5")
    failed = project.run("up", "--yes", check=False)
    assert failed.returncode != 0
    match = GATE.search(failed.stdout)
    assert match and float(match["min"]) == 99.5 and int(match["examples"]) == 60, failed.stdout[-3000:]
    assert "Traceback" not in failed.stdout + failed.stderr
