"""The performance harness (``lmukws bench``; not part of the test suite).

Sections (see ``benchmarks.config.BenchConfig`` for the sizes of each preset):

- ``model`` (issue 2): parameters, streaming step per frame at several batch sizes, parallel
  one-second clips/s;
- ``window`` (issue 5.2): naive windowed recompute of the last second every hop vs the
  streaming step, same model, same run;
- ``train`` (issue 5.5): training-step time of both models and their ratio;
- ``engine`` (issue 5.1): concurrent simulated real-time sessions through ``StreamingEngine``;
- ``rest`` (issue 5.3): one-second clips/s through ``POST /v1/classify`` vs the parallel form;
- ``load`` (issue 5.4): websocket clients streaming speech at real time to ``lmukws serve``.

Every run writes ``results.json``, ``summary.md`` and PNG plots, and prints the summary table::

    lmukws bench --quick                       # < 2 minutes of model sections
    lmukws bench --sections model,window,train # issue 2's table and the window ratio
    python -m benchmarks --device cuda         # the same harness on a GPU
"""
