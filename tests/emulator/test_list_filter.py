"""The one list-filter grammar and the one page-token format, tested as pure functions (no server, no job)."""

from __future__ import annotations

import pytest

from emulator.errors import InvalidArgument
from emulator.experiments import Node
from emulator.job_filter import parse_job_filter
from emulator.metadata_api import ARTIFACT_FILTER_FIELDS, CONTEXT_FILTER_FIELDS, parse_metadata_filter
from emulator.paging import page_of

RUNNING = {"labels": {"pulumi-tuning-key": "k1"}, "state": "JOB_STATE_RUNNING", "baseModel": "translation-llm-002"}
FAILED = {"labels": {}, "state": "JOB_STATE_FAILED", "baseModel": "other"}


@pytest.mark.parametrize("text, matches", [
    ("", [True, True]),
    ('labels.pulumi-tuning-key="k1"', [True, False]),
    ("labels.pulumi-tuning-key:*", [True, False]),
    ("state=SUCCEEDED OR state=JOB_STATE_FAILED", [False, True]),
    ('state!=JOB_STATE_FAILED and base_model="translation-llm-002"', [True, False]),
    ('(baseModel="other" OR labels.x:*) AND state=4', [False, False]),
])
def test_job_filters(text, matches):
    predicate = parse_job_filter(text)
    assert [predicate(RUNNING), predicate(FAILED)] == matches


@pytest.mark.parametrize("text, message", [
    ('display_name="x"', "Unsupported filter term 'display_name=\"x\"': unknown field 'display_name'"),
    ("labels.k:v", "Unsupported filter term 'labels.k:v': operator ':' is not supported on 'labels.k'"),
    ("state=NOPE", "Unknown job state 'NOPE' in filter."),
    ('state=FAILED AND', "Unsupported filter 'state=FAILED AND': expected word at token 5"),
    (r'labels.k="\q"', r"""Unsupported filter 'labels.k="\\q"': bad escape in "\q" (Invalid \escape)"""),
])
def test_job_filters_reject_what_they_do_not_support(text, message):
    with pytest.raises(InvalidArgument) as raised:
        parse_job_filter(text)
    assert raised.value.message.startswith(message)


def test_metadata_filters_on_body_fields_parent_contexts_and_in_context():
    run = Node({"schemaTitle": "system.ExperimentRun", "parentContexts": ["exp"]})
    artifact = Node({"schemaTitle": "google.VertexTensorboardRun", "uri": "u"}, contexts=("run",))
    assert parse_metadata_filter('parent_contexts:"exp" AND schema_title!="x"', CONTEXT_FILTER_FIELDS)(run)
    assert parse_metadata_filter('in_context("run") AND uri="u"', ARTIFACT_FILTER_FIELDS)(artifact)
    with pytest.raises(InvalidArgument, match="unknown field 'uri'"):
        parse_metadata_filter('uri="u"', CONTEXT_FILTER_FIELDS)
    with pytest.raises(InvalidArgument, match=r"^Unsupported filter 'create_time>\"t\"': "):
        parse_metadata_filter('create_time>"t"', CONTEXT_FILTER_FIELDS)


def test_pages_follow_the_last_item_served_and_expire_with_it():
    items = ["a", "b", "c"]
    first, after = page_of(items, None, 2, key=str)
    second, last = page_of(["new", *items], after, 2, key=str)  # an item added in front shifts nothing
    assert (first, after, second, last) == (["a", "b"], "b", ["c"], None)
    with pytest.raises(InvalidArgument, match="has expired"):
        page_of(["a", "c"], "b", 2, key=str)
