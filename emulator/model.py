"""A small transformer that the emulator really trains from scratch on a tuning dataset, on the CPU.

Its tokenizer (`emulator.tokenizer`: the training data's words, bytes for anything else) is built from the
training examples at the start of each run and saved with the weights.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from emulator.settings import TrainingSettings
from emulator.tokenizer import BOS, EOS, N_BASE, PAD, SEP, Tokenizer

Example = tuple[str, str]
Params = dict[str, jax.Array]

_FORMAT = "emulator-transformer/2"
_BYTE_FORMAT = "emulator-byte-transformer/1"  # models saved before the tokenizer: byte-level, no tokenizer.json
_PARAMS_FILE = "params.npz"
_CONFIG_FILE = "config.json"
_TOKENIZER_FILE = "tokenizer.json"
_WEIGHT_DECAY = 0.01
_CLIP_NORM = 1.0


class TrainingCancelled(Exception):
    """Raised by `train` when `should_stop()` returns true; carries the last completed step."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training cancelled after step {step}")
        self.step = step


@dataclass(frozen=True)
class MetricPoint:
    """Metrics reported at one step (keys as in Vertex AI tuning: `/train_total_loss`, ...)."""

    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Generation:
    """One generated answer; token counts include the special tokens (BOS, SEP before; EOS after)."""

    text: str
    prompt_token_count: int
    output_token_count: int
    finish_reason: str  # "STOP" or "MAX_TOKENS"


def encode_example(tokenizer: Tokenizer, prompt: str, answer: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """`BOS prompt SEP answer EOS` padded to max_len + 1 tokens, and the loss mask over tokens[1:].

    The model sees max_len input positions, so a sequence holds max_len + 1 tokens (the last one is only a
    target). Too long: the prompt loses tokens from the left first; an answer that alone does not fit keeps its
    start and loses its EOS (it did not end there, so the model must not learn to stop there).
    """
    p, a = tokenizer.encode(prompt), tokenizer.encode(answer)
    total = max_len + 1
    ans = a + [EOS] if len(a) + 3 <= total else a[: total - 2]
    room = total - 2 - len(ans)
    p = p[max(0, len(p) - room):]
    seq = [BOS, *p, SEP, *ans]
    tokens = np.full(total, PAD, np.int32)
    tokens[: len(seq)] = seq
    mask = np.zeros(max_len, np.float32)
    mask[len(p) + 1: len(seq) - 1] = 1.0  # target j is tokens[j + 1]: the answer tokens and EOS
    return tokens, mask


def _encode_all(tokenizer: Tokenizer, examples: list[Example], max_len: int,
                multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Encoded examples, padded with all-PAD rows (mask 0) to a multiple of `multiple` rows.

    Columns past the longest sequence (rounded up to 8 positions) are dropped: they are all padding, and
    attention cost grows with the square of the width, so short datasets train several times faster. The width
    is fixed per dataset, so the jitted steps still compile once per job.
    """
    rows = max(1, math.ceil(len(examples) / multiple)) * multiple
    tokens = np.full((rows, max_len + 1), PAD, np.int32)
    mask = np.zeros((rows, max_len), np.float32)
    for i, (prompt, answer) in enumerate(examples):
        tokens[i], mask[i] = encode_example(tokenizer, prompt, answer, max_len)
    longest = int((tokens != PAD).sum(axis=1).max()) - 1  # input positions the longest sequence needs
    width = min(max_len, -(-longest // 8) * 8)
    return tokens[:, : width + 1], mask[:, :width]


def _init_params(key: jax.Array, d_model: int, n_layers: int, max_len: int, vocab_size: int) -> Params:
    """GPT-2 style init (weights normal, biases 0, LayerNorm gains 1); residual output projections (out, proj)
    scaled down so deeper stacks start stable."""
    keys = iter(jax.random.split(key, 2 + 4 * n_layers))
    normal = lambda shape, std=0.02: std * jax.random.normal(next(keys), shape, jnp.float32)  # noqa: E731
    resid_std = 0.02 / math.sqrt(2 * n_layers)
    d = d_model
    linear = (("qkv", d, 3 * d, 0.02), ("out", d, d, resid_std), ("fc", d, 4 * d, 0.02), ("proj", 4 * d, d, resid_std))
    params: Params = {"tok_emb": normal((vocab_size, d)), "pos_emb": normal((max_len, d))}
    for i in range(n_layers):
        for name, n_in, n_out, std in linear:
            params |= {f"b{i}.{name}_w": normal((n_in, n_out), std), f"b{i}.{name}_b": jnp.zeros(n_out)}
        for norm in ("ln1", "ln2"):
            params |= {f"b{i}.{norm}_g": jnp.ones(d), f"b{i}.{norm}_b": jnp.zeros(d)}
    return params | {"ln_f_g": jnp.ones(d), "ln_f_b": jnp.zeros(d)}


def _n_layers(params: Params) -> int:
    return sum(1 for name in params if name.endswith(".qkv_w"))


def _layer_norm(x: jax.Array, g: jax.Array, b: jax.Array) -> jax.Array:
    return jax.nn.standardize(x, epsilon=1e-5, algorithm="stable") * g + b


def _transformer(params: Params, tokens: jax.Array, n_heads: int, cache: jax.Array | None = None,
                 pos: jax.Array | int = 0) -> tuple[jax.Array, jax.Array | None]:
    """Logits [B, T, V] for `tokens` at positions pos, pos + 1, ..., and the updated KV cache.

    With a cache [layers, 2 (keys, values), B, max_len, heads, head_dim] (decoding), the tokens' keys and values
    are stored in it at their positions and attention also sees the positions stored before them.
    """
    b, t = tokens.shape
    d = params["tok_emb"].shape[1]
    x = params["tok_emb"][tokens] + jax.lax.dynamic_slice_in_dim(params["pos_emb"], pos, t)
    for i in range(_n_layers(params)):
        h = _layer_norm(x, params[f"b{i}.ln1_g"], params[f"b{i}.ln1_b"])
        qkv = (h @ params[f"b{i}.qkv_w"] + params[f"b{i}.qkv_b"]).reshape(b, t, 3 * n_heads, d // n_heads)
        q, k, v = jnp.split(qkv, 3, axis=2)
        if cache is not None:
            cache = jax.lax.dynamic_update_slice(cache, jnp.stack([k, v])[None], (i, 0, 0, pos, 0, 0))
            k, v = cache[i]
        visible = pos + jnp.arange(t)[:, None] >= jnp.arange(k.shape[1])  # causal: no attention to later tokens
        out = jax.nn.dot_product_attention(q, k, v, mask=visible[None, None]).reshape(b, t, d)
        x = x + out @ params[f"b{i}.out_w"] + params[f"b{i}.out_b"]
        h = _layer_norm(x, params[f"b{i}.ln2_g"], params[f"b{i}.ln2_b"])
        h = jax.nn.gelu(h @ params[f"b{i}.fc_w"] + params[f"b{i}.fc_b"])
        x = x + (h @ params[f"b{i}.proj_w"] + params[f"b{i}.proj_b"])
    return _layer_norm(x, params["ln_f_g"], params["ln_f_b"]) @ params["tok_emb"].T, cache


def forward(params: Params, tokens: jax.Array, n_heads: int) -> jax.Array:
    """Logits [B, T, V] of a pre-LayerNorm causal transformer with tied input/output embeddings."""
    return _transformer(params, tokens, n_heads)[0]


def _batch_stats(params: Params, tokens: jax.Array, mask: jax.Array, n_heads: int) -> jax.Array:
    """[sum of masked cross-entropy, number of correct argmax predictions, number of predicted tokens]."""
    logits = forward(params, tokens[:, :-1], n_heads)
    targets = tokens[:, 1:]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    return jnp.stack([(nll * mask).sum(), (correct * mask).sum(), mask.sum()])


# lr is 1.0 here and the scheduled rate multiplies the updates in _train_step: identical to adamw with a
# schedule, but the optimizer is built once, so the jitted step compiles once per model shape for all jobs.
# Only weight matrices decay; LayerNorm gains, biases and the embeddings stay undecayed.
_OPTIMIZER = optax.chain(
    optax.clip_by_global_norm(_CLIP_NORM),
    optax.adamw(learning_rate=1.0, weight_decay=_WEIGHT_DECAY,
                mask=lambda params: {name: name.endswith("_w") for name in params}),
)


@partial(jax.jit, static_argnames=("n_heads",))
def _train_step(params: Params, opt_state: Any, tokens: jax.Array, mask: jax.Array, lr: jax.Array, n_heads: int):
    def loss(p: Params) -> tuple[jax.Array, jax.Array]:
        stats = _batch_stats(p, tokens, mask, n_heads)
        return stats[0] / jnp.maximum(stats[2], 1.0), stats

    grads, stats = jax.grad(loss, has_aux=True)(params)
    updates, opt_state = _OPTIMIZER.update(grads, opt_state, params)
    params = optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates))
    return params, opt_state, stats


_eval_step = jax.jit(_batch_stats, static_argnames=("n_heads",))


def _evaluate(params: Params, tokens: np.ndarray, mask: np.ndarray, batch_size: int, n_heads: int) -> np.ndarray:
    """Summed [loss, correct, count] over a whole encoded set, in batches of one fixed shape (one compile)."""
    total = np.zeros(3)
    for i in range(0, len(tokens), batch_size):
        total += np.asarray(_eval_step(params, tokens[i:i + batch_size], mask[i:i + batch_size], n_heads=n_heads))
    return total


def _metrics(prefix: str, sums: np.ndarray, predictions: float) -> dict[str, float]:
    """A metric point's values from summed [loss, correct, count]; `predictions` is its num_predictions."""
    return {
        f"/{prefix}_total_loss": float(sums[0] / max(sums[2], 1.0)),
        f"/{prefix}_fraction_of_correct_next_step_preds": float(sums[1] / max(sums[2], 1.0)),
        f"/{prefix}_num_predictions": float(predictions),
    }


def train(
    train_examples: list[Example],
    validation_examples: list[Example] | None,
    settings: TrainingSettings,
    *,
    epochs: int = 1,
    learning_rate_multiplier: float = 1.0,
    on_metrics: Callable[[MetricPoint], None] = lambda p: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainedModel:
    """Train a new model from scratch on (prompt, answer) pairs for `settings.steps * epochs` steps with AdamW
    (warmup, cosine decay, peak `settings.learning_rate * learning_rate_multiplier`).

    Only answer tokens and the EOS after them are predicted; the prompt is context. The same examples,
    settings and seed give identical metrics (seeded init and batch order, no dropout). `should_stop` is checked
    before every step (TrainingCancelled when it returns true); `on_metrics` gets each metric point, in step order.

    A metric point is reported every `settings.eval_every` steps and at the final step, with:
        /train_total_loss: mean cross-entropy (nats) per predicted token, over all predicted tokens of all
            batches since the previous point (token-weighted, measured before each step's update).
        /train_fraction_of_correct_next_step_preds: fraction of those tokens whose argmax was right.
        /train_num_predictions: predicted tokens in the batch of the point's step alone.
        /eval_total_loss, /eval_fraction_of_correct_next_step_preds: the same over the whole validation
            set with the parameters after the point's step (only when validation examples are given).
        /eval_num_predictions: predicted tokens in the whole validation set.

    ValueError for no training examples, epochs < 1, a non-positive multiplier, or heads not dividing d_model.
    """
    if not train_examples:
        raise ValueError("no training examples")
    if epochs < 1 or learning_rate_multiplier <= 0:
        raise ValueError("epochs must be >= 1 and learning_rate_multiplier > 0")
    if settings.d_model % settings.n_heads:
        raise ValueError(f"n_heads {settings.n_heads} does not divide d_model {settings.d_model}")
    n_heads, batch_size, total_steps = settings.n_heads, settings.batch_size, settings.steps * epochs
    tokenizer = Tokenizer.build((text for pair in train_examples for text in pair), settings.vocabulary_size)
    tokens, mask = _encode_all(tokenizer, train_examples, settings.max_len)
    val = (_encode_all(tokenizer, validation_examples, settings.max_len, batch_size) if validation_examples
           else None)

    peak = settings.learning_rate * learning_rate_multiplier
    warmup = max(1, min(50, total_steps // 10))
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(total_steps, warmup + 1), peak * 0.1)
    # Step s uses the schedule's value at count s - 1, as optax.adamw(schedule) would.
    rates = np.asarray(schedule(np.arange(total_steps)), np.float32)
    untrained = base_model(settings, tokenizer)
    params = untrained.params
    opt_state = _OPTIMIZER.init(params)
    # Example indices of step s: batch s - 1 of successive random permutations of the dataset.
    rng = np.random.Generator(np.random.PCG64(settings.seed))
    order = np.concatenate([rng.permutation(len(train_examples))
                            for _ in range(math.ceil(total_steps * batch_size / len(train_examples)))])

    window = np.zeros(3)  # loss sum, correct, count since the last point; float64 so sums stay exact-ish
    for step in range(1, total_steps + 1):
        if should_stop():
            raise TrainingCancelled(step - 1)
        idx = order[(step - 1) * batch_size: step * batch_size]
        params, opt_state, stats = _train_step(params, opt_state, tokens[idx], mask[idx], rates[step - 1],
                                               n_heads=n_heads)
        stats = np.asarray(stats, np.float64)
        window += stats
        if step % settings.eval_every == 0 or step == total_steps:
            metrics = _metrics("train", window, stats[2])
            if val is not None:
                ev = _evaluate(params, *val, batch_size, n_heads)
                metrics |= _metrics("eval", ev, ev[2])
            on_metrics(MetricPoint(step, metrics))
            window[:] = 0.0
        if settings.step_delay_seconds:
            time.sleep(settings.step_delay_seconds)
    return TrainedModel(params, untrained.config, tokenizer)


def base_model(settings: TrainingSettings, tokenizer: Tokenizer | None = None) -> TrainedModel:
    """The untrained network of `settings`, initialised with its seed, where each training run starts.

    With no `tokenizer` (byte-level: no vocabulary yet) it is the emulator's base model: what a tuning run would
    start from before it learned anything, so it answers deterministically, in noise; comparing a tuned model with
    it measures what training taught.
    """
    tokenizer = tokenizer or Tokenizer()
    params = _init_params(jax.random.key(settings.seed), settings.d_model, settings.n_layers, settings.max_len,
                          tokenizer.vocab_size)
    return TrainedModel(params, {"format": _FORMAT, "d_model": settings.d_model, "n_layers": settings.n_layers,
                                 "n_heads": settings.n_heads, "max_len": settings.max_len,
                                 "vocab_size": tokenizer.vocab_size}, tokenizer)


@partial(jax.jit, static_argnames=("n_heads",))
def _generate(params: Params, buf: jax.Array, prompt_len: jax.Array, max_new: jax.Array,
              temperature: jax.Array, key: jax.Array, n_used: jax.Array, unprintable: jax.Array, n_heads: int):
    """Feed the prompt one token at a time (KV cache), then greedy-decode or sample into `buf` [max_len + 1].

    Only ids below `n_used` (the tokenizer's; the rest pad the embedding table) are emitted, never PAD, BOS or SEP,
    nor those marked in `unprintable`, and never EOS first: no training answer is empty (the dataset rules forbid
    it), so neither is a generated one.
    """
    max_len = params["pos_emb"].shape[0]
    d = params["tok_emb"].shape[1]
    cache = jnp.zeros((_n_layers(params), 2, 1, max_len, n_heads, d // n_heads), jnp.float32)
    ids = jnp.arange(params["tok_emb"].shape[0])
    banned = ((ids >= PAD) & (ids < N_BASE) & (ids != EOS)) | (ids >= n_used) | unprintable

    def cond(state):
        pos, _, _, produced, done = state
        return (pos < max_len) & (produced < max_new) & ~done

    def body(state):
        pos, buf, cache, produced, done = state
        logits, cache = _transformer(params, buf[pos][None, None], n_heads, cache, pos)
        logits = logits[0, 0]
        logits = jnp.where(banned | ((ids == EOS) & (produced == 0)), -jnp.inf, logits)
        sampled = jax.random.categorical(jax.random.fold_in(key, pos), logits / jnp.maximum(temperature, 1e-6))
        token = jnp.where(temperature > 0, sampled, jnp.argmax(logits)).astype(jnp.int32)
        generating = pos + 1 >= prompt_len  # still inside the prompt: the next token is given, not chosen
        buf = jnp.where(generating, buf.at[pos + 1].set(token), buf)
        produced = produced + generating.astype(jnp.int32)
        done = generating & (token == EOS)
        return pos + 1, buf, cache, produced, done

    state = (jnp.int32(0), buf, cache, jnp.int32(0), jnp.bool_(False))
    _, buf, _, produced, done = jax.lax.while_loop(cond, body, state)
    return buf, produced, done


@dataclass(eq=False)
class TrainedModel:
    """Trained parameters, their config and tokenizer; saved as params.npz, config.json, tokenizer.json."""

    params: Params
    config: dict[str, Any]
    tokenizer: Tokenizer

    def save(self, directory: Path) -> None:
        """Write params.npz, config.json and tokenizer.json into `directory` (created if missing)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / _PARAMS_FILE, **{k: np.asarray(v) for k, v in self.params.items()})
        (directory / _CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True))
        (directory / _TOKENIZER_FILE).write_text(json.dumps({"pieces": self.tokenizer.vocabulary},
                                                            ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        """Read a model written by `save` (or a byte-level one saved before models had a tokenizer); ValueError
        when the config is not of this model format."""
        directory = Path(directory)
        config = json.loads((directory / _CONFIG_FILE).read_text())
        if config.get("format") == _FORMAT:
            tokenizer = Tokenizer(json.loads((directory / _TOKENIZER_FILE).read_text(encoding="utf-8"))["pieces"])
        elif config.get("format") == _BYTE_FORMAT:
            tokenizer = Tokenizer()
        else:
            raise ValueError(f"unknown model format {config.get('format')!r} in {directory}")
        with np.load(directory / _PARAMS_FILE) as data:
            params = {k: jnp.asarray(data[k]) for k in data.files}
        return cls(params, config, tokenizer)

    def _unprintable(self) -> jax.Array:
        """Ids this model never emits as text: for a byte-level model (the base model, no vocabulary), the control
        bytes and bytes 127-255, whose random picks would decode to control characters and U+FFFD; its noise is
        then readable ASCII. A model with a vocabulary emits every id: its byte fallback spells unseen words."""
        mask = np.zeros(self.params["tok_emb"].shape[0], bool)
        if not self.tokenizer.vocabulary:
            mask[:32] = True
            mask[127:256] = True
        return jnp.asarray(mask)

    def count_tokens(self, text: str) -> int:
        """The model's token count of `text` (special tokens not included)."""
        return self.tokenizer.count(text)

    def generate(self, prompt: str, *, max_output_tokens: int = 128, temperature: float = 0.0,
                 seed: int = 0) -> Generation:
        """Answer a prompt with at most `max_output_tokens` (>= 1, EOS included): greedy when temperature is 0, else
        sampled with `seed`.

        A prompt longer than the context loses tokens from the left, keeping room for
        min(max_output_tokens, max_len // 2) output tokens; generation also ends when the context is full.
        prompt_token_count is count_tokens(prompt) + 2 (BOS, SEP; the untruncated prompt), output_token_count
        counts generated tokens including a final EOS, finish_reason is "STOP" when EOS was generated and
        "MAX_TOKENS" otherwise.
        """
        if max_output_tokens < 1:
            raise ValueError("max_output_tokens must be >= 1")
        max_len = self.config["max_len"]
        room = min(max_output_tokens, max_len // 2)
        prompt_ids = self.tokenizer.encode(prompt)
        kept = prompt_ids[-(max_len - 1 - room):]  # max_len >= 32, so at least 15 tokens
        seq = [BOS, *kept, SEP]
        buf = np.full(max_len + 1, PAD, np.int32)
        buf[: len(seq)] = seq
        out, produced, done = _generate(self.params, jnp.asarray(buf), jnp.int32(len(seq)),
                                        jnp.int32(max_output_tokens), jnp.float32(temperature),
                                        jax.random.key(seed), jnp.int32(N_BASE + len(self.tokenizer.vocabulary)),
                                        self._unprintable(), n_heads=self.config["n_heads"])
        produced, done = int(produced), bool(done)
        answer = np.asarray(out)[len(seq): len(seq) + produced - int(done)]
        return Generation(
            text=self.tokenizer.decode(answer.tolist()),
            prompt_token_count=len(prompt_ids) + 2,
            output_token_count=produced,
            finish_reason="STOP" if done else "MAX_TOKENS",
        )
