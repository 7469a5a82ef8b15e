"""`make test`'s two pytest-xdist processes really are the two groups tests/conftest.py assigns: the
tests that run moto in the worker's own process in one, the rest in the other. pytest 9.2 with
pytest-xdist 3.8.0 silently dropped the grouping (every test went to whichever worker was free, both
workers started a local stack and unit tests' `mock_aws` ran beside it); these two tests, one per
group, see their own node id as xdist's scheduler sees it. (The stack group's twin is in
tests/integration/test_xdist_stack_group.py.)"""

from __future__ import annotations

import pytest


def assert_in_group(request: pytest.FixtureRequest, group: str) -> None:
    marker = request.node.get_closest_marker("xdist_group")
    assert marker is not None and marker.args == (group,)
    if hasattr(request.config, "workerinput"):  # under xdist, as `make test` runs: the scheduler's id
        assert request.node.nodeid.endswith(f"@{group}"), request.node.nodeid


def test_a_unit_test_runs_in_the_offline_group(request):
    assert_in_group(request, "offline")
