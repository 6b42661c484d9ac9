"""Emulator settings: environment variables with the prefix TT_EMULATOR_, overridable by arguments."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """Size and length of the small model the emulator really trains (env prefix TT_EMULATOR_TRAINING_)."""

    model_config = SettingsConfigDict(env_prefix="TT_EMULATOR_TRAINING_")

    d_model: int = Field(64, ge=8, description="Width of the transformer.")
    n_layers: int = Field(2, ge=1, description="Transformer blocks.")
    n_heads: int = Field(4, ge=1, description="Attention heads.")
    max_len: int = Field(192, ge=32, description="Longest token sequence (prompt + answer) trained on.")
    vocabulary_size: int = Field(8192, ge=0, description="Most word pieces the tokenizer learns from the "
                                                         "training data (besides the 256 bytes); 0: byte-level.")
    batch_size: int = Field(32, ge=1, description="Examples per step.")
    steps: int = Field(300, ge=1, description="Training steps per epoch count of 1; see epochs.")
    learning_rate: float = Field(6e-3, gt=0, description="Adam learning rate (times learningRateMultiplier).")
    eval_every: int = Field(25, ge=1, description="Steps between metric points.")
    seed: int = Field(0, description="PRNG seed: same seed, data and settings give the same metrics.")
    step_delay_seconds: float = Field(0.0, ge=0, description="Sleep after each step (slow jobs for tests).")


class EmulatorSettings(BaseSettings):
    """Where and how the emulator serves (env prefix TT_EMULATOR_)."""

    model_config = SettingsConfigDict(env_prefix="TT_EMULATOR_", cli_prog_name="python -m emulator",
                                      cli_kebab_case=True)

    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    data_dir: Path = Field(Path(".emulator-data"), description="SQLite state, objects and trained models.")
    max_json_bytes: int = Field(10 * 1024 * 1024, description="Largest JSON request body accepted.")
    max_upload_bytes: int = Field(1024**3 + 1024 * 1024, description="Largest object upload accepted (1 GiB + slack).")
    training: TrainingSettings = Field(default_factory=TrainingSettings)
