"""The evaluate stage: what happens to a trained run folder, in order.

loading (rebuild the model of a run) → scoring (``nsfw-lab evaluate``: one split, metrics with bootstrap
intervals, :mod:`~nsfw_lab.evaluate.metrics`) → calibration (``nsfw-lab calibrate``: temperature on val, then
the moderation :mod:`~nsfw_lab.evaluate.policy`'s thresholds) → predict (``nsfw-lab predict``: files and
folders, calibrated, with a decision) → export (``nsfw-lab export``: ONNX / TorchScript, checked against eager).

Every file read or written is named by :class:`nsfw_lab.rundir.RunDir`; nothing here imports the training
engine. Names load on first use (torch is heavy).
"""

from nsfw_lab.utils.lazy import lazy_getattr

_WHERE = {
    "LoadedRun": "loading",
    "load_run": "loading",
    "bootstrap_ci": "metrics",
    "classification_metrics": "metrics",
    "macro_f1": "metrics",
    "mistakes": "metrics",
    "evaluate_run": "scoring",
    "split_outputs": "scoring",
    "calibrate_run": "calibration",
    "load_calibration": "calibration",
    "Policy": "policy",
    "load_policy": "policy",
    "decision_rule": "predict",
    "export_run": "export",
    "load_exported_run": "export",
}
__all__ = list(_WHERE)
__getattr__ = lazy_getattr(__name__, {n: (f"nsfw_lab.evaluate.{m}", n) for n, m in _WHERE.items()})
