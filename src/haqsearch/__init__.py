"""haqsearch: hardware-aware mixed-precision search over PyTorch models.

    import haqsearch
    result = haqsearch.search("digits_mobilenet", hardware="bismo-edge", budget="latency=0.45x")
    result.best.accuracy, result.best.cost_ratio, result.policy.to_json("policy.json")

Pieces: :func:`trace` (model -> haqsim workload), :func:`quantize` (a fake-quantized copy),
:class:`TorchAccuracyOracle` (quantize, fine-tune, evaluate), :class:`SearchProblem` and the
searchers (:func:`get_searcher`), and :func:`search`, which ties them together. Accuracy
evaluations run in parallel with ``search(..., workers=N)`` (local processes) or ``ray=True`` /
``ray_address=...`` (Ray actors); see :mod:`haqsearch.parallel`.
"""

from haqsearch.accuracy import TorchAccuracyOracle
from haqsearch.errors import HaqsearchError
from haqsearch.problem import Evaluation, SearchProblem
from haqsearch.quant import quantize
from haqsearch.search import SearchResult, search
from haqsearch.searchers import Searcher, get_searcher, searcher_names
from haqsearch.trace import Traced, trace

__all__ = [
    # errors
    "HaqsearchError",
    # model side
    "TorchAccuracyOracle",
    "Traced",
    "quantize",
    "trace",
    # search
    "Evaluation",
    "SearchProblem",
    "SearchResult",
    "Searcher",
    "get_searcher",
    "search",
    "searcher_names",
]
