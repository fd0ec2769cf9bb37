"""Drafting a new persona pack with an LLM (``talklike packs draft``), and reviewing packs.

- ``answers``: what each step's JSON answer must look like, and the checks of its items;
- ``prompts``: one small prompt per step, each with an example;
- ``gates``: duplicate detection, the plan's arithmetic, the checks before publishing;
- ``drafter``: the steps, retries with feedback, the resumable cache, the atomic publish;
- ``review``: sample answers of a pack and the difference between two packs.
"""
