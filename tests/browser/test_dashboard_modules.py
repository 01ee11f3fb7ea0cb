"""The dashboard's pure JavaScript helpers, imported as ES modules in the browser and checked on
hand-made inputs: bucketed history to plot columns, API error bodies to field paths, JSON text to
line numbers, the graph layout, and the event-stream parser."""

from __future__ import annotations

import pytest


@pytest.fixture
def js(page):
    page.goto("/")
    page.wait_for_selector("main#app > *")

    def run(body: str, arg=None):
        return page.evaluate(f"async (arg) => {{ {body} }}", arg)

    return run


def test_bucketed_points_become_a_line_with_a_band(js):
    got = js("""
        const { columns } = await import("/ui/js/series.js");
        return columns(arg, ["loss"]);
    """, [
        {"step": 0, "step_end": 9, "count": 10, "loss": {"min": 1.0, "max": 3.0, "mean": 2.0, "last": 1.5}},
        {"step": 10, "step_end": 19, "count": 10,
         "loss": {"min": None, "max": None, "mean": None, "last": None}},
    ])
    assert got["xs"] == [4.5, 14.5] and got["picks"] == [0, 10] and got["bucketed"] is True
    assert got["loss"]["mean"] == [2.0, None]
    assert got["loss"]["lo"] == [1.0, None] and got["loss"]["hi"] == [3.0, None]
    assert (got["first"], got["last"]) == (0, 19)

    raw = js("""
        const { columns } = await import("/ui/js/series.js");
        return columns(arg, ["loss"]);
    """, [{"step": 3, "loss": 0.5}, {"step": 4, "loss": None}])
    assert raw["xs"] == [3, 4] and raw["bucketed"] is False
    assert raw["loss"]["lo"] == raw["loss"]["hi"] == raw["loss"]["mean"] == [0.5, None]


def test_api_error_bodies_name_their_fields(js):
    got = js("""
        const { describeError } = await import("/ui/js/api.js");
        return arg.map((body) => describeError(body, 422));
    """, [
        {"detail": [{"loc": ["body", "model", "layers", 0, "units"], "msg": "too big", "type": "x"},
                    {"loc": ["query", "start"], "msg": "negative", "type": "x"}]},
        {"detail": "no job 7"},
        None,
    ])
    assert got[0]["fields"] == [{"path": ["model", "layers", 0, "units"], "message": "too big"},
                                {"path": ["start"], "message": "negative"}]
    assert got[0]["message"] == "model.layers.0.units: too big; start: negative"
    assert got[1] == {"message": "no job 7", "fields": []}
    assert got[2] == {"message": "HTTP 422", "fields": []}


def test_json_paths_are_found_on_their_lines(js):
    text = ('{\n  "model": {\n    "layers": [\n      {"units": 1},\n      {"units": 2}\n    ]\n  },\n'
            '  "steps": 3\n}')
    got = js("""
        const { locate, formatJson } = await import("/ui/js/spec_editor.js");
        const lines = locate(arg);
        const at = (path) => lines.get(JSON.stringify(path));
        return { units1: at(["model", "layers", 1, "units"]), steps: at(["steps"]),
                 layers: at(["model", "layers"]),
                 formatted: formatJson({ a: [[1], [2]], b: { c: "x".repeat(80) } }) };
    """, text)
    assert (got["units1"], got["steps"], got["layers"]) == (4, 7, 2)  # 0-based lines
    assert got["formatted"] == '{\n  "a": [[1], [2]],\n  "b": {\n    "c": "' + "x" * 80 + '"\n  }\n}'


def test_graph_layout_runs_the_chain_left_to_right(js, api):
    # the lecture's node order, as GET /jobs/{id}/graph lists them
    names = ["x", "w1", "t1", "b1", "z1", "a1", "w2", "t2", "b2", "z2", "a2", "y", "J"]
    inputs = {"t1": ["x", "w1"], "z1": ["t1", "b1"], "a1": ["z1"], "t2": ["a1", "w2"], "z2": ["t2", "b2"],
              "a2": ["z2"], "J": ["a2", "y"]}
    nodes = [{"index": i, "name": n, "op": "op" if n in inputs else "input",
              "inputs": [names.index(a) for a in inputs.get(n, [])]} for i, n in enumerate(names)]
    got = js("""
        const { layout } = await import("/ui/js/graph.js");
        const { col, row } = layout(arg);
        return Object.fromEntries(arg.map((n) => [n.name, [col.get(n.index), row.get(n.index)]]));
    """, nodes)
    spine = ["x", "t1", "z1", "a1", "t2", "z2", "a2", "J"]
    assert [got[n] for n in spine] == [[c, 0] for c in range(8)]
    # side inputs sit one column before their op, below the chain
    assert got["w1"] == [0, 1] and got["b1"] == [1, 1] and got["w2"] == [3, 1] and got["b2"] == [4, 1]
    assert got["y"] == [6, 1]


def test_event_stream_parser_survives_chunks_split_anywhere(js):
    stream = ("retry: 1000\n\nevent: status\ndata: {\"status\": \"running\"}\n\n: keep-alive\n\n"
              "id: 41\r\nevent: step\r\ndata: {\"step\": 41,\r\ndata: \"loss\": 0.5}\r\n\r\n")
    got = js("""
        const { makeParser } = await import("/ui/js/events.js");
        const results = [];
        for (const size of [1, 2, 3, 7, 1000]) {
            const events = [];
            const feed = makeParser((e) => events.push(e));
            for (let i = 0; i < arg.length; i += size) feed(arg.slice(i, i + size));
            results.push(events);
        }
        return results;
    """, stream)
    expected = [{"event": "status", "data": {"status": "running"}, "id": None},
                {"event": "step", "data": {"step": 41, "loss": 0.5}, "id": "41"}]
    for events in got:
        assert events == expected
