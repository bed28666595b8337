"""The metrics registry: histogram batches equal one-by-one observations in the exposition."""

from __future__ import annotations

import pytest

from streaming.metrics import Registry


def test_observe_many_equals_observing_one_by_one() -> None:
    values = [0.00005, 0.0003, 0.0003, 0.02, 7.0, 42.0]
    one, many = Registry(), Registry()
    a = one.histogram("wait_seconds", "queue wait", labelnames=("model",))
    b = many.histogram("wait_seconds", "queue wait", labelnames=("model",))
    for v in values:
        a.observe(v, model="m")
    b.observe_many(values, model="m")
    b.observe_many([], model="m")
    assert one.render() == many.render()
    text = many.render()
    assert 'wait_seconds_bucket{model="m",le="0.0001"} 1' in text
    assert 'wait_seconds_bucket{model="m",le="+Inf"} 6' in text
    assert b.count(model="m") == 6
    with pytest.raises(ValueError, match="takes labels"):
        b.observe_many([1.0])
