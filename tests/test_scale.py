"""Beyond one process: shards of a data set, parts of a prediction, several devices."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import quick_cnn_trainer
import sdss_query
from galaxy_classification.data import datasets
from galaxy_classification.inference import parts

from conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def one_and_sharded(tmp_path_factory):
    """The same 30 synthetic galaxies in one directory and in shards of 7."""
    root = tmp_path_factory.mktemp("shards")
    for name, shard_size in (("one", None), ("sharded", 7)):
        sdss_query.create_datafiles(30, source="synthetic", out_dir=root / name, image_size=32,
                                    image_scale_factor=0.04, seed=5, shard_size=shard_size)
    return root / "one", root / "sharded"


def test_shards_are_seed_format_directories_listed_in_an_index(one_and_sharded):
    _, sharded = one_and_sharded
    index = json.loads((sharded / "shards.json").read_text())
    assert [entry["galaxies"] for entry in index["shards"]] == [7, 7, 7, 7, 2]
    for entry in index["shards"]:
        shard = sharded / entry["name"]
        assert {"galaxy_data.csv", "galaxy_images.npy", "galaxy_labels.npy", "dataset.json"} <= {
            path.name for path in shard.iterdir()}
        assert np.load(shard / "galaxy_images.npy", mmap_mode="r").shape == (entry["galaxies"], 32, 32, 3)


def test_a_sharded_directory_reads_as_the_same_galaxies(one_and_sharded):
    one, sharded = (datasets.open_training_data(path) for path in one_and_sharded)
    assert len(one) == len(sharded) == 30
    np.testing.assert_array_equal(one.labels, sharded.labels)
    rows = np.array([29, 0, 13, 7, 6, 21])
    np.testing.assert_array_equal(one.images.read(rows), sharded.images.read(rows))
    assert one.sources == sharded.sources and one.field.petro_radii == sharded.field.petro_radii


def test_a_sharded_directory_trains_and_evaluates_exactly_like_one_directory(one_and_sharded, tmp_path):
    results = []
    for data in one_and_sharded:
        out = tmp_path / data.name
        assert quick_cnn_trainer.main(["--data", str(data), "--preset", "modern", "--epochs", "1", "--image-size",
                                       "16", "--batch-size", "8", "--seed", "3", "--out", str(out)]) == 0
        assert len(list((out / "cache").glob("*.npy"))) == (1 if data.name == "one" else 5)  # the cache is sharded too
        table = quick_cnn_trainer.predict([data], model=str(out / "my-galaxy-model.keras"), out=out / "p.csv",
                                          progress=False)
        results.append((json.loads((out / "metrics.json").read_text()), table))
    (metrics_one, table_one), (metrics_sharded, table_sharded) = results
    assert metrics_one["confusion_matrix"] == metrics_sharded["confusion_matrix"]
    np.testing.assert_allclose(table_one["p_elliptical"], table_sharded["p_elliptical"], atol=1e-6)


def test_parts_cover_every_row_once_and_merge_to_the_unsharded_table(one_and_sharded, tmp_path):
    one, _ = one_and_sharded
    model = str(PROJECT_ROOT / "models" / "sdss-gz1.keras")
    whole = quick_cnn_trainer.predict([one, one / "galaxy_images.npy"], model=model, out=tmp_path / "whole.csv",
                                      progress=False)
    rows = []
    for k in range(4):
        part = quick_cnn_trainer.predict([one, one / "galaxy_images.npy"], model=model, out=tmp_path / "p.csv",
                                         progress=False, part=(k, 4))
        rows.extend(part[parts.ROW_COLUMN])
        assert (tmp_path / f"p.part-{k}-of-4.csv").is_file()
    assert sorted(rows) == list(range(60))  # two inputs of 30: every row exactly once
    merged = parts.merge(tmp_path / "p.csv")
    assert list(merged.columns) == list(whole.columns) and len(merged) == 60
    np.testing.assert_allclose(pd.to_numeric(merged["p_elliptical"]), whole["p_elliptical"], atol=1e-6)
    assert list(merged["source"]) == [str(source) for source in whole["source"]]


def test_an_incomplete_or_mixed_merge_is_refused(tmp_path, capsys):
    for k in (0, 2):
        pd.DataFrame({"row": [k], "rows_in_run": [3], "p_elliptical": [0.5]}).to_csv(tmp_path / f"p.part-{k}-of-3.csv", index=False)
    with pytest.raises(SystemExit):
        quick_cnn_trainer.main(["merge", str(tmp_path / "p.csv")])
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "1 of 3 parts missing" in error and "k = 1" in error
    pd.DataFrame({"row": [0], "rows_in_run": [3], "p_elliptical": [0.5]}).to_csv(tmp_path / "p.part-1-of-3.csv",
                                                                                index=False)
    with pytest.raises(ValueError, match="more than one part"):
        parts.merge_parts(tmp_path / "p.csv")
    pd.DataFrame({"row": [0], "rows_in_run": [2], "p_elliptical": [0.5]}).to_csv(tmp_path / "p.part-0-of-2.csv",
                                                                                index=False)
    with pytest.raises(ValueError, match="different splits"):
        parts.merge_parts(tmp_path / "p.csv")


@pytest.mark.parametrize("value", ["0/0", "3/2", "a/b", "-1/2", "2"])
def test_bad_shard_values_are_refused_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as caught:
        quick_cnn_trainer.main(["predict", "--shard", value, "x.jpg"])
    error = capsys.readouterr().err
    assert caught.value.code == 2 and error.count("\n") == 1 and "--shard" in error


def test_a_slurm_job_array_picks_its_part():
    assert parts.part_from_environment({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    assert parts.part_from_environment({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8",
                                         "SLURM_ARRAY_TASK_MIN": "1"}) == (7, 8)
    assert parts.part_from_environment({}) is None
    assert [len(parts.part_rows(10, (k, 3))) for k in range(3)] == [4, 3, 3]


def test_shard_size_and_an_existing_data_set_of_the_other_kind_are_refused(one_and_sharded, tmp_path):
    one, sharded = one_and_sharded
    with pytest.raises(ValueError, match="shard_size"):
        sdss_query.create_datafiles(4, source="synthetic", out_dir=tmp_path, image_size=16, shard_size=0)
    with pytest.raises(ValueError, match="sharded data set"):
        sdss_query.create_datafiles(4, source="synthetic", out_dir=sharded, image_size=16)
    with pytest.raises(ValueError, match="unsharded"):
        sdss_query.create_datafiles(4, source="synthetic", out_dir=one, image_size=16, shard_size=2)


def start_with_cpu_devices(devices, arguments, log):
    """The trainer in a child process whose one CPU shows as ``devices`` logical devices,
    writing what it prints to ``log`` (a file: two children never wait on a full pipe)."""
    script = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        f"tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})\n"
        "import quick_cnn_trainer\n"
        f"sys.exit(quick_cnn_trainer.main({arguments!r}))\n")
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, "-c", script], stdout=output, stderr=subprocess.STDOUT,
                                cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_mirrored_over_two_cpu_devices_trains_like_one_device(tmp_path):
    from trainer_helpers import write_data_directory

    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=80, size=24)
    runs = {devices: start_with_cpu_devices(devices, [  # side by side: the two runs are independent
        "--data", str(directory), "--preset", "seed", "--epochs", "3",
        "--batch-size", str(batch), "--seed", "1", "--distribute", "mirrored" if devices > 1 else "none",
        "--out", str(tmp_path / f"devices-{devices}")], tmp_path / f"devices-{devices}.log")
        for devices, batch in ((1, 8), (2, 4))}  # the same global batch of 8
    try:
        for run in runs.values():
            run.wait(timeout=600)
    finally:
        for run in runs.values():
            run.kill()
    figures = {}
    for devices, run in runs.items():
        assert run.returncode == 0, (tmp_path / f"devices-{devices}.log").read_text()[-3000:]
        figures[devices] = json.loads((tmp_path / f"devices-{devices}" / "metrics.json").read_text())
    assert figures[2]["distribution"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert figures[1]["distribution"] == {"strategy": "none", "replicas": 1}
    assert figures[2]["batch_size"] == 8
    # BatchNorm sees per-replica batches of 8 and the rate is scaled, so not bit for bit: the same
    # easy sample is learnt to within 15 points of test accuracy (24 test galaxies)
    assert abs(figures[2]["accuracy"] - figures[1]["accuracy"]) <= 0.15
    print({devices: figures[devices]["accuracy"] for devices in figures})
    assert min(figures[1]["accuracy"], figures[2]["accuracy"]) >= 0.6  # better than chance on 24 test galaxies


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def trainer_process(directory, out, cluster, index, extra=()):
    config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "quick_cnn_trainer.py"), "--data", str(directory), "--preset", "modern",
         "--epochs", "2", "--image-size", "16", "--batch-size", "8", "--seed", "2", "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_two_workers_on_loopback_train_one_model_that_only_the_chief_writes(tmp_path):
    from trainer_helpers import write_data_directory

    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=60, size=24)
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = [trainer_process(directory, tmp_path / f"out-{index}", cluster, index) for index in range(2)]
    try:
        outputs = [worker.communicate(timeout=400) for worker in workers]
    finally:  # never leave a worker behind, whatever failed
        for worker in workers:
            worker.kill()
    for worker, (_, error) in zip(workers, outputs):
        assert worker.returncode == 0, error[-3000:]
    chief, other = tmp_path / "out-0", tmp_path / "out-1"
    assert (chief / "my-galaxy-model.keras").is_file() and (chief / "metrics.json").is_file()
    assert not (other / "my-galaxy-model.keras").exists() and not (other / "metrics.json").exists()
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["distribution"] == {"strategy": "MultiWorkerMirroredStrategy", "replicas": 2}
    assert metrics["epochs_run"] == 2 and metrics["batch_size"] == 16  # 8 per replica
    assert "the chief writes" in outputs[1][0]


def test_a_worker_whose_peer_never_comes_fails_with_a_message(tmp_path):
    from trainer_helpers import write_data_directory

    directory, _, _ = write_data_directory(tmp_path / "data", n_galaxies=24, size=16)
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    lonely = trainer_process(directory, tmp_path / "out", cluster, 0, ["--peer-timeout", "6"])
    started = time.monotonic()
    try:
        _, error = lonely.communicate(timeout=240)
    finally:
        lonely.kill()
    assert lonely.returncode != 0 and time.monotonic() - started < 200
    assert "no word from the other workers" in error and "Traceback" not in error, error[-3000:]
