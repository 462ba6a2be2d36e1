"""The errors of a training run: a configuration it cannot use (:class:`ConfigError`, raised when
a ``TrainConfig`` is made) and a run that cannot start or go on (:class:`TrainingError`: a bad run
folder, a checkpoint that does not resume, a diverged loss). Each message says why in one line."""

from ..errors import TinynetError


class ConfigError(TinynetError, ValueError):
    """A configuration training cannot use, found when the :class:`TrainConfig` is made.

    ``str(error)`` names the fields as Python does (``nesterov needs momentum > 0``);
    :meth:`as_options` names them as the command line does (``--nesterov needs --momentum > 0``)."""

    def __init__(self, template, *names):
        """``template``: the message, with a ``{}`` for each field named in ``names``."""
        self.template, self.names = template, names
        super().__init__(template.format(*names) if names else template)

    def as_options(self):
        options = ("--" + n.replace("_", "-") for n in self.names)
        return self.template.format(*options) if self.names else self.template


class TrainingError(TinynetError, RuntimeError):
    """Training cannot start or cannot go on (bad run folder, diverged loss); the message says why."""
