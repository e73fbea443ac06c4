"""gusher's benchmark harness (issue 3): load generator, limit baseline, peers, report.

Run `python -m bench.run --quick` (or `make bench-quick`) for a sub-minute
gusher-vs-limit run that ends with one JSON line; `python -m bench.run` (or
`make bench`) runs every scenario against gusher, the limit baseline and the
peers, and rewrites BENCHMARKS.md and the plots in bench/plots/.
"""
