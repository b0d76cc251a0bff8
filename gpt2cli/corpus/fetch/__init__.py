"""``gpt2 corpus fetch``: links to WARC, live (polite, resumable) or from the web archives.

One module a job: ``inputs`` (reading, dedup, parts, resume skip), ``policy`` (which
addresses may be reached), ``robots`` (robots.txt), ``frontier`` (per-host queues and
pacing), ``client`` (one URL over HTTP with its redirects), ``warcfile`` (WARC writing,
rotation, cutting back after a kill), ``log`` (``fetch.jsonl``), ``archive`` (CDX index and
range requests) and ``run`` (the core function ``fetch``).
"""
