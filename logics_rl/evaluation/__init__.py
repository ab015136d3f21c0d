"""Evaluation: k samples per prompt, their answers and verdicts, and the metrics of a model.

``answers.py``  extracted answers and answer classes (math-verify, in the scoring pool)
``metrics.py``  avg@k, unbiased pass@k, maj@k, lengths, truncation, per data source
``sampling.py`` generate on a worker group, score, analyse (shared with RL validation)
``run.py``      ``mode: eval`` on benchmark files: samples.jsonl, summary.json, a table
"""
