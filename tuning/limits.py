"""What this project supports and reads of translation-llm-002 tuning: ours, not wire shapes (those are the official
`google.cloud.aiplatform_v1` types). Cheap to import: the provider's check and the dataset validator use it."""

from typing import Literal, get_args

# The supported values as types (the stack settings' fields) and as tuples (checks and messages).
BaseModelName = Literal["translation-llm-002"]
Region = Literal["us-central1"]
SUPPORTED_BASE_MODELS: tuple[str, ...] = get_args(BaseModelName)
SUPPORTED_REGIONS: tuple[str, ...] = get_args(Region)
# translation-llm-002 accepts adapter size 4 only.
SUPPORTED_ADAPTER_SIZES = (4,)

# The six metrics a supervised tuning job reports, as its experiment names them.
TRAIN_METRICS = ("/train_total_loss", "/train_fraction_of_correct_next_step_preds", "/train_num_predictions")
EVAL_METRICS = ("/eval_total_loss", "/eval_fraction_of_correct_next_step_preds", "/eval_num_predictions")
ALL_METRICS = TRAIN_METRICS + EVAL_METRICS
