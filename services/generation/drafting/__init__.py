"""Drafting a new persona pack with an LLM (``talklike packs draft``), and reviewing packs.

- ``answers``: what each step's JSON answer must look like, and the checks of its items;
- ``prompts``: one small prompt per step, each with an example;
- ``gates``: duplicate detection, the plan's arithmetic, the checks before publishing;
- ``spec``: the validated request (``build_spec``) and the result;
- ``state``: what a run carries from stage to stage (plan, log, context);
- ``asking``: one step's question, from the resumable cache or asked with feedback on retries;
- ``card``: persona, voice, styles, topics, placeholders and their vocabulary;
- ``texts``: answer templates per style and question templates, in batches;
- ``publish``: the pack's files, loaded and gated, renamed into place; ``report``: report.json;
- ``drafter``: runs the stages in order and writes the report whatever happens;
- ``review``: sample answers of a pack and the difference between two packs.
"""
