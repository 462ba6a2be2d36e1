"""Helpers for testing code built on tinynet, in the manner of ``numpy.testing``, and what tinynet's
own tests and benchmarks use: small data sets in EMNIST's format written to a folder
(``datasets``), the broken and hostile HTTP requests tinynet's servers must refuse
(``requests``), and files that declare far more work than they hold, with a way to measure what
reading one costs (``hostile``). The library itself never imports this package."""
