"""The WebText recipe as small steps: Reddit links, WARC extraction, filters, dedup.

Each step reads and writes JSON Lines and counts what it drops and why (``stats``).
"""
