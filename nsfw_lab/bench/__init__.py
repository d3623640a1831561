"""``nsfw-lab bench``: the data path, the training loop and inference measured side by side in one run.

- :mod:`~nsfw_lab.bench.data_speedup`: our loader over the curated cache vs ImageFolder + PIL over originals
- :mod:`~nsfw_lab.bench.train_step`: our training loop vs a bare PyTorch loop
- :mod:`~nsfw_lab.bench.inference`: eager, channels_last, TorchScript, ONNX Runtime, int8, per model
- :mod:`~nsfw_lab.bench.gpu`: training images/s on CUDA, synthetic and end to end (when a GPU is present)
- :mod:`~nsfw_lab.bench.report`: ``bench.json`` and ``bench.md``, and reading them back
"""

from nsfw_lab.utils.lazy import lazy_getattr

_WHERE = {"run_bench": "run", "BenchSettings": "run", "load": "report", "latency_rows": "report"}
__all__ = list(_WHERE)
__getattr__ = lazy_getattr(__name__, {n: (f"nsfw_lab.bench.{m}", n) for n, m in _WHERE.items()})
