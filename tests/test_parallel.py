"""DataParallel (tinynet/nn/parallel.py) computes what the plain model computes, split over threads."""

import os
import threading
import time
import warnings

import numpy as np
import pytest

from tinynet.nn.layers import Conv2D, Dense, Flatten, ReLUMaxPool2D, SoftmaxCrossEntropy
from tinynet.nn.model import Sequential, lenet
from tinynet.nn.parallel import DataParallel, resolve_threads


def small_net(rng):
    """A net whose first layer computes its input gradient, so dx is checked too."""
    return Sequential([Conv2D(1, 3, 3, rng=rng, name="conv"), ReLUMaxPool2D(2, name="pool"),
                       Flatten(name="flat"), Dense(3 * 4 * 4, 5, rng=rng, name="fc")]).astype(np.float64)


def grads(model):
    return {name: g.copy() for name, _, g in model.parameters()}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("batch", [1, 2, 7, 16])
def test_forward_and_gradients_equal_the_single_threaded_model(threads, batch):
    """Same logits, same dx and the same parameter gradients as one model on the whole batch,
    for batches that split evenly, unevenly, and into fewer slices than threads."""
    rng = np.random.default_rng(batch)
    model = small_net(rng)
    x = rng.standard_normal((batch, 1, 10, 10))
    y = rng.integers(0, 5, batch)
    loss = SoftmaxCrossEntropy()

    logits = model.forward(x)
    loss.forward(logits, y)
    dx = model.backward(loss.backward())
    expected = grads(model)

    net = DataParallel(model, threads)
    par_logits = net.forward(x)
    loss.forward(par_logits, y)
    par_dx = net.backward(loss.backward())
    np.testing.assert_allclose(par_logits, logits, rtol=1e-12)
    np.testing.assert_allclose(par_dx, dx, rtol=1e-10, atol=1e-14)
    for name, g in grads(model).items():
        np.testing.assert_allclose(g, expected[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_replicas_share_parameters():
    """An optimiser step on the model is seen by every replica (they hold the same arrays)."""
    model = lenet(47, rng=np.random.default_rng(0))
    net = DataParallel(model, 2)
    for layer, twin in zip(model.layers, net.replicas[1].layers):
        for key in layer.params:
            assert twin.params[key] is layer.params[key]
            assert twin.grads[key] is not layer.grads[key]


def test_dropout_is_reproducible_and_differs_between_slices():
    """With dropout, a run is the same each time for a given seed and thread count, and the two
    slices draw different masks (not one mask reused)."""
    def run():
        rng = np.random.default_rng(0)
        model = lenet(47, rng=rng, dropout=0.5)
        net = DataParallel(model, 2)
        x = np.repeat(np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32), 4, axis=0)
        return net.forward(x, train=True)
    first, second = run(), run()
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first[0], first[2])  # the same image in slice 0 and slice 1


def test_numpy_error_settings_reach_the_other_threads():
    """np.errstate set by the caller holds in the pool's threads too (training relies on it to
    report divergence itself). Only the second slice overflows, and it runs in a pool thread."""
    rng = np.random.default_rng(0)
    model = small_net(rng).astype(np.float32)
    model.layers[0].params["W"][...] = 1e38
    net = DataParallel(model, 2)
    x = np.zeros((4, 1, 10, 10), dtype=np.float32)
    x[2:] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="ignore", invalid="ignore"):
            net.forward(x)
    with np.errstate(over="raise", invalid="raise"), pytest.raises(FloatingPointError):
        net.forward(x)


def test_a_failing_slice_waits_for_the_others():
    """When one slice raises, the call still waits for the other threads' slices, so no replica is
    left running into the next batch."""
    net = DataParallel(lenet(47, rng=np.random.default_rng(0)), 2)
    finished = []

    def work(replica, part):
        if replica is net.replicas[0]:
            raise ValueError("slice 0 failed")
        time.sleep(0.2)
        finished.append(part)

    with pytest.raises(ValueError, match="slice 0 failed"):
        net.map_replicas(work, [(0,), (1,)])
    assert finished == [1]


def test_thread_count_defaults_to_the_usable_cores():
    """None means every core this process may run on (respecting taskset / CPU affinity)."""
    assert resolve_threads(None) == len(os.sched_getaffinity(0))
    assert resolve_threads(3) == 3
    with pytest.raises(ValueError, match="at least 1"):
        resolve_threads(0)


@pytest.mark.parametrize("slices", [2, 4])
def test_results_do_not_depend_on_the_thread_count(slices):
    """Logits and every parameter gradient are bitwise the same on 1, 2, 3 and 4 threads (the
    batch is always cut into the same slices, summed in the same order), with dropout, for a full
    batch, an uneven one and one smaller than the slice count; with 4 slices, 2 and 3 threads
    each run several slices, in whatever order they take them."""
    def run(threads, batch):
        model = lenet(47, rng=np.random.default_rng(0), dropout=0.5)
        net = DataParallel(model, threads, slices)
        rng = np.random.default_rng(batch)
        x = rng.random((batch, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 47, batch)
        loss = SoftmaxCrossEntropy()
        logits = [net.forward(x, train=False)]
        for _ in range(2):  # two batches: the dropout masks of the second differ from the first's
            logits.append(net.forward(x, train=True))
            loss.forward(logits[-1], y)
            net.backward(loss.backward())
        return logits, grads(model)

    for batch in (128, 103, 3):
        logits, expected = run(1, batch)
        for threads in (2, 3, 4):
            other_logits, other = run(threads, batch)
            assert all(np.array_equal(a, b) for a, b in zip(logits, other_logits)), (batch, threads)
            assert all(np.array_equal(expected[k], other[k]) for k in expected), (batch, threads)


def test_training_on_real_data_gives_the_same_weights_on_any_thread_count(tmp_path):
    """A short train.py-style run on real EMNIST (the strong recipe: momentum, augmentation,
    dropout, label smoothing, one-cycle) ends with bitwise-identical weights and the same test
    accuracy on 1, 2 and 3 threads."""
    from conftest import require_resplit
    from tinynet.files.checkpoint import load_checkpoint
    from tinynet import RECIPES, TrainConfig, train

    data = require_resplit()
    config = dict(RECIPES["strong"], data_dir=str(data), dataset="emnist-bymerge-resplit",
                  epochs=1, limit=1000, val_fraction=0.0, seed=0)
    weights, accuracy = {}, {}
    for threads in (1, 2, 3):
        run = tmp_path / f"threads-{threads}"
        summary = train(TrainConfig(**config, threads=threads), run, download=False,
                        progress=False, log=lambda *a: None)
        weights[threads] = load_checkpoint(run / "last.npz")[0].state_dict()
        accuracy[threads] = summary["test_accuracy"]
    for threads in (2, 3):
        assert accuracy[threads] == accuracy[1]
        for name, w in weights[1].items():
            assert np.array_equal(weights[threads][name], w), (name, threads)


def test_map_rows_equals_the_unsplit_function():
    """Augmentation warped slice by slice in the threads gives exactly the one-thread batch."""
    from tinynet.datasets.augment import augment_batch

    x = np.random.default_rng(0).random((37, 1, 28, 28), dtype=np.float32)
    net = DataParallel(lenet(47, rng=np.random.default_rng(0)), 2)
    expected = augment_batch(x, np.random.default_rng(5))
    threaded = augment_batch(x, np.random.default_rng(5), map_rows=net.map_rows)
    np.testing.assert_array_equal(threaded, expected)


def test_one_blas_thread_is_counted_and_restores_the_limits():
    """BLAS runs on one thread while any tinynet work is inside; the limits come back only when
    the last one leaves (nested or concurrent uses never restore early)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tinynet.nn.parallel import one_blas_thread

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):
        with one_blas_thread:
            with one_blas_thread:
                assert blas_threads() == {1}
            assert blas_threads() == {1}
        assert blas_threads() == {2}


def test_one_blas_thread_limits_blas_from_any_thread():
    """The limit holds in a thread other than the one that last set BLAS limits (threadpoolctl
    >= 3.8 otherwise lets only that thread change them: a worker's limit silently did nothing,
    BLAS kept every core there and rounded matmuls differently), and is put back afterwards."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from tinynet.nn.parallel import one_blas_thread

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen = {}

    def worker(name):
        with one_blas_thread:
            seen[name, "inside"] = blas_threads()
        seen[name, "after"] = blas_threads()

    original = threadpool_limits(2, user_api="blas")  # the main thread sets a limit, as a user might
    try:
        for name in ("first", "second"):
            thread = threading.Thread(target=worker, args=(name,))
            thread.start()
            thread.join()
        assert blas_threads() == {2}
        threadpool_limits(3, user_api="blas")  # and the main thread can still change them afterwards
        assert blas_threads() == {3}
    finally:
        original.restore_original_limits()
    assert seen == {("first", "inside"): {1}, ("first", "after"): {2},
                    ("second", "inside"): {1}, ("second", "after"): {2}}


def test_forward_from_several_threads_gives_the_serial_answers():
    """One DataParallel's forward called from 4 threads at once (25 batches each, of different
    sizes) returns bitwise what the same calls return one at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    batches = [rng.random((int(rng.integers(1, 40)), 1, 28, 28), dtype=np.float32) for _ in range(100)]
    with DataParallel(lenet(rng=rng), threads=2) as net:
        serial = [net.forward(x, train=False) for x in batches]
        start = threading.Barrier(4)

        def calls(t):
            start.wait()
            return {i: net.forward(batches[i], train=False) for i in range(t, len(batches), 4)}

        with ThreadPoolExecutor(4) as pool:
            shared = {i: out for answers in pool.map(calls, range(4)) for i, out in answers.items()}
    wrong = [i for i, out in enumerate(serial) if not np.array_equal(out, shared[i])]
    assert not wrong, f"{len(wrong)} of {len(batches)} calls differ from serial ones"


def test_one_blas_thread_holds_for_long_lived_threads_taking_turns():
    """Long-lived threads taking turns (a server's workers): whichever thread enters first, BLAS
    runs on one thread inside, and the limits come back when the last leaves, whichever thread
    that is. (threadpoolctl 3.8 lets only the first thread that set OpenBLAS's count change it
    while that thread lives: the second worker's limit was silently ignored, and a request's
    matmuls ran multi-threaded, slower and with other roundings.)"""
    from threadpoolctl import threadpool_info, threadpool_limits

    from tinynet.nn.parallel import one_blas_thread

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen, turns = [], [threading.Event() for _ in range(4)]

    def worker(mine):
        for turn in mine:  # enter and leave on this worker's turns; stay alive in between
            turns[turn].wait(10)
            with one_blas_thread:
                seen.append(blas_threads())
            seen.append(("after", blas_threads()))
            if turn + 1 < len(turns):
                turns[turn + 1].set()

    with threadpool_limits(2, user_api="blas"):
        a = threading.Thread(target=worker, args=((0, 2),))
        b = threading.Thread(target=worker, args=((1, 3),))
        a.start()
        b.start()
        turns[0].set()
        a.join(20)
        b.join(20)
        assert seen == [{1}, ("after", {2})] * 4
        assert blas_threads() == {2}
