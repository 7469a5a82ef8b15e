"""The stack group's half of tests/unit/test_xdist_groups.py: a test using the shared local stack
runs in the "stack" xdist group, so it shares a process with the stack and no unit test's
`mock_aws`."""

from __future__ import annotations

from tests.unit.test_xdist_groups import assert_in_group


def test_a_stack_test_runs_in_the_stack_group(pipeline, request):
    assert_in_group(request, "stack")
