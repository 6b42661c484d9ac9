"""Tests of the emulator's really-trained model: learning, metrics, determinism, persistence, decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emulator import model as training
from emulator.model import Generation, MetricPoint, TrainedModel, TrainingCancelled, base_model, train
from emulator.settings import TrainingSettings
from emulator.tokenizer import EOS, N_BASE, Tokenizer

PAIRS = [
    ("the cat", "el gato"), ("the dog", "el perro"), ("a house", "una casa"), ("the water", "el agua"),
    ("a book", "un libro"), ("the city", "la ciudad"), ("a table", "una mesa"), ("the car", "el coche"),
    ("the bread", "el pan"), ("a friend", "un amigo"), ("the sea", "el mar"), ("a street", "una calle"),
]
VALIDATION = [("the book", "el libro"), ("a dog", "un perro"), ("the house", "la casa")]
TRAIN_KEYS = {"/train_total_loss", "/train_fraction_of_correct_next_step_preds", "/train_num_predictions"}
EVAL_KEYS = {"/eval_total_loss", "/eval_fraction_of_correct_next_step_preds", "/eval_num_predictions"}
MEMO_PROMPT, MEMO_ANSWER = "good morning", "buenos días"


def small(**overrides) -> TrainingSettings:
    """Settings small enough that a run takes about a second."""
    values = dict(d_model=16, n_layers=1, n_heads=2, max_len=64, batch_size=8, steps=30, learning_rate=1e-2,
                  eval_every=10, seed=0)
    return TrainingSettings(**(values | overrides))


def run(examples, validation=None, settings=None, **kwargs) -> tuple[TrainedModel, list[MetricPoint]]:
    points: list[MetricPoint] = []
    model = train(examples, validation, settings or small(), on_metrics=points.append, **kwargs)
    return model, points


@pytest.fixture(scope="module")
def memorised() -> TrainedModel:
    """A tiny model trained until it reproduces one pair (same shapes as PAIRS: the jitted step is reused)."""
    model, points = run([(MEMO_PROMPT, MEMO_ANSWER)], settings=small(steps=150, eval_every=50))
    assert points[-1].metrics["/train_fraction_of_correct_next_step_preds"] == 1.0
    return model


def test_loss_falls_and_points_at_eval_every_steps():
    _, points = run(PAIRS, VALIDATION)
    assert [p.step for p in points] == [10, 20, 30]
    first, last = points[0].metrics, points[-1].metrics
    assert last["/train_total_loss"] < 0.8 * first["/train_total_loss"]
    assert last["/eval_total_loss"] < first["/eval_total_loss"]
    assert last["/train_fraction_of_correct_next_step_preds"] > first["/train_fraction_of_correct_next_step_preds"]


def test_final_step_reported_when_not_a_multiple_of_eval_every_and_epochs_multiply_steps():
    _, points = run(PAIRS, settings=small(steps=12, eval_every=10), epochs=2)
    assert [p.step for p in points] == [10, 20, 24]


def test_metric_keys_exact_with_and_without_validation():
    _, without = run(PAIRS, None, small(steps=10))
    _, empty = run(PAIRS, [], small(steps=10))
    _, with_val = run(PAIRS, VALIDATION, small(steps=10))
    assert set(without[-1].metrics) == TRAIN_KEYS
    assert set(empty[-1].metrics) == TRAIN_KEYS
    assert set(with_val[-1].metrics) == TRAIN_KEYS | EVAL_KEYS
    assert all(isinstance(v, float) for v in with_val[-1].metrics.values())


def test_num_predictions_count_answer_tokens_plus_eos_only():
    # One pair repeated in every batch row: the step's batch predicts batch_size * (answer tokens + EOS).
    # 12 validation examples with batch_size 8: the eval count must span both (padded) eval batches.
    # Byte-level, every byte is a token; with the learned vocabulary, "hola" and " ñ" are one token each and
    # the validation answers' unknown words are their bytes.
    _, points = run([("hello there", "hola ñ")], PAIRS, small(steps=10, vocabulary_size=0))
    assert points[-1].metrics["/train_num_predictions"] == 8 * (len("hola ñ".encode()) + 1)
    assert points[-1].metrics["/eval_num_predictions"] == sum(len(a.encode()) + 1 for _, a in PAIRS)
    model, points = run([("hello there", "hola ñ")], PAIRS, small(steps=10))
    assert model.tokenizer.vocabulary == ["hello", " there", "hola", " ñ"]
    assert points[-1].metrics["/train_num_predictions"] == 8 * (2 + 1)
    assert points[-1].metrics["/eval_num_predictions"] == sum(model.count_tokens(a) + 1 for _, a in PAIRS)


def test_long_prompt_is_truncated_from_the_left_and_the_answer_kept():
    tokens, mask = training.encode_example(Tokenizer(), "x" * 500 + " the cat", "el gato", 32)
    assert len(tokens) == 33 and len(mask) == 32
    assert bytes(tokens[-11:-9].tolist()) == b"at"  # the prompt's end survives, right before SEP
    assert tokens[-9] == training.SEP and bytes(tokens[-8:-1].tolist()) == b"el gato" and tokens[-1] == EOS
    assert mask.sum() == len("el gato") + 1 and mask[-8:].all()
    # An answer too long for the window keeps its start and has no EOS to learn.
    tokens, mask = training.encode_example(Tokenizer(), "hi", "y" * 100, 32)
    assert tokens[0] == training.BOS and tokens[1] == training.SEP and EOS not in tokens
    assert mask.sum() == 31


def test_same_seed_same_metrics_other_seed_different():
    _, a = run(PAIRS, VALIDATION)
    _, b = run(PAIRS, VALIDATION)
    _, c = run(PAIRS, VALIDATION, small(seed=1))
    assert a == b
    assert [p.metrics for p in a] != [p.metrics for p in c]


def test_learning_rate_multiplier_changes_training():
    _, base = run(PAIRS, settings=small(steps=10))
    _, faster = run(PAIRS, settings=small(steps=10), learning_rate_multiplier=0.1)
    assert base[-1].metrics["/train_total_loss"] != faster[-1].metrics["/train_total_loss"]


def test_should_stop_cancels_before_the_next_step():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) == 5

    with pytest.raises(TrainingCancelled) as info:
        run(PAIRS, settings=small(eval_every=2), should_stop=stop)
    assert info.value.step == 4
    assert len(calls) == 5


def test_invalid_arguments_rejected():
    with pytest.raises(ValueError):
        train([], None, small())
    with pytest.raises(ValueError):
        train(PAIRS, None, small(), epochs=0)
    with pytest.raises(ValueError):
        train(PAIRS, None, small(d_model=16, n_heads=3))


def test_memorised_pair_is_reproduced(memorised):
    gen = memorised.generate(MEMO_PROMPT)
    assert memorised.count_tokens(MEMO_PROMPT) == 2 and memorised.count_tokens(MEMO_ANSWER) == 2  # two words each
    assert gen == Generation(MEMO_ANSWER, 2 + 2, 2 + 1, "STOP")


def test_max_output_tokens_cuts_generation(memorised):
    gen = memorised.generate(MEMO_PROMPT, max_output_tokens=1)
    assert gen.text == "buenos"
    assert gen.output_token_count == 1 == memorised.count_tokens(gen.text)
    assert gen.finish_reason == "MAX_TOKENS"
    with pytest.raises(ValueError):
        memorised.generate(MEMO_PROMPT, max_output_tokens=0)


def test_sampling_is_seeded(memorised):
    hot = [memorised.generate("zzz", temperature=5.0, seed=s, max_output_tokens=20).text for s in range(4)]
    again = [memorised.generate("zzz", temperature=5.0, seed=s, max_output_tokens=20).text for s in range(4)]
    assert hot == again
    assert len(set(hot)) > 1


def test_cached_decoding_matches_full_forward(memorised):
    # The jitted KV-cache decoder must pick the same greedy tokens as the training-time forward pass.
    gen = memorised.generate("good", max_output_tokens=8)
    forward = jax.jit(training.forward, static_argnames="n_heads")
    tokens = [training.BOS, *memorised.tokenizer.encode("good"), training.SEP]
    n_used = N_BASE + len(memorised.tokenizer.vocabulary)
    expected = []
    for _ in range(8):
        # A fixed-size buffer so the forward compiles once; causal attention makes the padding irrelevant.
        buf = np.full((1, memorised.config["max_len"]), training.PAD, np.int32)
        buf[0, : len(tokens)] = tokens
        logits = forward(memorised.params, jnp.asarray(buf), n_heads=memorised.config["n_heads"])
        logits = np.array(logits[0, len(tokens) - 1])
        logits[training.PAD:EOS] = -np.inf
        logits[n_used:] = -np.inf  # rows that only pad the embedding table
        token = int(logits.argmax())
        if token == EOS:
            break
        expected.append(token)
        tokens.append(token)
    assert gen.text == memorised.tokenizer.decode(expected)


def test_save_load_round_trip(memorised, tmp_path):
    memorised.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"params.npz", "config.json", "tokenizer.json"}
    loaded = TrainedModel.load(tmp_path / "model")
    assert loaded.config == memorised.config
    for prompt in (MEMO_PROMPT, "something else"):
        assert loaded.generate(prompt, max_output_tokens=16) == memorised.generate(prompt, max_output_tokens=16)
    (tmp_path / "model" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError):
        TrainedModel.load(tmp_path / "model")


def test_byte_level_models_saved_before_the_tokenizer_still_load(tmp_path):
    model, _ = run(PAIRS, settings=small(steps=1, vocabulary_size=0))
    model.save(tmp_path / "model")
    (tmp_path / "model" / "tokenizer.json").unlink()
    (tmp_path / "model" / "config.json").write_text('{"format": "emulator-byte-transformer/1", "d_model": 16, '
                                                    '"n_layers": 1, "n_heads": 2, "max_len": 64}')
    loaded = TrainedModel.load(tmp_path / "model")
    assert loaded.tokenizer.vocabulary == []
    assert loaded.generate("the cat", max_output_tokens=4) == model.generate("the cat", max_output_tokens=4)


def test_base_model_is_untrained_byte_level_and_deterministic():
    a, b = base_model(small()), base_model(small())
    assert a.tokenizer.vocabulary == [] and a.config["vocab_size"] == 384
    assert a.generate("English: Hello. Spanish:", max_output_tokens=16) == b.generate(
        "English: Hello. Spanish:", max_output_tokens=16)
