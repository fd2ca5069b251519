"""Where the page marks a failed event: Gradio's Chatbot shows a failed event's "Error" over the whole
conversation even when the event hides its progress (a Resume with no session picked covered it so,
beside the message that said why), so every event that fills the conversation names another output to
show its progress and marks on."""

from __future__ import annotations

from megalodoc.app.ui.build import build_ui


def test_events_that_fill_the_conversation_mark_another_output(service, tmp_path):
    config = build_ui(service, tmp_path / "data").get_config_file()  # the page's configuration
    chats = {c["id"] for c in config["components"] if c["type"] == "chatbot"}
    assert chats, "the Reader tab has a conversation"
    filling = [d for d in config["dependencies"] if chats & set(d["outputs"])]
    assert {"pick_document", "ask", "resume_session", "branch", "delete_session"} <= {d["api_name"] for d in filling}
    for dependency in filling:
        marked = dependency["show_progress_on"]
        assert marked and not chats & set(marked), dependency["api_name"]
