"""Checks made before the daemon starts anything: a missing weight file must stop it before any video is touched."""

from __future__ import annotations

import logging

from humanstyle.daemon.config import ConfigError, Settings

log = logging.getLogger("humanstyle")

ARCHS = {"detect": "maskrcnn_resnet50_fpn", "classify": "keypointrcnn_resnet50_fpn"}


def check_weights(settings: Settings) -> None:
    """Resolve each model's weights choice now; "DEFAULT" weights missing from the hub cache are fetched here
    (when allowed), once, in the foreground. Raises ConfigError with the file expected and where to put it."""
    from humanstyle.models import weights

    problems = []
    for section, arch in ARCHS.items():
        sec = getattr(settings, section)
        try:
            kind = weights.choice_kind(sec.weights)
            if kind == "none":
                log.warning("!!! %s.weights = \"none\": %s is RANDOMLY INITIALISED. Its detections are noise; "
                            "use this for tests and benchmarks only. !!!", section, arch)
                continue
            if kind == "default" and sec.allow_download and not weights.default_checkpoint_path(arch).is_file():
                log.info("%s: downloading torchvision's pretrained weights for %s (first start only)", section, arch)
                weights.download_default_weights(arch)
            log.info("%s", weights.check_weights_available(arch, sec.weights, allow_download=False))
        except weights.WeightsError as exc:
            problems.append(f"{section}.weights = {sec.weights!r}: {exc}")
    if problems:  # both models are reported at once, so one trip to a connected machine fetches everything
        raise ConfigError("\n".join(problems))


def check_weights_in_child(settings: Settings) -> None:
    """check_weights in a short-lived process. The supervisor lives as long as the daemon and never runs a model, so
    it should not hold torch and torchvision, which cost hundreds of MB of RSS (bench/README.md: the supervisor's peak
    went from 819 to 26 MB)."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        error = pool.apply(_check_weights_message, (settings,))
    if error is not None:
        raise ConfigError(error)


def _check_weights_message(settings: Settings) -> str | None:
    from humanstyle.daemon.runtime.logs import setup_logging

    setup_logging(settings.log.level)
    try:
        check_weights(settings)
    except ConfigError as exc:
        return str(exc)
    return None


def check_folders(settings: Settings) -> None:
    """The data folder must be writable and the watch folder readable before anything starts; a folder that
    fails later is handled by the index, which pauses and retries."""
    import os
    import tempfile

    for key, path in (("paths.data_dir", settings.paths.data_dir), ("paths.watch_dir", settings.paths.watch_dir)):
        try:
            path.mkdir(parents=True, exist_ok=True)
            if key == "paths.data_dir":
                with tempfile.TemporaryFile(dir=path):
                    pass
            elif not os.access(path, os.R_OK | os.X_OK):
                raise PermissionError("not readable")
        except OSError as exc:
            raise ConfigError(f"{key} = {str(path)!r}: cannot use this folder ({exc.strerror or exc})") from None
