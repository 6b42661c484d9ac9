"""Translation quality of a tuned model against its base model: translate an evaluation set with both, score
each with sacrebleu (corpus BLEU and chrF), and keep a few examples side by side.

The prompts are the dataset's own user turns (`English: ... Spanish:`), the references its model turns, so the
tuned model is asked exactly what it was tuned on. Both models answer through generateContent with greedy
decoding (temperature 0), a bounded number of requests at a time, each retried like every other call.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tuning.dataset import example_pairs, iter_examples, validate_file
from tuning.errors import TuningError

if TYPE_CHECKING:
    from tuning.client import ApiTarget

SAMPLES = 3
MAX_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class Example:
    """One evaluation example: the prompt sent to both models and the reference translation."""

    source: str
    reference: str


class EvaluationGateError(TuningError):
    """The tuned model scored below the stack's `minChrf`."""

    def __init__(self, chrf: float, threshold: float, examples: int, base_chrf: float) -> None:
        super().__init__(f"translation quality gate: {below_threshold(chrf, threshold, examples)} (base model: "
                         f"{base_chrf:.1f}); improve the data or the hyperparameters, or lower "
                         "translation-tuning:minChrf")
        self.chrf, self.threshold, self.examples = chrf, threshold, examples


def below_threshold(chrf: float, threshold: float, examples: int) -> str:
    return f"tuned chrF {chrf:.1f} is below minChrf {threshold:g} on {examples} evaluation examples"


def load_examples(path: str | Path) -> list[Example]:
    """The (prompt, reference) pairs of a dataset file, which must pass the dataset rules.

    Raises:
        DatasetError: the file breaks a rule (named by file:line), or holds no example.
    """
    validate_file(path, kind="validation").raise_for_problems()
    with open(path, "rb") as stream:
        examples = [Example(*example_pairs(turns)) for _, turns in iter_examples(stream)]
    return examples


def base_model_name(project: str, location: str, base_model: str) -> str:
    """The publisher model resource generateContent takes for a base model."""
    return f"projects/{project}/locations/{location}/publishers/google/models/{base_model}"


def translate(generate: Callable[[str], str], sources: Sequence[str], *, concurrency: int) -> list[str]:
    """`generate` over `sources`, at most `concurrency` at a time, answers in the order of `sources`."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="evaluate") as pool:
        return [answer.strip() for answer in pool.map(generate, sources)]


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """sacrebleu's corpus BLEU and chrF (0-100) of `hypotheses` against one reference each, to 2 decimals."""
    import sacrebleu  # imported on use: the program (preview) never needs it

    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)])
    chrf = sacrebleu.corpus_chrf(list(hypotheses), [list(references)])
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2)}


def evaluate(target: "ApiTarget", *, endpoint: str, base_model: str, examples: Sequence[Example],
             concurrency: int = 8) -> dict[str, Any]:
    """Translate `examples` with the tuned `endpoint` and the base model, and score both.

    Returns:
        `{"examples": N, "tuned": {"bleu", "chrf"}, "base": {"bleu", "chrf"}, "samples": [{"source",
        "reference", "tuned", "base"}, ...]}` with the first `SAMPLES` examples as samples.

    Raises:
        ApiCallError: a generateContent call failed for good (after its retries).
    """
    from tuning.prediction import PredictionApi

    api = PredictionApi(target)

    def answer_with(model: str) -> Callable[[str], str]:
        """`model`'s greedy answer to one prompt (a function per model: no closure over a loop variable)."""
        def generate(prompt: str) -> str:
            return api.generate(model, prompt, max_output_tokens=MAX_OUTPUT_TOKENS, temperature=0.0).text
        return generate

    sources = [example.source for example in examples]
    references = [example.reference for example in examples]
    answers: dict[str, list[str]] = {}
    for label, model in (("tuned", endpoint),
                         ("base", base_model_name(target.project, target.location, base_model))):
        answers[label] = translate(answer_with(model), sources, concurrency=concurrency)
    # translate() answers every source in order: one tuned and one base answer per example.
    samples = zip(examples[:SAMPLES], answers["tuned"][:SAMPLES], answers["base"][:SAMPLES], strict=True)
    return {
        "examples": len(examples),
        "tuned": corpus_scores(answers["tuned"], references),
        "base": corpus_scores(answers["base"], references),
        "samples": [{"source": example.source, "reference": example.reference, "tuned": tuned, "base": base}
                    for example, tuned, base in samples],
    }


def check_gate(evaluation: dict[str, Any], min_chrf: float) -> None:
    """Raise `EvaluationGateError` when `min_chrf` is set (> 0) and the tuned chrF is below it."""
    if min_chrf > 0 and evaluation["tuned"]["chrf"] < min_chrf:
        # int(): numbers come back from the Pulumi state as floats.
        raise EvaluationGateError(evaluation["tuned"]["chrf"], min_chrf, int(evaluation["examples"]),
                                  evaluation["base"]["chrf"])


def promotion_problems(evaluation: Any, min_chrf: float) -> list[str]:
    """Why an environment's `evaluation` output does not allow promoting its data and settings (empty: it does).

    Promotion needs an evaluation, a tuned chrF at or above `min_chrf` (when set), and a tuned model that
    translates better than its base model (higher chrF): otherwise tuning did not help.
    """
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("tuned"), dict):
        return ["no evaluation recorded (the stack has no evaluation set, or its job has not succeeded yet)"]
    tuned, base = float(evaluation["tuned"]["chrf"]), float(evaluation["base"]["chrf"])
    problems = []
    if min_chrf > 0 and tuned < min_chrf:
        problems.append(below_threshold(tuned, min_chrf, int(evaluation["examples"])))
    if tuned <= base:
        problems.append(f"tuned chrF {tuned:.1f} does not beat the base model's {base:.1f}")
    return problems
