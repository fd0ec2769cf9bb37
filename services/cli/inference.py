"""``talklike chat`` and ``talklike models``: the inference service, through gRPC."""

from __future__ import annotations

from typing import Annotated

import typer
from talklike.cli.output import console, rpc_errors, table
from talklike.inference.client import InferenceClient, sampling

SERVICE = "inference"


def chat(
    question: Annotated[str, typer.Argument(help="What to ask.")],
    adapter: Annotated[str, typer.Option(help="Adapter name ('' = the base model).")] = "",
    system: Annotated[str, typer.Option(help="System prompt.")] = "",
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Print the answer as it is generated.")
    ] = True,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
) -> None:
    """Ask the served model (or an adapter) a question."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    params = sampling(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    client = InferenceClient()
    with rpc_errors(SERVICE):
        if stream:
            for piece in client.stream(messages, adapter, params):
                console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
            console.print()
        else:
            console.print(client.generate(messages, adapter, params).text, markup=False, highlight=False)
    client.close()


def models() -> None:
    """The base model and the loaded adapters."""
    client = InferenceClient()
    with rpc_errors(SERVICE):
        reply = client.models()
    client.close()
    base = reply.base
    console.print(
        f"base: {base.name} ({base.source}, {base.backend}, sha256 {base.sha256[:12]}…, context {base.max_context_tokens})"
    )
    rows = []
    for a in reply.adapters:
        metrics = a.manifest.get("metrics") or {}
        rows.append((a.name, a.path, a.manifest.get("job_id", ""), metrics.get("final_eval_loss", "")))
    console.print(table(["adapter", "path", "job", "final eval loss"], rows, markup=False))


def register(app: typer.Typer) -> None:
    """Add ``chat`` and ``models``."""
    app.command("chat")(chat)
    app.command("models")(models)
