"""The performance harness (``lmukws bench``; not part of the test suite).

Sections (see ``benchmarks.config.BenchConfig`` for the sizes of each preset):

- ``model``: parameters, streaming step per frame at several batch sizes, parallel
  one-second clips/s;
- ``window``: naive windowed recompute of the last second every hop vs the
  streaming step, same model, same run;
- ``train``: training-step time of both models and their ratio;
- ``engine``: concurrent simulated real-time sessions through ``StreamingEngine``;
- ``rest``: one-second clips/s through ``POST /v1/classify`` vs the parallel form;
- ``load``: websocket clients streaming speech at real time to ``lmukws serve``.

Every run writes ``results.json``, ``summary.md`` and PNG plots, and prints the summary table::

    lmukws bench --quick                       # every section, fewer sizes, shorter rounds
    lmukws bench --sections model,window,train # the model table and the window ratio
    python -m benchmarks --device cuda         # the same harness on a GPU
"""
