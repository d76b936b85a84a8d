"""Smoke runs of the user-facing entry points: the CLI demo and info, the example scripts and
the batch-reprojection notebook, each in a subprocess at its small size, with outputs in tmp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCENE = ROOT / "data" / "scene"


def _pythonpath() -> str:
    """This checkout first, then whatever the caller had (an MLX installed by path, as on the GPU machine)."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def run(args: list[str], cwd: Path, timeout: float = 60.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python args...`` with this interpreter; fail with its output when it fails."""
    full_env = {**os.environ, "PYTHONPATH": _pythonpath(), **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def assert_png(path: Path) -> None:
    from PIL import Image

    assert path.is_file(), f"missing {path}"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 50


def test_info_prints_versions_backend_and_device(tmp_path: Path) -> None:
    out = run(["-m", "mlxgeom", "info"], tmp_path).stdout
    assert "mlxgeom" in out and "mlx" in out and "backend:" in out
    assert "default device:" in out and "GPU path active:" in out


def test_demo_small_writes_figures_and_a_report_that_checks_out(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    out = run(["-m", "mlxgeom", "demo", "--small", "--out", str(out_dir)], tmp_path).stdout
    for name in ("overlays.png", "error_heatmaps.png", "timing.png", "pose_refinement.png"):
        assert_png(out_dir / name)
    report = (out_dir / "report.txt").read_text()
    assert str(out_dir.resolve()) in out and "9/9" in out
    assert report in out.replace("\r", "")
    # The report's numbers must say the pipeline worked, not only that it ran.
    line = next(ln for ln in report.splitlines() if ln.startswith("geometry vs cv2.projectPoints"))
    assert float(line.split("max ")[1].split(" px")[0]) < 0.01
    line = next(ln for ln in report.splitlines() if ln.startswith("COLMAP observations"))
    dx, dy = (float(v) for v in line.split("offset (")[1].split(")")[0].split(","))
    assert abs(dx) < 0.05 and abs(dy) < 0.05


def test_demo_pipeline_functions_agree_with_opencv_and_recover_poses(tmp_path: Path) -> None:
    from mlxgeom import demo

    res = demo.run_demo(str(SCENE), str(tmp_path / "d"), small=True, progress=False)
    s = res.stats
    assert s["opencv_max_px"] < 0.01
    assert s["projections"] > 50_000
    for name, in_image, visible, med_all, med_vis, frac in s["photometric"]:
        assert visible <= in_image and med_vis < 3.0 and frac > 0.8, name
    r = s["refine"]
    assert np.all(r["rot_before"] > 1.9) and np.all(r["pos_before"] > 0.049)
    assert np.all(r["rot_after"] < 0.1) and np.all(r["pos_after"] < 0.01)
    assert r["photometric_mean"]["refined"] < 0.5 * r["photometric_mean"]["perturbed"]


def test_unproject_pixels_example_writes_a_ply(tmp_path: Path) -> None:
    ply = tmp_path / "cloud.ply"
    out = run([str(EXAMPLES / "unproject_pixels.py"), "--small", "--out", str(ply)], tmp_path).stdout
    head = ply.read_bytes()[:400].decode("ascii", errors="replace")
    assert head.startswith("ply\nformat binary_little_endian 1.0")
    count = int(head.split("element vertex ")[1].split()[0])
    assert count > 10_000 and ply.stat().st_size >= count * 15
    assert "vs Camera.unproject" in out


def test_pose_optimisation_example_runs_small(tmp_path: Path) -> None:
    png = tmp_path / "poses.png"
    run([str(EXAMPLES / "pose_optimisation.py"), "--small", "--out", str(png)], tmp_path)
    assert_png(png)


def test_homography_stitch_example_runs_small(tmp_path: Path) -> None:
    png = tmp_path / "stitched.png"
    run([str(EXAMPLES / "homography_stitch.py"), "--small", "--out", str(png)], tmp_path)
    assert_png(png)


def test_batch_reprojection_notebook_runs_without_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(EXAMPLES / "batch_reprojection.ipynb", as_version=4)
    assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook with its outputs"
    # The kernel inherits the environment: every 4th pixel, and this checkout's mlxgeom.
    monkeypatch.setenv("MLXGEOM_NOTEBOOK_STRIDE", "4")
    monkeypatch.setenv("PYTHONPATH", _pythonpath())
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


def test_demo_without_data_says_where_to_point_it(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlxgeom", "demo", "--data", str(tmp_path / "none"), "--out",
                           str(tmp_path / "o")], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert proc.returncode == 2 and "--data" in proc.stderr, (proc.returncode, proc.stderr[-2000:])


def test_import_mlxgeom_loads_none_of_the_demo_dependencies(tmp_path: Path) -> None:
    # The demo is an application: OpenCV, Pillow, matplotlib and tqdm load only when it runs.
    code = ("import sys, mlxgeom, mlxgeom.demo, mlxgeom.__main__; "
            "print(sorted(m for m in ('cv2', 'PIL', 'matplotlib', 'tqdm') if m in sys.modules))")
    assert run(["-c", code], tmp_path).stdout.strip() == "[]"


def test_demo_timing_keeps_the_first_call_out_of_the_steady_state() -> None:
    import time

    from mlxgeom import demo

    calls = []

    def fn() -> None:  # a first call that "compiles" for 0.3 s, then fast calls
        time.sleep(0.3 if not calls else 0.001)
        calls.append(1)

    t = demo.time_calls(fn, runs=5)
    assert len(calls) == 6
    assert t.first_call >= 0.3 and t.steady < 0.1


@pytest.mark.parametrize("script", ["homography_stitch.py", "pose_optimisation.py", "reconstruct.py", "unproject_pixels.py"])
def test_every_example_writes_under_mlxgeom_out_by_default(script: str, tmp_path: Path) -> None:
    # One rule for all entry points: ./mlxgeom-out/<name>/ unless --out says otherwise (the demo too).
    from mlxgeom.demo import DEFAULT_OUT

    assert Path(DEFAULT_OUT) == Path("mlxgeom-out", "demo")
    out = run([str(EXAMPLES / script), "--help"], tmp_path, env={"COLUMNS": "250"}).stdout
    assert f"mlxgeom-out/{script[:-3]}/" in out, out


def test_relative_pose_example_recovers_the_scene_pairs(tmp_path: Path) -> None:
    out = run([str(EXAMPLES / "relative_pose.py"), "--small"], tmp_path, timeout=120).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("ok "))
    done, total = (int(v) for v in line.split()[1].rstrip(";").split("/"))
    assert done == total == 6, out
    rot = float(line.split("median rotation error ")[1].split(" deg")[0])
    trans = float(line.split("median translation direction error ")[1].split(" deg")[0])
    assert rot < 1.0 and trans < 3.0, out


def test_reconstruct_example_recovers_the_scene_up_to_a_similarity(tmp_path: Path) -> None:
    out_dir = tmp_path / "rec"
    run([str(EXAMPLES / "reconstruct.py"), "--small", "--out", str(out_dir)], tmp_path, timeout=180)
    for name in ("top_view.png", "reprojection_errors.png"):
        assert_png(out_dir / name)
    report = (out_dir / "report.txt").read_text()
    assert report.startswith("5/5 images registered"), report
    rows = {ln[:22].strip(): [float(v) for v in ln[22:].split()] for ln in report.splitlines() if " vs " in ln[:22]}
    rot, pos, pos_pct, point_rms, point_median = rows["mlxgeom vs truth"]
    assert rot < 1.0 and pos_pct < 2.0 and point_median < 0.1, report
    from mlxgeom.camera import colmap

    model = colmap.read_model(str(out_dir / "sparse"), ext=".txt")
    assert len(model.images) == 5 and len(model.points3D) > 500
    assert sorted(im.name for im in model.images.values()) == [f"view_{i:02d}.png" for i in range(5)]
    if "mlxgeom vs pycolmap BA" in rows:  # the same initial model adjusted by Ceres lands in the same place
        assert rows["mlxgeom vs pycolmap BA"][0] < 0.01 and rows["mlxgeom vs pycolmap BA"][2] < 0.05, report
    if "pycolmap SfM vs truth" in rows:  # COLMAP's own mapper on the same observations: the same accuracy class
        assert pos_pct < 3 * rows["pycolmap SfM vs truth"][2] + 0.1, report
