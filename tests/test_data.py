import contextlib
import hashlib
import http.server
import os
import tarfile
import threading
from functools import partial

import pytest
import torch

from conftest import fake_cifar, write_bin_layout
from benchmarks.common import data_label
from utils.data import RECORD, DataError, Loader, augment_batch, load_cifar10


def listing(d):
    return sorted((p, os.path.getsize(p)) for p in d.rglob("*"))


def test_images_and_labels_are_read_exactly(tmp_path):
    write_bin_layout(tmp_path, n=20)
    before = listing(tmp_path)
    x, y = load_cifar10(tmp_path, train=True, download=False)
    xt, yt = load_cifar10(tmp_path, train=False, download=False)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    images, labels = fake_cifar(20, seed=0)  # data_batch_1
    assert torch.equal(x[:20], torch.from_numpy(images)) and torch.equal(y[:20], torch.from_numpy(labels).long())
    images, labels = fake_cifar(20, seed=5)  # test_batch
    assert torch.equal(xt, torch.from_numpy(images)) and torch.equal(yt, torch.from_numpy(labels).long())
    assert listing(tmp_path) == before  # nothing written into the data folder


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_bin_layout(tmp_path, n=10)
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    assert len(load_cifar10(train=False, download=False)[1]) == 10


def test_missing_folder_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 in .*nope.*CIFAR10_DIR"):
        load_cifar10(tmp_path / "nope", download=False)


def test_empty_folder_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="expected cifar-10-batches-bin"):
        load_cifar10(tmp_path, download=False)


def test_missing_batch_file_is_named(tmp_path):
    d = write_bin_layout(tmp_path, n=5)
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin: file missing"):
        load_cifar10(tmp_path, download=False)


def test_truncated_binary_file_is_named(tmp_path):
    d = write_bin_layout(tmp_path, n=5)
    f = d / "data_batch_2.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="data_batch_2.bin: truncated or corrupt.*3073-byte records"):
        load_cifar10(tmp_path, download=False)


def test_label_out_of_range_is_named(tmp_path):
    d = write_bin_layout(tmp_path, n=5)
    f = d / "test_batch.bin"
    raw = bytearray(f.read_bytes())
    raw[3073 * 2] = 12  # third record's label
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="test_batch.bin: label 12 out of range 0-9 at record 2"):
        load_cifar10(tmp_path, train=False, download=False)


def test_real_dataset_loads_with_balanced_classes(cifar_dir):
    x, y = load_cifar10(cifar_dir, train=False, download=False)
    assert x.shape == (10_000, 3, 32, 32)
    assert torch.bincount(y).tolist() == [1000] * 10


def test_augmentation_keeps_shape_and_dtype_and_is_reproducible():
    x = torch.from_numpy(fake_cifar(16)[0])
    a = augment_batch(x, ("crop", "flip"), torch.Generator().manual_seed(1))
    b = augment_batch(x, ("crop", "flip"), torch.Generator().manual_seed(1))
    c = augment_batch(x, ("crop", "flip"), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_crop_is_a_window_of_the_zero_padded_image():
    x = torch.from_numpy(fake_cifar(20)[0])
    out = augment_batch(x, ("crop",), torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = set()
    for img, p in zip(out, padded):
        found = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(img, p[:, dy:dy + 32, dx:dx + 32])]
        assert found
        windows.add(found[0])
    assert len(windows) > 5  # shifts vary between images


def test_loader_is_reproducible_per_epoch_and_reshuffles():
    images, labels = (torch.from_numpy(a) for a in fake_cifar(64))
    ld = Loader(images, labels.long(), batch_size=16, train=True, augment=("crop", "flip"), seed=3)
    first = [y for _, y in ld]
    second = [y for _, y in ld]
    ld.set_epoch(0)
    replay = [(x, y) for x, y in ld]
    assert len(first) == 4 and not all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(torch.equal(a, b) for a, (_, b) in zip(first, replay))
    assert replay[0][0].dtype == torch.float32 and replay[0][0].shape == (16, 3, 32, 32)


def test_test_loader_keeps_order_and_every_sample():
    images, labels = (torch.from_numpy(a) for a in fake_cifar(50))
    ys = torch.cat([y for _, y in Loader(images, labels.long(), batch_size=16)])
    assert torch.equal(ys, labels.long())


@pytest.mark.parametrize("kwargs,match", [({"augment": ("crop", "rotate")}, "unknown augmentation"),
                                          ({"batch_size": 0}, "batch_size must be a positive integer")])
def test_loader_rejects_bad_options(kwargs, match):
    images, labels = (torch.from_numpy(a) for a in fake_cifar(4))
    with pytest.raises(ValueError, match=match):
        Loader(images, labels.long(), **{"batch_size": 2, **kwargs})


def test_a_copy_that_is_not_the_official_files_is_labelled_unverified(tmp_path):
    write_bin_layout(tmp_path, n=5)
    assert data_label(tmp_path) == "CIFAR-10 (unverified copy: not the official files)"


@contextlib.contextmanager
def serving(folder, monkeypatch):
    """folder served on 127.0.0.1, utils.data.URL pointing at its cifar-10-binary.tar.gz (no internet needed)."""
    import utils.data
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler,
                                                                         directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(utils.data, "URL", f"http://127.0.0.1:{server.server_address[1]}/cifar-10-binary.tar.gz")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def test_download_success_path_end_to_end_from_a_local_server(tmp_path, monkeypatch):
    """A small archive in the official format, served locally, read through the normal path."""
    import utils.data
    src = write_bin_layout(tmp_path / "src", n=10)
    archive = tmp_path / "served" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-bin")
    monkeypatch.setattr(utils.data, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())  # as if published
    root = tmp_path / "data"
    with serving(archive.parent, monkeypatch):
        x, y = load_cifar10(root, train=True, download=True)
    xt, yt = load_cifar10(root, train=False, download=False)
    images, labels = fake_cifar(10, seed=0)
    assert x.shape == (50, 3, 32, 32) and torch.equal(x[:10], torch.from_numpy(images))
    assert torch.equal(y[:10], torch.from_numpy(labels).long()) and len(yt) == 10
    assert data_label(root) == "CIFAR-10 (official files)"  # the archive's MD5 is the published one (patched here)
    (root / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(b"\0" * RECORD * 10)  # a file changed after
    assert data_label(root) == "CIFAR-10 (unverified copy: not the official files)"


def test_an_archive_that_is_not_the_published_one_is_one_line_and_leaves_no_data(tmp_path, monkeypatch):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "cifar-10-binary.tar.gz").write_bytes(b"not the archive")
    with serving(tmp_path / "served", monkeypatch), pytest.raises(DataError, match="could not download CIFAR-10") as e:
        load_cifar10(tmp_path / "data", download=True)
    assert "\n" not in str(e.value) and not (tmp_path / "data" / "cifar-10-batches-bin").exists()


def test_without_data_and_internet_real_data_tests_skip_saying_how_but_ci_fails(tmp_path, monkeypatch):
    import utils.data

    from conftest import real_cifar
    monkeypatch.setattr(utils.data, "URL", "http://127.0.0.1:9/x.tar.gz")  # nothing listens: offline
    with pytest.raises(pytest.skip.Exception, match="Get it once with internet.*CIFAR10_DIR"):
        real_cifar(tmp_path / "none", ci=False)
    with pytest.raises(pytest.fail.Exception, match="no CIFAR-10 for the real-data tests"):
        real_cifar(tmp_path / "none", ci=True)
