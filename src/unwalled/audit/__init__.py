"""Audits: which candidate is the cheapest one that is good enough for a task.

A suite (labelled examples, a scorer, an accuracy target, candidates) runs
against every candidate; the summary gives each one's accuracy with a 95%
interval, contract pass rate, tokens, latency and cost per 1,000 items, a
paired test against the best, and recommends the cheapest candidate not
significantly below the target::

    suite.py       the suite file, data loading and sampling
    prompting.py   requests from items (zero-/few-shot, constrained), answers read
    scorers.py     exact, normalised, json_field, span, numeric, regex, python
    contract.py    the per-answer check behind the contract pass rate
    baselines.py   TF-IDF with logistic regression
    work.py        one item's work, a pure function of (suite, candidate, item)
    executor.py    where jobs run (``local``), the response cache in front
    cache.py       the response cache
    runner.py      an audit from start to finish
    statistics.py  intervals and paired tests
    summary.py     figures, tests, Pareto front and the recommendation
    reports.py     terminal table, JSON and self-contained HTML
"""

from unwalled.audit.cache import ResponseCache, default_cache_path
from unwalled.audit.executor import EXECUTORS, LocalExecutor, RuntimeCaller
from unwalled.audit.runner import AuditRun, run_audit
from unwalled.audit.reports import html_report, terminal_table, write_reports
from unwalled.audit.suite import Suite, load_dataset, load_suite, parse_suite
from unwalled.audit.summary import summarise
from unwalled.audit.work import ItemResult, Job, run_job

__all__ = ["AuditRun", "EXECUTORS", "ItemResult", "Job", "LocalExecutor",
           "ResponseCache", "RuntimeCaller", "Suite", "default_cache_path",
           "html_report", "load_dataset", "load_suite", "parse_suite", "run_audit",
           "run_job", "summarise", "terminal_table", "write_reports"]
