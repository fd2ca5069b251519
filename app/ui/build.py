"""`build_ui(service)`: the page. It only creates components and wires their events to handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from megalodoc.app.ui.context import DEFAULT_MAX_UPLOAD_MB, AppContext
from megalodoc.app.ui.library_tab import build_library_tab
from megalodoc.app.ui.reader_handlers import readable_choices
from megalodoc.app.ui.reader_tab import build_reader_tab
from megalodoc.app.ui.settings_tab import build_settings_tab, sampling_controls

TITLE = "megalodoc"
HEADER = """# megalodoc
Read whole books and code repositories with a streaming Megalodon model, then ask questions about them
with cited evidence, continue the text, and come back to a conversation later."""


def build_ui(service: Any, data_dir: str | Path = "megalodoc-data",
             max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> gr.Blocks:
    """The Gradio app over a reader service. `data_dir` receives the uploaded files (and exports)."""
    ctx = AppContext.create(service, data_dir, max_upload_mb)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(HEADER)
        controls = sampling_controls()
        with gr.Tabs():
            with gr.Tab("Library", id="library"):
                build_library_tab(ctx)
            with gr.Tab("Reader", id="reader") as reader_tab:
                picker = build_reader_tab(ctx, controls)
            with gr.Tab("Settings", id="settings"):
                build_settings_tab(ctx, controls)
        reader_tab.select(lambda: gr.update(choices=readable_choices(ctx)), None, [picker], api_visibility="private")
    demo.megalodoc_context = ctx  # for launch() and tests: the jobs and the data folder of this page
    return demo


def launch(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None,
           auth: tuple[str, str] | None = None, **kwargs: Any) -> tuple[Any, str, str]:
    """Queue and launch the page with the upload limit and the export folder of its context."""
    ctx: AppContext = demo.megalodoc_context
    return demo.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, auth=auth, max_file_size=ctx.max_upload_bytes,
        allowed_paths=[str(ctx.data_dir / "exports")], **kwargs)
