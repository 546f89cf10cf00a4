"""`clipadapt describe`: write class descriptions with an OpenAI-compatible LLM endpoint.

A plain function with typer parameters; cli/main.py registers it
(`app.command("describe")(describe_command)`). It imports main's error handling at call
time, because main imports this module at load time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def describe_command(
    classnames: str = typer.Argument(..., help="A text file with one class per line, or a comma-separated list."),
    out: Path = typer.Option(..., "--out", "-o", help="JSON file to write: one list of sentences per class."),
    endpoint: str = typer.Option(..., help="OpenAI-compatible API base, e.g. http://localhost:8000/v1 "
                                           "or https://api.openai.com/v1."),
    model: str = typer.Option(..., help="Model name as the server knows it."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key "
                                                           "(not needed by most local servers)."),
    per_class: int = typer.Option(5, min=1, help="Descriptions per class."),
    domain: Optional[str] = typer.Option(None, help='What the classes are, e.g. "bird species": '
                                                    "disambiguates names and sharpens the contrasts asked for."),
    cache: Optional[Path] = typer.Option(None, help="Answer cache folder (default $CLIPADAPT_CACHE/descriptions "
                                                    "or ~/.cache/clipadapt/descriptions); a re-run asks only for "
                                                    "what is not cached."),
    retries: int = typer.Option(4, min=0, help="Extra attempts on connection errors, timeouts, HTTP 429 and 5xx."),
    timeout: float = typer.Option(60.0, min=0.001, help="Seconds to wait for each answer."),
    temperature: float = typer.Option(0.7, min=0.0, max=2.0, help="Sampling temperature sent to the model."),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Ask a language model for short visual descriptions of each class (the class-description
    file microCLIP's heads are built from). Works with any OpenAI-compatible
    chat-completions server; answers are cached, and the output is written only once
    every class is described."""
    from clipadapt.cli.common import console, out_console, run_safely
    from clipadapt.describe import ChatClient, generate_descriptions, read_class_names, save_descriptions

    def go():
        classes = read_class_names(classnames)
        client = ChatClient(endpoint, model, api_key=os.environ.get(api_key_env) or None, api_key_env=api_key_env,
                            timeout=timeout, retries=retries, temperature=temperature)
        result = generate_descriptions(classes, client, per_class=per_class, domain=domain, cache_dir=cache,
                                       progress=not quiet)
        path = save_descriptions(out, result.descriptions)
        if result.short:
            listed = ", ".join(f"'{c}' ({n})" for c, n in list(result.short.items())[:10])
            more = f", ... and {len(result.short) - 10} more" if len(result.short) > 10 else ""
            console.print(f"[yellow]note:[/] {len(result.short)} classes got fewer than {per_class} descriptions: "
                          f"{listed}{more}.", highlight=False, soft_wrap=True)
        out_console.print(f"wrote {path}: {len(result.descriptions)} classes "
                          f"({result.asked} asked, {result.cached} from the cache)", highlight=False, soft_wrap=True)

    run_safely(go)
