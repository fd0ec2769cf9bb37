"""Publishing a draft: the pack's files from the plan, loaded and gated, then renamed into place.

The pack is written to a build directory inside the draft directory, loaded with the pack
loader (its full validation), checked by ``gates.pack_problems``, and only then renamed to
``<home>/packs/<name>`` — one ``rename`` on the same file system, so the packs directory never
holds a half-written pack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from talklike.common.chat_data.folders import fsync_tree
from talklike.common.errors import AlreadyExists
from talklike.generation.drafting.gates import pack_problems, slip_rules
from talklike.generation.drafting.spec import DraftSpec
from talklike.generation.drafting.state import TOPIC, DraftContext, Plan
from talklike.generation.engine import AnswerGenerator
from talklike.packs.loader import PackInvalid, load_pack_dir


def pack_files(spec: DraftSpec, plan: Plan) -> dict[str, str]:
    """The pack's files (relative path → YAML text) from the plan."""
    header = (
        f"# Drafted by `talklike packs draft` with {spec.llm.model} at {spec.llm.base_url}.\n"
        "# Review it (`talklike packs show NAME --sample 10`) before training on it.\n"
    )
    persona = {
        "name": spec.name,
        "display_name": plan.card["display_name"],
        "language": plan.card["language"],
        "signature": plan.card["signature"],
        "satire": plan.card["satire"],
        "description": plan.card["description"],
        "system_prompt": plan.voice["system_prompt"],
        "topic_placeholder": TOPIC,
        "catchphrases": plan.voice["catchphrases"],
    }
    files = {
        "persona.yaml": header + yaml_text(persona),
        "styles.yaml": yaml_text({"styles": plan.styles}),
        "placeholders.yaml": yaml_text({"placeholders": plan.vocab}),
        "slips.yaml": yaml_text({"slips": slip_rules(plan.voice["fillers"])}),
        "questions.yaml": yaml_text(
            {
                "questions": [
                    {"id": f"q-{n:03d}", "topic": q.topic, "styles": ["*"], "text": q.text}
                    for n, q in enumerate(plan.questions, start=1)
                ]
            }
        ),
    }
    for style in plan.styles:
        rows = [
            {"id": f"{style['id']}-{n:03d}", "style": style["id"], "topic": t.topic, "text": t.text}
            for n, t in enumerate(plan.templates.get(style["id"], []), start=1)
        ]
        files[f"templates/{style['id']}.yaml"] = yaml_text({"templates": rows})
    return files


async def publish(ctx: DraftContext, draft_dir: Path, home: Path) -> Path:
    """Write the pack beside the packs directory, load and gate it, then rename it into place.

    Returns the pack's path; the caller reports it written (and the write step done)."""
    spec = ctx.spec
    await ctx.on_progress("check", 0, 1)
    build_root = Path(tempfile.mkdtemp(prefix=".build-", dir=draft_dir))
    try:
        build = build_root / spec.name
        for relative, text in pack_files(spec, ctx.plan).items():
            target = build / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        try:
            pack = load_pack_dir(build, "user")
        except PackInvalid as error:
            raise ctx.fail(
                "the draft fails the pack loader's checks: " + "; ".join(str(p) for p in error.problems[:10])
            ) from error
        problems = pack_problems(pack, spec.template_count)
        if problems:
            raise ctx.fail("the draft fails the quality gates: " + "; ".join(problems[:10]))
        ctx.log.samples = [a.text for a in AnswerGenerator(pack, 0, slip_probability=0).generate(3)]
        await ctx.on_progress("check", 1, 1)
        await ctx.on_progress("write", 0, 1)
        fsync_tree(build)
        target = home / "packs" / spec.name
        move_into_place(build, target, build_root, spec.replace)
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    return target


def yaml_text(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), allow_unicode=True, sort_keys=False, width=1000)


def move_into_place(build: Path, target: Path, scratch: Path, replace: bool) -> None:
    """Rename ``build`` to ``target``; an existing pack (``replace``) moves into ``scratch`` first.

    The old pack leaves the packs directory (to ``scratch``, on the same file system) instead
    of to a temporary name beside it, so listing packs never shows a half-moved one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old: Path | None = None
    if target.exists():
        if not replace:
            raise AlreadyExists(f"pack {target.name!r} appeared in {target.parent} while drafting")
        old = scratch / "replaced"
        os.rename(target, old)
    try:
        os.rename(build, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
