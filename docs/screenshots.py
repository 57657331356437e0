"""The screenshots of docs/sweeps-and-dashboards.md, taken from the real thing, offline:

    .venv/bin/python docs/screenshots.py            # overwrites docs/img/*.png (~2.5 min here)

1. a tiny real grid sweep (40 photos of ../shared/abid, 64 px, a few batches, 2 epochs) with
   every tracker (`logger=many`): `lr=0.001,0.01 batch_size=8,16`;
2. `bincount compare` on it (its HTML report);
3. the real servers on free ports of 127.0.0.1: `tensorboard --logdir` and `mlflow server` on
   the sweep's MLflow store;
4. each page in headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver) at 1200x800,
   waited for until its content shows, saved as a small palette PNG under docs/img/.

W&B offline has no local dashboard: its offline run folders are listed instead (the docs show
the `wandb sync` step in text). Exits 1 with one line if the sweep, a server, Chromium or a
page fails; prints what it wrote. `--work DIR --reuse` keeps the sweep of an earlier run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
ABID = ROOT.parent / "shared" / "abid"
SIZE = (1200, 800)
MAX_BYTES = 200_000
WAIT_S = 120


class Failed(Exception):
    """One line: what failed and what to check."""


def env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


# ---------------------------------------------------------------- the sweep


def tiny_source(dest: Path, per_count: int = 8) -> Path:
    """`per_count` real photos of each count 1..5 that the default split divides 60/20/20."""
    sys.path.insert(0, str(ROOT / "src"))
    from bincount.data.manifest import split_of

    if not (ABID / "metadata").is_dir():
        raise Failed(f"{ABID} is missing: the screenshots train on ../shared/abid")
    for sub in ("bin-images", "metadata"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    by_count: dict[int, list[str]] = {}
    for meta in sorted((ABID / "metadata").glob("*.json")):
        by_count.setdefault(json.loads(meta.read_text())["EXPECTED_QUANTITY"], []).append(meta.stem)
    for count in range(1, 6):
        want = {"val": round(per_count * 0.2), "test": round(per_count * 0.2)}
        want["train"] = per_count - want["val"] - want["test"]
        for image_id in by_count[count]:
            split = split_of(image_id, 42, (0.6, 0.2, 0.2))
            if want[split]:
                want[split] -= 1
                shutil.copy(ABID / "bin-images" / f"{image_id}.jpg", dest / "bin-images")
                shutil.copy(ABID / "metadata" / f"{image_id}.json", dest / "metadata")
    return dest


def sweep(work: Path) -> Path:
    outputs, folder = work / "outputs", work / "outputs" / "multirun" / "sweep"
    source = tiny_source(work / "abid")
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "lr=0.001,0.01",
        "batch_size=8,16",
        "logger=many",
        "experiment=smoke",
        "debug=limit",
        "data.image_size=64",
        "data.num_workers=0",
        "test=false",
        # relative to the work folder: the reports show short paths
        f"data.source={source.relative_to(work)}",
        "paths.data_dir=data",
        f"paths.log_dir={outputs.relative_to(work)}",
        f"hydra.sweep.dir={folder.relative_to(work)}",
    ]
    print("sweep:", " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=work, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise Failed(f"the sweep failed (exit {proc.returncode}): {tail[0]}")
    return folder


def compare(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "bincount.cli", "compare", str(folder)]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise Failed(f"bincount compare failed: {proc.stderr.strip()[-300:]}")
    print(proc.stdout, flush=True)
    return folder / "compare" / "compare.html"


# ---------------------------------------------------------------- the servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@contextlib.contextmanager
def server(name: str, cmd: list[str], ready: str, log: Path):
    """Start `cmd` (its own process group), wait until GET `ready` answers, stop it after."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=log.parent,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if proc.poll() is not None:
                last = (log.read_text().strip().splitlines() or ["(no output)"])[-1]
                raise Failed(f"{name} exited ({proc.returncode}): {last} (log: {log})")
            try:
                get(ready)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Failed(
                        f"{name} did not answer {ready} in {WAIT_S} s (log: {log})"
                    ) from None
                time.sleep(1)
        print(f"{name}: {ready}", flush=True)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, started here
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---------------------------------------------------------------- Chromium


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={SIZE[0]},{SIZE[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    except Exception as e:
        raise Failed(f"headless Chromium did not start: {str(e).splitlines()[0]}") from e
    # the page's viewport, not the window, is SIZE: screenshots are exactly SIZE
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(WAIT_S)
    return driver


def wait_for(driver, what: str, script: str, timeout: float = WAIT_S):
    """Poll the JavaScript `script` (a truthy value: the content is there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if driver.execute_script(script):
                return
        time.sleep(1)
    seen = OUT.parent.parent / "outputs" / "screenshot-failed.png"
    seen.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(seen))
    raise Failed(
        f"{what} did not show in {timeout:.0f} s ({driver.current_url}; it showed: {seen})"
    )


def shoot(driver, name: str) -> Path:
    """The window as a palette PNG under docs/img/, < 200 KB."""
    from PIL import Image

    time.sleep(2)  # animations and fonts settle
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    if image.size != SIZE:
        raise Failed(f"Chromium's screenshot is {image.size}, not {SIZE}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    for colors in (128, 64, 32):
        data = io.BytesIO()
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(
            data, "PNG", optimize=True
        )
        if data.tell() < MAX_BYTES:
            break
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data.getvalue())
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)} ({data.tell() // 1024} KB)", flush=True)
    return path


def visit(driver, url: str) -> None:
    """A fresh load of `url` (a change of the #part alone may not reload a page)."""
    driver.get("about:blank")
    driver.get(url)


# The page's text, inside shadow roots too (TensorBoard's Polymer dashboards).
PAGE_TEXT = (
    "function text(n) { let t = n.shadowRoot ? text(n.shadowRoot) : '';"
    " for (const c of n.childNodes) t += c.nodeType === 3 ? c.textContent + ' ' : text(c);"
    " return t; }"
)


def text_has(*words: str, any_of: tuple[str, ...] = ()) -> str:
    """JavaScript: the page's text has every one of `words` and one of `any_of` (if given)."""
    checks = [f"t.includes({json.dumps(w)})" for w in words]
    if any_of:
        checks.append("(" + " || ".join(f"t.includes({json.dumps(w)})" for w in any_of) + ")")
    return (
        f"{PAGE_TEXT} const t = document.body ? text(document.body) : ''; "
        f"return {' && '.join(checks)};"
    )


def tensorboard_pages(driver, url: str) -> tuple[list[Path], str | None]:
    """The Time Series tab filtered to the validation curves, then the HParams tab; the
    second item says why the HParams tab has nothing to show, if it has not."""
    from selenium.webdriver.common.by import By

    tags = urllib.parse.quote("^val/(acc|loss|macro_acc|rmse)$", safe="")
    visit(driver, f"{url}/?tagFilter={tags}&smoothing=0#timeseries")  # no smoothing: 3 points
    cards = "return document.querySelectorAll('scalar-card').length >= 2;"
    wait_for(driver, "TensorBoard's val/ charts", cards)
    with contextlib.suppress(Exception):  # the settings pane, open on a wide window
        driver.find_element(By.XPATH, "//button[contains(., 'Settings')]").click()
    time.sleep(5)  # the charts draw
    shots = [shoot(driver, "tensorboard-scalars.png")]
    if not hparams_logged(url):
        return shots, "TensorBoard's HParams tab is empty: the runs log no hparams summary"
    visit(driver, f"{url}/#hparams")
    dashboard = "return !!document.querySelector('tf-hparams-dashboard');"
    wait_for(driver, "TensorBoard's HParams tab", dashboard)
    time.sleep(15)  # its table loads (inside Polymer's shadow roots: no text to wait for)
    shots.append(shoot(driver, "tensorboard-hparams.png"))
    return shots, None


def hparams_logged(url: str) -> bool:
    """Whether TensorBoard's HParams plugin has hyperparameters to show (its own API)."""
    request = urllib.request.Request(
        f"{url}/data/plugin/hparams/experiment",
        json.dumps({"experimentName": ""}).encode(),
        {"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return bool(json.loads(response.read()).get("hparamInfos"))
    except (OSError, ValueError):
        return False


def dismiss(driver) -> None:
    """Close MLflow's tips and its assistant pane, where they show."""
    from selenium.webdriver.common.by import By

    for xpath in (
        "//button[normalize-space(.)='Got it']",
        "//*[contains(., 'MLflow Assistant')]/following::button[@aria-label='Close'][1]",
    ):
        for button in driver.find_elements(By.XPATH, xpath):
            with contextlib.suppress(Exception):
                button.click()
    time.sleep(1)


def pick(driver, choices) -> None:
    """The parallel coordinates plot's parameters, then metrics (typed into its two boxes)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.XPATH, "//button[normalize-space(.)='Clear All']").click()
    time.sleep(1)
    boxes = driver.find_elements(By.CSS_SELECTOR, "input[role='combobox']")
    for box, values in zip(boxes[:2], choices, strict=False):
        for value in values:
            box.click()
            box.send_keys(value)
            time.sleep(1)
            box.send_keys(Keys.ENTER)
        box.send_keys(Keys.ESCAPE)
    driver.execute_script("document.activeElement.blur();")
    time.sleep(2)


def mlflow_pages(driver, url: str) -> list[Path]:
    api = f"{url}/api/2.0/mlflow"
    experiment = json.loads(get(f"{api}/experiments/get-by-name?experiment_name=bincount"))
    exp_id = experiment["experiment"]["experiment_id"]
    body = json.dumps({"experiment_ids": [exp_id], "max_results": 50}).encode()
    request = urllib.request.Request(
        f"{api}/runs/search", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.loads(response.read())["runs"]
    names = [r["info"]["run_name"] for r in runs]
    ids = [r["info"]["run_id"] for r in runs]
    visit(driver, f"{url}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    # a sweep's trials may be nested under its parent run: one name is enough
    wait_for(driver, "MLflow's runs table", text_has(any_of=tuple(names)))
    dismiss(driver)
    shots = [shoot(driver, "mlflow-runs.png")]
    visit(
        driver,
        f"{url}/#/compare-runs?runs={json.dumps(ids, separators=(',', ':'))}"
        f"&experiments={json.dumps([exp_id])}",
    )
    wait_for(driver, "MLflow's compare view", text_has("lr", "val/acc", any_of=tuple(names)))
    dismiss(driver)
    with contextlib.suppress(Exception):  # plot the swept keys against val/acc
        pick(driver, (["lr", "batch_size"], ["val/acc"]))
    shots.append(shoot(driver, "mlflow-compare.png"))
    return shots


def compare_page(driver, html: Path) -> Path:
    driver.get(html.as_uri())
    wait_for(
        driver,
        "compare's report",
        "return [...document.images].length > 0 && [...document.images].every(i => i.complete);",
    )
    driver.execute_script("document.body.style.zoom = '0.7';")  # the table and the plots
    return shoot(driver, "compare-report.png")


# ---------------------------------------------------------------- main


def take(work: Path, reuse: bool) -> tuple[list[Path], list[str]]:
    """The screenshots written, and what could not be shown."""
    folder = work / "outputs" / "multirun" / "sweep"
    if not (reuse and (folder / "trials.csv").is_file()):
        shutil.rmtree(work / "outputs", ignore_errors=True)
        folder = sweep(work)
    html = compare(folder)
    wandb = sorted(folder.glob("*/wandb/offline-run-*"))
    if not wandb:
        raise Failed(f"no W&B offline run under {folder}/*/wandb/")
    print("W&B offline runs (no local dashboard: `wandb sync` uploads them):")
    for run in wandb:
        print("  ", run.relative_to(work))
    shots: list[Path] = []
    problems: list[str] = []
    driver = browser(work / "chromium-profile")
    try:
        shots.append(compare_page(driver, html))
        port = free_port()
        tb = [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder)]
        tb += ["--host", "127.0.0.1", "--port", str(port)]
        with server("TensorBoard", tb, f"http://127.0.0.1:{port}/", work / "tensorboard.log"):
            taken, missing = tensorboard_pages(driver, f"http://127.0.0.1:{port}")
            shots += taken
            problems += [missing] if missing else []
        port = free_port()
        store = work / "outputs" / "mlflow.db"
        ml = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}"]
        ml += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        with server("MLflow", ml, f"http://127.0.0.1:{port}/health", work / "mlflow.log"):
            shots += mlflow_pages(driver, f"http://127.0.0.1:{port}")
    finally:
        driver.quit()
    return shots, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="keep the sweep already in --work")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bincount-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        shots, problems = take(work.resolve(), args.reuse)
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(shots)} screenshots in {OUT.relative_to(ROOT)}/:", *(p.name for p in shots))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
