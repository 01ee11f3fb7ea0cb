"""The lecture's network with one hidden unit, every number of the blackboard."""

import numpy as np
import pytest

import autodiff as ad
from autodiff import nn

SEED_VALUES = {"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]}


def lecture_graph():
    model = nn.MLP([1, 1, 1], ["relu", "relu"], values=SEED_VALUES)
    x, y = ad.Tensor([[1.0]], name="x"), ad.Tensor([[5.0]], name="y")
    with ad.trace() as tr:
        J = nn.half_squared_error(model(x), y)
    J.backward()
    return model, tr.graph, J


def test_forward_values():
    _, graph, J = lecture_graph()
    expected = {"t1": 2, "z1": 2, "a1": 2, "t2": 6, "z2": 7, "a2": 7, "J": 2}
    for name, value in expected.items():
        assert graph.node(name).value.item() == value, name
    assert J.item() == 2


def test_backward_derivatives():
    model, graph, _ = lecture_graph()
    expected = {"a2": 2, "z2": 2, "t2": 2, "a1": 6, "z1": 6, "t1": 6, "J": 1}
    for name, d in expected.items():
        assert graph.node(name).grad.item() == d, name
    grads = {name: p.grad.item() for name, p in model.parameters().items()}
    assert grads == {"w1": 6, "b1": 6, "w2": 4, "b2": 2}


def test_numerical_bump_of_w1():
    """w1 = 2.001 gives a2 = 7.003 and J = 2.003^2 / 2 = 2.0060045, about 2 + 6 * 0.001."""
    model = nn.MLP([1, 1, 1], ["relu", "relu"], values={**SEED_VALUES, "w1": [[2.001]]})
    x, y = ad.Tensor([[1.0]]), ad.Tensor([[5.0]])
    a2 = model(x)
    J = nn.half_squared_error(a2, y)
    assert a2.item() == pytest.approx(7.003, abs=1e-12)
    assert J.item() == pytest.approx(2.0060045, abs=1e-12)
    assert (J.item() - 2) / 0.001 == pytest.approx(6, abs=0.01)


def test_numerical_grad_matches_backprop():
    model, _, _ = lecture_graph()
    params = model.parameters()
    names = list(params)
    x, y = ad.Tensor([[1.0]]), ad.Tensor([[5.0]])

    def J(*ps):
        m = nn.MLP([1, 1, 1], ["relu", "relu"], values=dict(zip(names, [p.data for p in ps], strict=True)))
        return nn.half_squared_error(m(x), y)

    numeric = ad.numerical_grad(J, [params[n] for n in names])
    for name, g in zip(names, numeric, strict=True):
        np.testing.assert_allclose(g, params[name].grad, rtol=1e-8)


def test_graph_renderings():
    _, graph, _ = lecture_graph()
    table = graph.table()
    assert "t1" in table and "dJ/d(node)" in table
    dot = graph.dot()
    assert dot.startswith("digraph") and "dJ/dw1 6" in dot
    doc = graph.to_dict()
    by_name = {n["name"]: n for n in doc["nodes"]}
    assert by_name["z2"]["value"] == [[7.0]] and by_name["w1"]["grad"] == [[6.0]]
    assert doc["output"] == "J"


def test_graph_from_output_matches_trace():
    model = nn.MLP([1, 1, 1], ["relu", "relu"], values=SEED_VALUES)
    J = nn.half_squared_error(model(ad.Tensor([[1.0]])), ad.Tensor([[5.0]]))
    graph = ad.Graph.from_output(J)
    J.backward()
    assert [graph.node(n).grad.item() for n in ("t1", "z1", "a1", "t2", "z2", "a2")] == [6, 6, 6, 2, 2, 2]


def test_trace_of_an_output_and_of_a_function():
    model = nn.MLP([1, 1, 1], ["relu", "relu"], values=SEED_VALUES)
    x, y = ad.Tensor([[1.0]]), ad.Tensor([[5.0]])
    J = nn.half_squared_error(model(x), y)
    graph = ad.trace(J)
    J.backward()
    assert graph.node("z2").value.item() == 7 and graph.node("z1").grad.item() == 6

    model = nn.MLP([1, 1, 1], ["relu", "relu"], values=SEED_VALUES)
    graph = ad.trace(lambda inp: nn.half_squared_error(model(inp), y), x)
    assert [graph.node(n).grad.item() for n in ("t1", "a1", "t2", "a2", "J")] == [6, 6, 2, 2, 1]


def test_a_graph_comes_back_from_its_dict_and_renders_the_same():
    """What the REST API sends (to_dict, JSON, non-finite as null) is enough to print the graph."""
    import json

    import numpy as np

    import autodiff as ad
    from autodiff import nn

    model = nn.MLP([1, 1, 1], ["relu", "relu"],
                   values={"w1": [[2.0]], "b1": [0.0], "w2": [[3.0]], "b2": [1.0]})
    with ad.trace() as tr:
        J = nn.half_squared_error(model(ad.Tensor([[1.0]], name="x")), ad.Tensor([[5.0]], name="y"))
    J.backward()
    doc = json.loads(json.dumps(tr.graph.to_dict()))
    back = ad.Graph.from_dict(doc)
    assert back.table() == tr.graph.table() and back.dot() == tr.graph.dot()
    assert back.to_dict() == tr.graph.to_dict()
    doc["nodes"][0]["value"] = [[None]]  # a non-finite entry, as JSON carries it
    assert np.isnan(ad.Graph.from_dict(doc).nodes[0].value).all()
