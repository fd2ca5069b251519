"""The Settings tab: the loaded model's card and the sampling settings used by Ask and Continue."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from megalodoc.app.ui import settings_handlers as h
from megalodoc.app.ui.context import AppContext


@dataclass
class SettingsTab:
    """The sampling inputs, given to the Reader tab's Ask and Continue events."""

    max_new_tokens: gr.Number
    temperature: gr.Slider
    top_k: gr.Number
    top_p: gr.Slider
    greedy: gr.Checkbox
    seed: gr.Number

    def inputs(self) -> list[gr.components.Component]:
        return [self.max_new_tokens, self.temperature, self.top_k, self.top_p, self.greedy, self.seed]


def sampling_controls() -> SettingsTab:
    """The sampling inputs, created unrendered: the Reader tab's events take them as inputs before the
    Settings tab (which comes later on the page) renders them."""
    d = h.DEFAULT_SAMPLING
    return SettingsTab(
        gr.Number(d["max_new_tokens"], label="Answer length (tokens)", precision=None, minimum=1, maximum=4096,
                  render=False),
        gr.Slider(0.0, 2.0, d["temperature"], step=0.05, label="Temperature (0 = greedy)", render=False),
        gr.Number(d["top_k"], label="Top-k (0 = off)", precision=None, minimum=0, render=False),
        gr.Slider(0.05, 1.0, d["top_p"], step=0.05, label="Top-p", render=False),
        gr.Checkbox(d["greedy"], label="Greedy (always the most likely token)", render=False),
        gr.Number(d["seed"], label="Seed (-1 = a new random seed per answer)", precision=None, render=False),
    )


def build_settings_tab(ctx: AppContext, controls: SettingsTab) -> None:
    gr.Markdown("### Sampling (Ask and Continue)")
    with gr.Row():
        for control in controls.inputs()[:4]:
            control.render()
    with gr.Row():
        for control in controls.inputs()[4:]:
            control.render()
    gr.Markdown("The same seed, settings and reading point give the same answer; a resumed session continues "
                "exactly where it stopped.")
    gr.Markdown(h.model_card_markdown(ctx.service))
    with gr.Accordion("config.json", open=False):
        gr.Code(h.config_json(ctx.service), language="json")
