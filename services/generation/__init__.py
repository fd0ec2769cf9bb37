"""The generation service: persona packs → answers → journalist questions → a chat JSONL dataset.

Domain modules (no grpc): ``packs`` (the on-disk format and its loader), ``engine`` (seeded
answers), ``questions`` (offline question templates), ``llm`` (questions from an
OpenAI-compatible endpoint), ``dedupe``, ``validation`` (OpenAI chat fine-tuning format rules
for any JSONL file), ``tokens`` (tiktoken counts and the fine-tuning bill) and ``dataset``
(the whole run, written atomically). ``servicer`` is the thin gRPC layer.
"""
