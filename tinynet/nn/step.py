"""One training step: forward, loss, backward, SGD update; the whole of learning, in one function.

Everything else a training run does happens around it, in ``tinynet/training/trainer.py``: choosing the
batch and augmenting it, the learning-rate schedule, stopping when the loss or a weight is not finite, Ctrl-C, checkpoints,
progress and evaluation. ``docs/minimal_train.py`` trains a LeNet with nothing but this function
and the data loader.
"""


def train_step(net, loss_fn, optimizer, x, y):
    """One SGD step of ``net`` on the batch ``x`` (N, 1, 28, 28) with integer labels ``y`` (N,);
    returns ``(loss, logits)``: the batch's mean loss (before the update) and its logits (N, K).

    ``net``: a ``Sequential`` (``tinynet.nn.model``) or a ``DataParallel`` (``tinynet.nn.parallel``);
    ``loss_fn``: a ``SoftmaxCrossEntropy``; ``optimizer``: an ``SGD`` (``tinynet.nn.optim``).
    """
    logits = net.forward(x, train=True)  # every layer caches what its backward needs
    loss = loss_fn.forward(logits, y)
    net.backward(loss_fn.backward())     # dL/dlogits back through every layer: fills each layer's grads
    optimizer.step(net)                  # p -= lr * dL/dp (with momentum and weight decay, if any)
    return loss, logits
