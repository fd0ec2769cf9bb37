"""Chat datasets, the one place every service reads and writes them.

- ``jsonl``: chat JSONL judged line by line against OpenAI's chat fine-tuning format
  (robust reading, every problem with its line and field, quarantine records, the outputs
  of a validation run);
- ``folders``: a dataset folder's life: refusing to replace a folder this project did not
  write, flushing a finished tree to disk, swapping it in for the old one.

Generation writes datasets, moderation filters them, training reads them and evaluation asks
their held-out questions; each uses this package, so none of them imports another's modules.
"""
