"""fetch against a real S3 API server (moto) on 127.0.0.1, with real images of ../shared/abid."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bincount.cli import main
from bincount.data import fetch, layout, s3, sources
from bincount.data.datamodule import BinDataModule
from bincount.errors import BincountError

MISSING = ["999991", "999992", "00000"]  # not in the bucket


def run_fetch(uri: str, target: Path, ids=None, **kwargs) -> fetch.Report:
    store = sources.open_store(uri)
    return fetch.fetch(store, target, ids=ids, progress=False, **kwargs)


def assert_same_files(target: Path, abid: Path, ids: list[str]) -> None:
    for i in ids:
        for rel in (f"bin-images/{i}.jpg", f"metadata/{i}.json"):
            assert (target / rel).read_bytes() == (abid / rel).read_bytes(), rel
    got = sorted(p.name for d in ("bin-images", "metadata") for p in (target / d).iterdir())
    assert got == sorted([f"{i}.jpg" for i in ids] + [f"{i}.json" for i in ids])


def test_full_fetch_equals_source_and_reports_missing_keys(abid, abid_bucket, tmp_path):
    bucket, ids = abid_bucket
    report = run_fetch(f"s3://{bucket}", tmp_path / "out", ids=ids + MISSING, concurrency=8)
    assert_same_files(tmp_path / "out", abid, ids)
    assert sorted(report.missing) == sorted(f"metadata/{i}.json" for i in MISSING)
    assert set(report.complete) == set(ids) and report.files == 2 * len(ids)
    assert not report.failed and not report.invalid
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "out" / "bin-images" / f"{ids[0]}.jpg").stat().st_mode & 0o777 == (
        0o666 & ~umask
    )  # not mkstemp's 0600: a dataset others may read
    saved = json.loads((tmp_path / "out" / fetch.REPORT).read_text())
    assert saved["finished"] and sorted(saved["missing"]) == sorted(report.missing)
    # The fetched folder lists itself, so it is a data source with a file list.
    assert sorted(layout.file_list_ids(tmp_path / "out" / "file_list.json")) == sorted(ids)

    again = run_fetch(f"s3://{bucket}", tmp_path / "out", ids=ids)
    assert again.files == 0 and again.already == len(ids)


def test_local_folder_source_gives_the_same_result(abid, abid_bucket, tmp_path):
    bucket, ids = abid_bucket
    run_fetch(f"s3://{bucket}", tmp_path / "from-s3", ids=ids)
    report = run_fetch(str(abid), tmp_path / "from-folder", ids=ids + MISSING)
    assert_same_files(tmp_path / "from-folder", abid, ids)
    assert len(report.missing) == len(MISSING)
    for rel in ("file_list.json",):
        assert (tmp_path / "from-s3" / rel).read_text() == (
            tmp_path / "from-folder" / rel
        ).read_text()


def test_throttling_and_server_errors_are_retried(
    abid, abid_bucket, fault_proxy, every_nth, tmp_path
):
    bucket, ids = abid_bucket
    rules = [every_nth(3, "503", first_tries=2), every_nth(5, "500"), every_nth(7, "truncate")]
    proxy = fault_proxy(fault=lambda *a: next((f for r in rules if (f := r(*a))), None))
    report = run_fetch(f"s3://{bucket}", tmp_path / "out", ids=ids, concurrency=8)
    kinds = {kind for kind, _ in proxy.injected}
    assert kinds == {"503", "500", "truncate"}, proxy.injected
    assert report.retries == len(proxy.injected)
    assert not report.failed and not report.missing
    assert_same_files(tmp_path / "out", abid, ids)


def test_errors_that_persist_are_reported_and_exit_nonzero(
    abid_bucket, fault_proxy, tmp_path, capsys
):
    bucket, ids = abid_bucket
    bad = f"/{bucket}/bin-images/{ids[0]}.jpg"
    fault_proxy(fault=lambda method, path, n: "503" if path == bad else None)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    argv = ["data", "fetch", "--source", f"s3://{bucket}", "--to", str(tmp_path / "out")]
    code = main([*argv, "--file-list", str(tmp_path / "ids.txt"), "--attempts", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"bin-images/{ids[0]}.jpg" in out and "run again to resume" in out
    assert not (tmp_path / "out" / "bin-images" / f"{ids[0]}.jpg").exists()
    assert not (tmp_path / "out" / "metadata" / f"{ids[0]}.json").exists()
    assert len(list((tmp_path / "out" / "bin-images").iterdir())) == len(ids) - 1


def test_broken_files_at_the_source_are_reported_not_kept(abid_files, make_bucket, tmp_path):
    ids = ["00037", "00038", "00049"]
    files = abid_files(ids)
    jpeg = files["bin-images/00037.jpg"]
    files["bin-images/00037.jpg"] = jpeg[: len(jpeg) // 2]  # truncated JPEG
    files["metadata/00038.json"] = b'{"EXPECTED_QUANTITY": 3,'  # malformed JSON
    files["metadata/00049.json"] = b'{"BIN_FCSKU_DATA": {}}'  # no EXPECTED_QUANTITY
    bucket = make_bucket(files)
    report = run_fetch(f"s3://{bucket}", tmp_path / "out", ids=ids)
    invalid = dict(report.invalid)
    assert set(invalid) == {"bin-images/00037.jpg", "metadata/00038.json", "metadata/00049.json"}
    assert "decode" in invalid["bin-images/00037.jpg"]
    assert "not valid JSON" in invalid["metadata/00038.json"]
    assert "EXPECTED_QUANTITY" in invalid["metadata/00049.json"]
    left = [p for d in ("bin-images", "metadata") for p in (tmp_path / "out" / d).glob("*")]
    assert left == [] and report.complete == {}


def test_bad_ids_are_refused(abid_bucket, tmp_path, capsys):
    bucket, _ = abid_bucket
    for bad in ("../x", "/etc/passwd", "a b", "x.jpg/..", "ü"):
        (tmp_path / "ids.json").write_text(json.dumps(["00037", bad]))
        argv = ["data", "fetch", "--source", f"s3://{bucket}", "--to", str(tmp_path / "out")]
        assert main([*argv, "--file-list", str(tmp_path / "ids.json")]) == 2
        err = capsys.readouterr().err
        assert "invalid image id" in err and "fix the id list" in err, err
        assert not (tmp_path / "out").exists()
    with pytest.raises(BincountError, match="invalid image id"):
        run_fetch(f"s3://{bucket}", tmp_path / "out", ids=["00037", "../../etc/x"])


def test_unsafe_keys_in_a_listed_bucket_are_refused(abid_files, make_bucket, tmp_path):
    files = abid_files(["00037"])
    files["metadata/..%2Fescape.json"] = files["metadata/00037.json"]
    files["metadata/odd name.json"] = files["metadata/00037.json"]
    bucket = make_bucket(files)
    report = run_fetch(f"s3://{bucket}", tmp_path / "out", counts=[0, 1, 2, 3, 4, 5])
    assert sorted(report.refused) == ["..%2Fescape.json", "odd name.json"]
    assert list(report.complete) == ["00037"]
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        ".fetch.lock",
        "00037.jpg",
        "00037.json",
        "fetch-report.json",
        "file_list.json",
    ]


def test_counts_and_limit_take_the_first_matching_ids_in_order(abid, abid_bucket, tmp_path):
    bucket, ids = abid_bucket
    counts = {
        i: json.loads((abid / "metadata" / f"{i}.json").read_text())["EXPECTED_QUANTITY"]
        for i in ids
    }
    wanted = [i for i in sorted(ids) if counts[i] in (2, 3)]
    assert len(wanted) > 5
    for concurrency in (1, 8):
        target = tmp_path / f"c{concurrency}"
        report = run_fetch(
            f"s3://{bucket}", target, counts=[2, 3], limit=5, concurrency=concurrency
        )
        assert sorted(report.complete) == wanted[:5]
        assert sorted(p.stem for p in (target / "metadata").iterdir()) == wanted[:5]


def test_a_repeated_fetch_by_counts_asks_for_nothing_again(abid_bucket, fault_proxy, tmp_path):
    bucket, ids = abid_bucket
    proxy = fault_proxy()
    first = run_fetch(f"s3://{bucket}", tmp_path / "out", counts=[2, 3])
    asked = sum(n for path, n in proxy.seen.items() if "/metadata/" in path)
    assert asked == len(ids) and first.other_counts > 0
    again = run_fetch(f"s3://{bucket}", tmp_path / "out", counts=[2, 3])
    assert sum(n for path, n in proxy.seen.items() if "/metadata/" in path) == asked
    assert again.files == 0 and again.complete == first.complete
    assert again.other_counts == first.other_counts
    # Other counts asked for later are fetched then.
    wider = run_fetch(f"s3://{bucket}", tmp_path / "out", counts=[0, 1, 2, 3, 4, 5])
    assert sorted(wider.complete) == sorted(ids) and wider.other_counts == 0


def test_cli_fetch_by_counts_lists_the_bucket(abid_bucket, tmp_path, capsys):
    bucket, ids = abid_bucket
    argv = ["data", "fetch", "--source", f"s3://{bucket}", "--to", str(tmp_path / "out")]
    assert main([*argv, "--counts", "0-5", "--limit", "4", "--no-progress"]) == 0
    assert "4 images complete" in capsys.readouterr().out
    assert sorted(p.stem for p in (tmp_path / "out" / "bin-images").iterdir()) == sorted(ids)[:4]


def fetch_command(bucket: str, ids: list[str], target: Path, concurrency: int) -> list[str]:
    """`bincount data fetch` of these ids, as a user runs it."""
    (target.parent / "ids.txt").write_text("\n".join(ids))
    return [
        sys.executable, "-m", "bincount.cli", "data", "fetch",
        "--source", f"s3://{bucket}", "--to", str(target),
        "--file-list", str(target.parent / "ids.txt"),
        "--concurrency", str(concurrency), "--no-progress",
    ]  # fmt: skip


def start_and_wait_for_images(cmd: list[str], env: dict, target: Path, n: int):
    """The fetch as a process, once it has written n images."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a suite run from a background job (`make test &` in a script)
        # hands its children SIGINT ignored, and Ctrl-C would never reach the fetch
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while len(list((target / "bin-images").glob("*.jpg"))) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fetch never started writing"
        time.sleep(0.02)
    return proc


def test_fetch_killed_half_way_resumes_with_no_partial_file(
    abid, abid_bucket, fault_proxy, tmp_path
):
    bucket, ids = abid_bucket
    proxy = fault_proxy(delay=0.15)  # slow enough to be caught half-way
    target = tmp_path / "out"
    cmd = fetch_command(bucket, ids, target, concurrency=2)
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    proc = start_and_wait_for_images(cmd, env, target, 4)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # What is there under a final name is whole, even right after the kill.
    kept = sorted((target / "bin-images").glob("*.jpg"))
    assert 4 <= len(kept) < len(ids)
    for path in kept:
        assert path.read_bytes() == (abid / "bin-images" / path.name).read_bytes()
    assert not (target / fetch.REPORT).exists()

    proxy.delay = 0
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same_files(target, abid, ids)
    assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")]
    report = json.loads((target / fetch.REPORT).read_text())
    assert report["already"] >= len(kept) - 2 and report["finished"]


def test_ctrl_c_stops_at_once_and_leaves_only_whole_files(abid, abid_bucket, fault_proxy, tmp_path):
    bucket, ids = abid_bucket
    proxy = fault_proxy(delay=0.15)
    target = tmp_path / "out"
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    proc = start_and_wait_for_images(fetch_command(bucket, ids, target, 4), env, target, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")]
    for path in (target / "bin-images").glob("*.jpg"):
        assert path.read_bytes() == (abid / "bin-images" / path.name).read_bytes()
    assert len(list((target / "bin-images").glob("*.jpg"))) < len(ids)


def test_private_bucket_is_read_signed_when_credentials_exist(abid_files, make_bucket, tmp_path):
    ids = ["00037", "00038", "00049", "00050", "00085", "00086"]
    bucket = make_bucket(abid_files(ids), public=False)
    store = sources.open_store(f"s3://{bucket}")  # anonymous first, refused, then signed
    report = fetch.fetch(store, tmp_path / "out", ids=ids, concurrency=8, progress=False)
    assert sorted(report.complete) == ids and not report.missing
    assert store.signed


def test_private_bucket_without_credentials_says_what_to_do(
    abid, abid_files, make_bucket, monkeypatch, tmp_path
):
    ids = sorted(p.stem for p in (abid / "metadata").glob("*.json"))[: fetch.DENIED_LIMIT + 5]
    bucket = make_bucket(abid_files(ids), public=False)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BincountError, match=r"refuses anonymous reads.*--signed"):
        run_fetch(f"s3://{bucket}", tmp_path / "out", ids=ids)
    with pytest.raises(BincountError, match="no AWS credentials"):
        fetch.fetch(sources.open_store(f"s3://{bucket}", signed=True), tmp_path / "o", ids=ids)


def test_unreachable_endpoint_and_unknown_bucket(s3env, monkeypatch, tmp_path):
    with pytest.raises(BincountError, match="bucket does not exist"):
        sources.open_store("s3://no-such-bucket-here")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(BincountError, match=r"cannot reach.*AWS_ENDPOINT_URL"):
        sources.open_store("s3://aft-vbi-pds")
    for bad in ("s3://", "s3://UPPER", "s3://ok-bucket/../x", "http://x"):
        with pytest.raises(BincountError, match="s3://BUCKET"):
            s3.parse_uri(bad)


def test_data_module_reads_an_s3_source_through_a_cache(
    abid, abid_files, abid_bucket, make_bucket, monkeypatch, tmp_path
):
    _, ids = abid_bucket
    files = abid_files(ids)
    files["file_list.json"] = json.dumps({"x": [f"metadata/{i}.json" for i in ids]}).encode()
    bucket = make_bucket(files)

    def module(source=f"s3://{bucket}"):
        return BinDataModule(
            source=source,
            cache_dir=str(tmp_path / "data"),
            counts=[0, 1, 2, 3, 4, 5],
            file_list="file_list.json",
            image_size=64,
            batch_size=4,
            num_workers=0,
        )

    dm = module()
    dm.prepare_data()
    dm.setup("fit")
    assert dm.folder == tmp_path / "data" / "s3" / bucket
    assert sum(len(d) for d in dm.datasets.values()) == len(ids)
    image, _ = dm.datasets["train"][0]
    assert image.shape == (3, 64, 64)
    assert_same_files(dm.folder, abid, ids)

    # Later runs use the cache and make no request at all (however the URI is spelt).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    again = module(f"s3://{bucket}/")
    again.setup("fit")
    assert again.folder == dm.folder and again.rows == dm.rows


def test_seed_file_list_is_shipped(abid):
    ids = layout.parse_file_list(json.loads(s3.seed_file_list()), "seed")
    assert len(ids) == len(set(ids)) == 10441
    assert ids == layout.file_list_ids(abid / "file_list.json")


def test_help_of_each_subcommand(capsys):
    for argv in (["data"], ["data", "fetch"], ["data", "describe"], ["data", "upload"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0
        assert "usage: bincount data" in capsys.readouterr().out


def test_a_target_that_cannot_be_written_is_a_clear_error(tmp_path, capsys, abid):
    (tmp_path / "file").write_text("not a folder")
    code = main(["data", "fetch", "--source", str(abid), "--to", str(tmp_path / "file")])
    assert code == 2
    assert "cannot write into" in capsys.readouterr().err


@pytest.mark.slow  # 25-45 s: a real train.py process (one batch per split)
def test_train_py_reads_an_s3_source(abid_bucket, abid_files, make_bucket, tmp_path):
    """The user's `python train.py data.source=s3://...`, one batch of each split."""
    _, ids = abid_bucket
    files = abid_files(ids)
    files["file_list.json"] = json.dumps(ids).encode()  # else the seed's 10,441 ids are tried
    bucket = make_bucket(files)
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[2] / "train.py"),
            "experiment=smoke",
            "debug=fdr",
            f"data.source=s3://{bucket}",
            "data.counts=[0,1,2,3,4,5]",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "data.image_size=64",
            "data.num_workers=0",
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cache = tmp_path / "data" / "s3" / bucket
    assert sorted(p.stem for p in (cache / "bin-images").iterdir()) == sorted(ids)
    assert list((tmp_path / "data" / "manifests").glob(f"{bucket}-*.csv"))


def test_count_ranges_and_id_lists(tmp_path):
    from bincount.argtypes import counts as parse_counts
    from bincount.data.layout import read_ids

    assert parse_counts("1-5") == [1, 2, 3, 4, 5]
    assert parse_counts("0,2,4") == [0, 2, 4] and parse_counts("1-3,7") == [1, 2, 3, 7]
    for bad in ("5-1", "x", "-2", "1-"):
        with pytest.raises(argparse.ArgumentTypeError, match="write e"):
            parse_counts(bad)
    (tmp_path / "ids.txt").write_text("00127\n127\n\n")
    assert read_ids(tmp_path / "ids.txt") == ["00127", "127"]  # strings: never ints
    (tmp_path / "ids.json").write_text('{"2": ["data/metadata/00127.json"]}')
    assert read_ids(tmp_path / "ids.json") == ["00127"]
    (tmp_path / "ints.json").write_text("[127]")
    with pytest.raises(BincountError, match="quote the ids"):
        read_ids(tmp_path / "ints.json")


def test_bad_arguments_are_clear_errors(abid, tmp_path):
    store = sources.open_store(str(abid))
    for kwargs, message in (
        ({"limit": 0}, "--limit 0 must be at least 1"),
        ({"concurrency": 0}, "--concurrency 0 must be at least 1"),
    ):
        with pytest.raises(BincountError, match=message):
            fetch.fetch(store, tmp_path / "out", ids=["00037"], **kwargs)
    with pytest.raises(BincountError, match="is the source itself"):
        fetch.fetch(store, abid, ids=["00037"])
