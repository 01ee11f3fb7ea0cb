"""A plug-in distribution installed into a temporary directory is found through the
``gradbook.optimizers`` entry-point group and trains by name, in a fresh process, offline."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = Path(__file__).parent / "plugin" / "gradbook_signsgd.py"

SCRIPT = textwrap.dedent('''
    import json
    import numpy as np
    import autodiff as ad
    import optim

    described = {d["name"]: d for d in optim.available()}
    w = ad.Tensor(np.array([3.0, -2.0]), requires_grad=True, name="w")
    opt = optim.create("signsgd", {"w": w}, lr=0.5, momentum=0.5,
                       schedule={"name": "step", "step_size": 2, "gamma": 0.5})
    for _ in range(4):
        opt.zero_grad()
        (ad.sum(w * w) * 0.5).backward()
        opt.step()
    try:
        optim.create("broken", [w])
        broken = None
    except optim.UnknownOptimizerError as e:
        broken = str(e)
    print(json.dumps({"names": sorted(described), "signsgd": described["signsgd"], "w": w.data.tolist(),
                      "saved_as": opt.state_dict()["meta"]["optimizer"], "broken": broken}))
''')


def _dist(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gradbook.optimizers]\n{entry_points}\n")


def test_plugin_found_by_entry_point_trains_by_name(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PLUGIN, site / "gradbook_signsgd.py")
    _dist(site, "gradbook_signsgd", "signsgd = gradbook_signsgd:SignSGD")
    _dist(site, "gradbook_broken", "broken = gradbook_missing_module:Nothing")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)

    assert {"adam", "sgd", "signsgd"} <= set(result["names"])  # built-ins and the plug-in, one mechanism
    assert "broken" not in result["names"]
    plugin = result["signsgd"]
    assert plugin["source"] == "entry point signsgd = gradbook_signsgd:SignSGD of gradbook_signsgd"
    assert [h["name"] for h in plugin["hyperparameters"]] == ["lr", "momentum"]
    assert plugin["hyperparameters"][1]["allowed"] == "a number in [0, 1)"
    # f = |w|²/2, g = w: steps use lr 0.5, 0.5, 0.25, 0.25 in the direction −sign(b), b keeping w's sign
    assert result["w"] == [3.0 - 1.5, -2.0 + 1.5]
    assert result["saved_as"] == "signsgd"
    assert "optimizer 'broken' failed to load" in result["broken"]
    assert "ModuleNotFoundError" in result["broken"]
