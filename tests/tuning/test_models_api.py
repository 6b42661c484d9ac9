"""The order of undeployModel calls that empties an endpoint (Vertex AI refuses to undeploy a model with traffic)."""

from __future__ import annotations

from tuning.models_api import Undeploy, undeploy_plan


def test_the_only_model_is_undeployed_without_a_traffic_split():
    assert undeploy_plan(["a"], {"a": 100}) == [Undeploy("a")]


def test_models_without_traffic_are_undeployed_first_without_a_traffic_split():
    assert undeploy_plan(["a", "b", "c"], {"b": 100})[:2] == [Undeploy("a"), Undeploy("c")]


def test_a_model_with_traffic_hands_it_to_the_models_that_remain():
    plan = undeploy_plan(["a", "b", "c"], {"a": 60, "b": 40})

    assert plan == [Undeploy("c"), Undeploy("a", {"b": 100}), Undeploy("b")]


def test_every_split_sent_adds_up_to_100_over_the_remaining_models():
    plan = undeploy_plan(["a", "b", "c", "d"], {"a": 25, "b": 25, "c": 25, "d": 25})

    remaining = {"a", "b", "c", "d"}
    for step in plan:
        remaining.discard(step.deployed_model_id)
        if step.traffic_split is not None:
            assert set(step.traffic_split) == remaining and sum(step.traffic_split.values()) == 100
    assert [step.deployed_model_id for step in plan] == ["a", "b", "c", "d"]
